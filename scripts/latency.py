"""Median-of-N latency of the default configuration: seeds index build, first token and whole answer.

Usage: .venv/bin/python scripts/latency.py [--runs 5] [--question "..."]
With RAG_PASSAGE_STATES=true (and RAG_GENERATOR_ENGINE=llama.cpp) the passage states are made first, in a
folder of their own, and timed: the answers are then read from them.
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()

    builds = []
    for _ in range(args.runs):
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
        answers = [assistant.ask(args.question) for _ in range(args.runs)]

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


if __name__ == "__main__":
    main()
