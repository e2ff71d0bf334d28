"""How well the claim judge and the lexical support score separate supported from unsupported claims.

Claims are the direct answers the default model writes (sentence style, every check off so that a draft
is always written) to the seeds' fact questions and a seeded sample of SQuAD articles 1-8 (the tuning
articles). A claim that holds the question's answer (its facts, SQuAD's gold span) is paired with:
- a passage it cites whose text holds the answer too: labelled supported;
- a passage retrieved for the same question that does not hold the answer (for the seeds, from a
  document other than the gold ones; for SQuAD, another paragraph): labelled unsupported.
Both scores are then read for every pair: the verifier's support (word evidence, meaning, names) and
the judge's log-odds of "yes" to "Does the passage state this claim?". Prints AUC for each and the
judge's rates at a few thresholds; `--json FILE` keeps the pairs.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/claim_judge.py --squad-limit 40
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import get_args

import numpy as np
from tqdm import tqdm

from rag.answering.citations import direct_claim, split_claims
from rag.answering.judge import ClaimJudge
from rag.assistant import Assistant
from rag.cpu import cpu_info
from rag.evaluation.metrics import normalize_answer
from rag.evaluation.question_set import eval_settings, facts_present, index_own, load_question_set
from rag.evaluation.squad import load_squad, paragraph_documents, sample_questions, squad_settings
from rag.settings import Settings
from rag.types import AbstainedBy, Passage, Sources

ROOT = Path(__file__).resolve().parent.parent
EVERY_CHECK = list(get_args(AbstainedBy))  # every step off: a draft is always written


@dataclass(frozen=True)
class Pair:
    source: str  # "seeds" or "squad"
    question: str
    claim: str
    passage: str
    supported: bool
    lexical: float
    judge: float


def draft_and_passages(assistant: Assistant, question: str) -> tuple[str, list[Passage]]:
    pieces: list[str] = []
    passages: list[Passage] = []
    for event in assistant.ask_stream(question):
        if isinstance(event, Sources):
            passages = event.passages
        elif isinstance(event, str):
            pieces.append(event)
    return "".join(pieces).strip(), passages


def pairs_for(assistant: Assistant, judge: ClaimJudge, source: str, question: str, holds_answer, is_gold) -> list[Pair]:
    """The supported and the unsupported pair of one question's direct answer, where both exist."""
    draft, passages = draft_and_passages(assistant, question)
    claims = split_claims(draft)
    index = direct_claim(claims, question)
    if index is None or not holds_answer(claims[index].text):
        return []
    claim = claims[index]
    cited = [passages[n - 1] for n in claim.markers if 1 <= n <= len(passages)]
    positive = next((p for p in cited if holds_answer(p.shown_text) and is_gold(p)), None)
    negative = next((p for p in passages if not holds_answer(p.chunk.text) and not is_gold(p)), None)
    pairs = []
    for passage, label in ((positive, True), (negative, False)):
        if passage is None:
            continue
        lexical = float(assistant.verifier.support_of(claim.text, passage, question))
        pairs.append(
            Pair(
                source, question, claim.text, passage.shown_text, label, lexical, judge.log_odds(claim.text, [passage])
            )
        )
    return pairs


def auc(scores: list[float], labels: list[bool]) -> float:
    """The chance that a supported pair scores above an unsupported one (ties count half)."""
    pos = np.array([s for s, y in zip(scores, labels, strict=True) if y])
    neg = np.array([s for s, y in zip(scores, labels, strict=True) if not y])
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", default=str(ROOT.parent / "shared/data/squad/squad-v2-dev-half.json"))
    parser.add_argument("--squad-limit", type=int, default=40)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    started = time.perf_counter()
    base = Settings().model_copy(update={"disabled_checks": EVERY_CHECK, "passage_states": False})
    pairs: list[Pair] = []

    seeds = load_question_set(ROOT / "eval/seeds.json")
    assistant = Assistant(eval_settings(base, seeds))
    index_own(assistant, passage_states=False)
    judge = ClaimJudge(assistant.generator, 0.0)
    facts_kinds = {"single_fact", "paraphrase", "multi_doc"}
    for q in tqdm([q for q in seeds.questions if q.category in facts_kinds and q.facts], desc="seeds"):
        pairs += pairs_for(
            assistant,
            judge,
            "seeds",
            q.question,
            lambda text, q=q: facts_present(text, q.facts),
            lambda p, q=q: Path(p.source).name in q.gold_docs,
        )

    squad = load_squad(args.squad, "1-8")
    squad_assistant = Assistant(squad_settings(base, squad, "sentence"))
    squad_assistant.__dict__["generator"] = assistant.generator  # one model loaded
    index_own(squad_assistant, paragraph_documents(squad), passage_states=False)
    chosen = [q for q in sample_questions(squad, args.squad_limit * 2, seed=0) if q.answerable][: args.squad_limit]
    for q in tqdm(chosen, desc="squad 1-8"):
        golds = [normalize_answer(a) for a in q.answers]
        pairs += pairs_for(
            squad_assistant,
            judge,
            "squad",
            q.text,
            lambda text, golds=golds: any(g and g in normalize_answer(text) for g in golds),
            lambda p, q=q: p.source == q.paragraph,
        )

    labels = [p.supported for p in pairs]
    print(
        f"\n{cpu_info().describe()}; {len(pairs)} pairs ({sum(labels)} supported), "
        f"{time.perf_counter() - started:.0f} s"
    )
    for name in ("seeds", "squad", None):
        chosen_pairs = [p for p in pairs if name is None or p.source == name]
        ys = [p.supported for p in chosen_pairs]
        if all(ys) or not any(ys):
            continue
        print(
            f"{name or 'all':>6}: n={len(chosen_pairs)} AUC lexical {auc([p.lexical for p in chosen_pairs], ys):.3f}, "
            f"judge {auc([p.judge for p in chosen_pairs], ys):.3f}"
        )
    for threshold in (-2.0, -1.0, 0.0, 1.0, 2.0, 3.0):
        kept = [p.judge >= threshold for p in pairs]
        tpr = sum(k and y for k, y in zip(kept, labels, strict=True)) / max(sum(labels), 1)
        fpr = sum(k and not y for k, y in zip(kept, labels, strict=True)) / max(len(labels) - sum(labels), 1)
        print(f"judge >= {threshold:+.1f}: supported kept {tpr:.2f}, unsupported kept {fpr:.2f}")
    low = [p for p in pairs if p.lexical < base.support_threshold]
    print(
        f"below support_threshold {base.support_threshold}: {sum(p.supported for p in low)} supported, "
        f"{sum(not p.supported for p in low)} unsupported; judge >= 0 among them keeps "
        f"{sum(p.supported and p.judge >= 0 for p in low)} / {sum(not p.supported and p.judge >= 0 for p in low)}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(p) for p in pairs], indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
