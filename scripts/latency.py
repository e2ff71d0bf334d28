"""Median-of-N latency of the default configuration: seeds index build, first token and whole answer.

Usage: .venv/bin/python scripts/latency.py [--runs 5] [--question "..."]
With RAG_PASSAGE_STATES=true (and RAG_GENERATOR_ENGINE=llama.cpp) the passage states are made first, in a
folder of their own, and timed: the answers are then read from them. With --profile, where each answer's
time goes: the pipeline's stages (retrieval, excerpts, planning the prompt, restoring the fixed messages,
loading and placing passage states, reading tokens in place, decoding, the checks), per answer.

Each timed question is asked after another one (--between), so the context does not already hold its
passages and question, as it would when the same question is asked twice in a row.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from rag.assistant import Assistant
from rag.settings import Settings


def _row(name: str, values: list[float], unit: str) -> str:
    return f"| {name} | {statistics.median(values):.2f} {unit} | {min(values):.2f} | {max(values):.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--question", default="What did LeCun propose in Paris?")
    parser.add_argument("--between", default="Who is Meta's chief AI scientist?", help="asked before each timed one")
    parser.add_argument("--profile", action="store_true", help="print where each answer's time goes, by stage")
    parser.add_argument("--builds", type=int, default=None, help="index builds timed (default: --runs)")
    args = parser.parse_args()

    builds = []
    for _ in range(args.runs if args.builds is None else args.builds):
        with tempfile.TemporaryDirectory() as tmp:
            assistant = Assistant(Settings(index_dir=Path(tmp) / "index"))
            assistant.embedder.encode(["load the embedder outside the timing"])
            started = time.perf_counter()
            assistant.index()
            builds.append(time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as tmp:
        assistant = Assistant(Settings(index_dir=Path(tmp) / "index", passage_state_dir=Path(tmp) / "states"))
        assistant.index()
        assistant.generator.load()
        started = time.perf_counter()
        states = assistant.store_passage_states()
        states_s = time.perf_counter() - started
        assistant.warm_up()
        assistant.ask(args.question)  # one untimed answer: first-call allocations and caches
        profile = cProfile.Profile()
        answers = []
        for _ in range(args.runs):
            assistant.ask(args.between)
            profile.enable()
            answers.append(assistant.ask(args.question))
            profile.disable()

    print(
        f"{args.runs} runs, model {assistant.settings.generator_model}, engine {assistant.generator.name}, "
        f"passage states {assistant.settings.passage_states} ({states} made in {states_s:.1f} s), "
        f"question: {args.question!r}"
    )
    print(f"answer: {answers[-1].answer}")
    print("| measure | median | min | max |")
    print("|---|---|---|---|")
    print(_row("seeds index build", builds, "s"))
    print(_row("retrieval", [a.timings.retrieve_ms / 1000 for a in answers], "s"))
    print(_row("first token", [a.timings.first_token_ms / 1000 for a in answers], "s"))
    print(_row("whole answer", [a.timings.total_ms / 1000 for a in answers], "s"))
    if args.profile:
        print_stages(pstats.Stats(profile), args.runs)


# (stage, module file suffix, function): cumulative seconds, so a stage includes what it calls
STAGES = (
    ("retrieval and evidence", "answering/answerers/", "gather"),
    ("checks before the model", "rag/assistant.py", "_refused_before_generation"),
    ("excerpts (sentence embeddings)", "retrieval/excerpts.py", "trim"),
    ("prompt planned (tokenized, states looked up)", "generation/context.py", "plan_prompt"),
    ("fixed messages restored", "generation/llamacpp.py", "_restore_prefix"),
    ("passage states placed (all)", "generation/llamacpp.py", "_place"),
    ("  of which read from disk", "generation/passage_states.py", "get"),
    ("tokens read in place (llama.cpp eval)", "llama_cpp/llama.py", "eval"),
    ("decoding steps", "generation/llamacpp.py", "_step"),
    ("transformers: passage states placed", "transformers/engine.py", "_place"),
    ("transformers: decoding steps", "transformers/engine.py", "_step"),
    ("checks after the draft", "answering/answerers/drafted.py", "checked"),
)


def print_stages(stats: pstats.Stats, runs: int) -> None:
    """Each stage's cumulative time per answer (stages nest: the checks include their own prefills)."""
    print("| stage (per answer) | seconds | calls |")
    print("|---|---|---|")
    table = stats.stats  # type: ignore[attr-defined]  # {(file, line, function): (cc, nc, tt, ct, callers)}
    for name, suffix, function in STAGES:
        rows = [v for (file, _, fn), v in table.items() if fn == function and suffix in file]
        if rows:
            calls = sum(r[1] for r in rows)
            print(f"| {name} | {sum(r[3] for r in rows) / runs:.3f} | {calls / runs:.1f} |")


if __name__ == "__main__":
    main()
