"""What `rag eval --record` adds to an eval, from a recording: the work recording does beside answering, timed.

Usage: .venv/bin/python scripts/recording_overhead.py runs/q-full
Recording runs the same pipeline and adds, per model call, the prompt's key (a digest), its token count and
its passages' segments, per draft its token ids, and per question one JSON line appended to a file. This
script does that work again for every recorded question, with the recording's engine (its tokenizer), and
prints it beside the recorded time of the answers themselves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from rag.assistant import Assistant
from rag.evaluation.recording import load_recording, prompt_key
from rag.settings import get_settings
from rag.types import Prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recording", type=Path)
    args = parser.parse_args()
    recording = load_recording(args.recording)
    settings = get_settings().model_copy(update={"generator_engine": recording.header["generator_engine"]})
    engine = Assistant(settings).generator
    engine.load()
    answered_s, extra_s = [], []
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "set.jsonl"
        for questions in recording.lines.values():
            for line in questions.values():
                started = time.perf_counter()
                for call in line["calls"]:
                    prompt = Prompt(call["messages"], call.get("fixed", 0), max_new_tokens=call.get("max_new_tokens"))
                    prompt_key(prompt)
                    if call["call"] == "stream":
                        engine.count_tokens("".join(m["content"] for m in call["messages"]))
                        engine.answer_tokens("".join(call["pieces"]))
                with open(out, "a", encoding="utf-8") as file:
                    file.write(json.dumps(line, ensure_ascii=False) + "\n")
                extra_s.append(time.perf_counter() - started)
                answered_s.append(line["timings"]["total_ms"] / 1000)
    share = sum(extra_s) / sum(answered_s)
    print(f"{len(extra_s)} questions of {args.recording} ({recording.header['generator_engine']})")
    print("| | per question, median | all questions |")
    print("|---|---|---|")
    print(f"| answering (recorded) | {statistics.median(answered_s):.2f} s | {sum(answered_s):.1f} s |")
    print(f"| recording's own work | {statistics.median(extra_s) * 1000:.1f} ms | {sum(extra_s):.2f} s ({share:.2%}) |")


if __name__ == "__main__":
    main()
