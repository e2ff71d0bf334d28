"""The model as a reranker: does ordering the retrieved passages by its "yes, this answers it" help?

For a seeded sample of SQuAD 2.0 answerable questions (articles 1-8 by default, the tuning articles),
the top-k passages the Assistant retrieves are ordered two ways: as retrieved (hybrid dense + BM25), and
by the passage judge's log-odds of "yes" to "Does the passage answer this question?" (one prompt per
passage, rag.answering.judge.PassageJudge). Prints paragraph R@1 and MRR@k of each, the judge's seconds
per question, and the CPU.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/passage_judge.py --limit 60
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from statistics import fmean

from tqdm import tqdm

from rag.answering.judge import PassageJudge
from rag.assistant import Assistant
from rag.cpu import cpu_info
from rag.evaluation.metrics import recall_at_k, reciprocal_rank
from rag.evaluation.question_set import index_own
from rag.evaluation.squad import load_squad, paragraph_documents, sample_questions, squad_settings
from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", default=str(ROOT.parent / "shared/data/squad/squad-v2-dev-half.json"))
    parser.add_argument("--articles", default="1-8")
    parser.add_argument("--limit", type=int, default=60, help="answerable questions")
    args = parser.parse_args()
    squad = load_squad(args.squad, args.articles)
    assistant = Assistant(squad_settings(Settings(passage_states=False), squad, "sentence"))
    index_own(assistant, paragraph_documents(squad), passage_states=False)
    judge = PassageJudge(assistant.generator)
    k = assistant.settings.top_k
    chosen = [q for q in sample_questions(squad, None, seed=0) if q.answerable][: args.limit]
    scores: dict[str, dict[str, list[float]]] = {name: {"r1": [], "rr": []} for name in ("retrieved", "judged")}
    seconds = []
    for q in tqdm(chosen, desc="questions"):
        passages = assistant.retrieve(q.text, k)
        started = time.perf_counter()
        judged = [p for p, _ in judge.ranked(q.text, passages, [])]
        seconds.append(time.perf_counter() - started)
        for name, order in (("retrieved", passages), ("judged", judged)):
            ranked = list(dict.fromkeys(p.source for p in order))
            scores[name]["r1"].append(recall_at_k(ranked, q.paragraph, 1))
            scores[name]["rr"].append(reciprocal_rank(ranked, q.paragraph, k))
    print(f"\n{cpu_info().describe()}; SQuAD articles {args.articles}, {len(chosen)} answerable questions, top {k}")
    for name, s in scores.items():
        print(f"  {name:>9}: R@1 {fmean(s['r1']):.3f}  MRR@{k} {fmean(s['rr']):.3f}")
    print(f"  judging {k} passages: {fmean(seconds):.2f} s per question")


if __name__ == "__main__":
    main()
