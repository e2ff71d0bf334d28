"""Draws the quick eval's questions (eval/quick.toml): a fixed, stratified sample of seeds, fresh and manual.

Drawn once, by a seed, before any run of it, and then frozen: `rag eval --quick` asks these. Each set gets
a share of the sample in proportion to its size; within a set every stratum (a category, with yes/no
split by polarity and the unanswerable traps their own) gets at least one question, and the rest of the
set's share goes to strata in proportion to their size (largest remainders first). A follow-up brings its
first question with it when asked (QuestionSet.subset).

    .venv/bin/python scripts/quick_sample.py --seed 2026 --size 40 --write
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.evaluation.question_set import EvalQuestion, load_question_set  # noqa: E402

SETS = ("seeds", "fresh", "manual")
OUTPUT = ROOT / "eval" / "quick.toml"


def stratum(question: EvalQuestion) -> str:
    return f"yes_no/{question.polarity}" if question.polarity else question.category


def shares(sizes: dict[str, int], total: int, at_least: int) -> dict[str, int]:
    """`total` split over `sizes` in proportion, each at least `at_least`, by largest remainders."""
    given = {k: at_least for k in sizes}
    left = total - at_least * len(sizes)
    whole = sum(sizes.values())
    exact = {k: left * v / whole for k, v in sizes.items()}
    for k in sizes:
        given[k] += int(exact[k])
    for k in sorted(sizes, key=lambda k: exact[k] - int(exact[k]), reverse=True)[: total - sum(given.values())]:
        given[k] += 1
    return given


def sample(seed: int, size: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    question_sets = {name: load_question_set(ROOT / "eval" / f"{name}.json") for name in SETS}
    per_set = shares({n: len(q.questions) for n, q in question_sets.items()}, size, at_least=0)
    chosen: dict[str, list[str]] = {}
    for name, question_set in question_sets.items():
        strata: dict[str, list[str]] = defaultdict(list)
        for question in question_set.questions:
            strata[stratum(question)].append(question.id)
        counts = shares({k: len(v) for k, v in strata.items()}, max(per_set[name], len(strata)), at_least=1)
        picked = {qid for key, ids in sorted(strata.items()) for qid in rng.sample(ids, min(counts[key], len(ids)))}
        chosen[name] = [q.id for q in question_set.questions if q.id in picked]  # in the set's own order
    return chosen


def toml(chosen: dict[str, list[str]], seed: int, size: int) -> str:
    lines = [
        "# The quick eval: `rag eval --quick` asks these questions of eval/seeds.json, fresh.json and manual.json.",
        f"# Drawn by `scripts/quick_sample.py --seed {seed} --size {size}` before any run of them, and frozen:",
        "# stratified by set, category, yes/no polarity and traps (docs/evaluation.md, measuring a change).",
    ]
    for name, ids in chosen.items():
        lines.append(f"{name} = [" + ", ".join(f'"{i}"' for i in ids) + "]")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--size", type=int, default=40)
    parser.add_argument("--write", action="store_true", help=f"write {OUTPUT.relative_to(ROOT)}")
    args = parser.parse_args()
    text = toml(sample(args.seed, args.size), args.seed, args.size)
    if args.write:
        OUTPUT.write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
