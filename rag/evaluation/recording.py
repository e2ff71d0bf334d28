"""Recorded eval runs, and replays of them: a change after generation measured in minutes, not an hour.

`rag eval --record DIR` writes `DIR/run.json` (once: the settings, model, engine, prompt version, package
versions, CPU, and each set's metrics) and `DIR/<set>.jsonl` (per question: the search's candidates (chunk ids,
scores) and the passages read, the prompt,
the draft as it was streamed, every model call the steps after it made with its verdict, the final answer
with its citations and refusing step, the score and the timings).

`rag eval --replay DIR` asks the same questions again through the current pipeline, with an engine that
answers each recorded prompt with its recorded draft (`ReplayEngine`): retrieval, the checks, the judges,
citation placement and the yes/no reading run for real; generation does not, and a yes/no question put
with a recorded prompt gets its recorded verdict (only the ones a change altered are read by the model).
A prompt the recording does not hold (the change reached retrieval or prompting) is generated for real
and its question is marked so. The replay prints its metrics beside the recording's and every
question whose verdict or refusing step changed. A recording made with another model, engine or prompt
version is refused: its drafts would not be this pipeline's.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from rag.answering import prompts
from rag.evaluation.question_set import EvalQuestion, EvalReport, QuestionResult, Streamed
from rag.generation.base import GenerationEngine
from rag.types import Prompt, Turn

RECORD_VERSION = 1
RUN_FILE = "run.json"
PACKAGES = ("torch", "transformers", "llama-cpp-python", "sentence-transformers", "openai", "faiss-cpu", "bm25s")
# What must be the same for a recorded draft to be the draft this pipeline would write
MUST_MATCH = ("generator_model", "generator_engine", "prompt_version")


class RecordingError(ValueError):
    """The recording is missing, malformed or made under another model, engine or prompt version."""


def prompt_version() -> str:
    """A digest of the code that writes the prompts: any change to a template or instruction changes it."""
    return hashlib.sha256(inspect.getsource(prompts).encode()).hexdigest()[:16]


def prompt_key(prompt: Prompt) -> str:
    """What the model reads and may write: the messages and the answer's length limit."""
    text = json.dumps([prompt.messages, prompt.max_new_tokens], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


class _Delegating(GenerationEngine):
    """An engine that passes every call to `inner` (the real one); subclasses change `stream`/`yes_log_odds`."""

    def __init__(self, inner: GenerationEngine) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]  # the wrapped engine's own name, for reports and checks
        self.passage_states = inner.passage_states
        self._calls: list[dict[str, Any]] = []
        self._calls_lock = threading.Lock()

    def load(self) -> None:
        self.inner.load()

    def ping(self) -> None:
        self.inner.ping()

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def missing_passage_states(self, prompt: Prompt) -> int:
        return self.inner.missing_passage_states(prompt)

    def store_passage_states(self, prompt: Prompt, cancel: threading.Event | None = None) -> int:
        return self.inner.store_passage_states(prompt, cancel)

    def stream(self, prompt: Prompt, cancel: threading.Event | None = None) -> Iterator[str]:
        yield from self.inner.stream(prompt, cancel)

    def answer_tokens(self, text: str) -> list[int]:
        return self.inner.answer_tokens(text)

    def continuation_log_probs(self, prompt: Prompt, continuation: list[int]) -> np.ndarray:
        return self.inner.continuation_log_probs(prompt, continuation)

    def yes_log_odds(self, prompt: Prompt) -> float:
        odds = self.inner.yes_log_odds(prompt)
        self._note({"call": "yes_no", "key": prompt_key(prompt), "messages": prompt.messages, "log_odds": odds})
        return odds

    def _note(self, call: dict[str, Any]) -> None:
        with self._calls_lock:
            self._calls.append(call)

    def take_calls(self) -> list[dict[str, Any]]:
        """The calls made since the last take (one question's), in order."""
        with self._calls_lock:
            calls, self._calls = self._calls, []
        return calls


class RecordingEngine(_Delegating):
    """The real engine, with every generation and yes/no call of the current question kept."""

    def stream(self, prompt: Prompt, cancel: threading.Event | None = None) -> Iterator[str]:
        pieces: list[str] = []
        started = time.perf_counter()
        try:
            for piece in self.inner.stream(prompt, cancel):
                pieces.append(piece)
                yield piece
        finally:  # also when the caller closes the stream early (a list that began to repeat itself)
            self._note(
                {
                    "call": "stream",
                    "key": prompt_key(prompt),
                    "messages": prompt.messages,
                    "prompt_tokens": self.inner.count_tokens("".join(m["content"] for m in prompt.messages)),
                    "max_new_tokens": prompt.max_new_tokens,
                    "fixed": prompt.fixed,
                    "segments": [asdict(segment) for segment in prompt.passages],
                    "pieces": pieces,
                    "tokens": self._tokens("".join(pieces)),
                    "seconds": round(time.perf_counter() - started, 3),
                }
            )

    def _tokens(self, text: str) -> list[int] | None:
        try:
            return self.inner.answer_tokens(text)
        except NotImplementedError:  # a model server: its drafts replay, they cannot be read again for fidelity
            return None


class ReplayEngine(_Delegating):
    """Answers a recorded prompt with its recorded draft, piece by piece; any other prompt goes to the real
    engine (counted in `generated`). A yes/no question asked with the very prompt the recording asked gets
    the recorded log-odds (the model is deterministic: the same prompt gives the same verdict, and reading
    it again is most of a replay's time); a yes/no question a change has altered runs for real."""

    def __init__(
        self, inner: GenerationEngine, drafts: dict[str, list[str]], log_odds: dict[str, float] | None = None
    ) -> None:
        super().__init__(inner)
        self.drafts = drafts
        self.log_odds = log_odds or {}
        self.generated = 0

    def yes_log_odds(self, prompt: Prompt) -> float:
        key = prompt_key(prompt)
        if key in self.log_odds:
            return self.log_odds[key]
        return super().yes_log_odds(prompt)

    def stream(self, prompt: Prompt, cancel: threading.Event | None = None) -> Iterator[str]:
        key = prompt_key(prompt)
        pieces = self.drafts.get(key)
        if pieces is None:
            self.generated += 1
            self._note({"call": "generated", "key": key})
            yield from self.inner.stream(prompt, cancel)
            return
        for piece in pieces:
            if cancel is not None and cancel.is_set():
                return
            yield piece


@dataclass
class Recording:
    """A recorded run: its header and, per set, its question lines by question id."""

    folder: Path
    header: dict[str, Any]
    lines: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def calls(self, kind: str) -> Iterator[dict[str, Any]]:
        """Every recorded model call of one kind ("stream", "yes_no"), question by question."""
        for questions in self.lines.values():
            for line in questions.values():
                yield from (call for call in line["calls"] if call["call"] == kind)

    def drafts(self) -> dict[str, list[str]]:
        return {call["key"]: call["pieces"] for call in self.calls("stream")}

    def log_odds(self) -> dict[str, float]:
        """Each recorded yes/no prompt's verdict, by prompt key."""
        return {call["key"]: call["log_odds"] for call in self.calls("yes_no")}

    def check_matches(self, header: dict[str, Any]) -> None:
        """Refuse, saying what differs, when `header` (this run's) is not what the recording was made under."""
        differs = [
            f"{k} {self.header.get(k)!r} there, {header.get(k)!r} here"
            for k in MUST_MATCH
            if self.header.get(k) != header.get(k)
        ]
        if differs:
            raise RecordingError(
                f"{self.folder} was recorded under another configuration ({'; '.join(differs)}): its drafts are "
                "not what this pipeline would write, so a replay would compare nothing. Record again with "
                f"`rag eval --record DIR`, or replay under the recorded {', '.join(MUST_MATCH)}."
            )


def run_header(settings_dump: dict[str, Any], engine: str, cpu: str) -> dict[str, Any]:
    return {
        "record_version": RECORD_VERSION,
        "generator_model": settings_dump["generator_model"],
        "generator_engine": engine,
        "prompt_version": prompt_version(),
        "packages": package_versions(),
        "cpu": cpu,
        "settings": settings_dump,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sets": {},
    }


def load_recording(folder: Path) -> Recording:
    run = folder / RUN_FILE
    if not run.is_file():
        raise RecordingError(f"{folder}: no {RUN_FILE} here; make a recording with `rag eval --record {folder}`")
    try:
        header = json.loads(run.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RecordingError(f"{run}: not valid JSON ({exc})") from None
    if header.get("record_version") != RECORD_VERSION:
        raise RecordingError(f"{run}: recorded in format {header.get('record_version')}, this reads {RECORD_VERSION}")
    recording = Recording(folder, header)
    for name in header["sets"]:
        path = folder / f"{name}.jsonl"
        if not path.is_file():
            raise RecordingError(f"{folder}: {RUN_FILE} names the set {name}, but {path.name} is missing")
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        recording.lines[name] = {line["id"]: line for line in lines}
    return recording


class Recorder:
    """Writes a recording as the eval runs: the header first, then one line per question as it is scored."""

    def __init__(self, folder: Path, header: dict[str, Any], engine: RecordingEngine) -> None:
        self.folder = folder
        self.header = header
        self.engine = engine
        folder.mkdir(parents=True, exist_ok=True)
        self._write_header()

    def _write_header(self) -> None:
        path = self.folder / RUN_FILE
        path.write_text(json.dumps(self.header, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def start_set(self, name: str, path: str, ids: list[str]) -> None:
        self.header["sets"][name] = {"path": path, "questions": ids, "metrics": None}
        (self.folder / f"{name}.jsonl").write_text("", encoding="utf-8")
        self._write_header()

    def on_result(self, set_name: str) -> Callable[[EvalQuestion, Streamed, QuestionResult, list[Turn]], None]:
        """What `run_question_set` calls as each question is scored: its line, with the model calls it made."""

        def add(question: EvalQuestion, streamed: Streamed, result: QuestionResult, history: list[Turn]) -> None:
            line = question_line(question.id, streamed, result, self.engine.take_calls(), history)
            with open(self.folder / f"{set_name}.jsonl", "a", encoding="utf-8") as out:
                out.write(json.dumps(line, ensure_ascii=False) + "\n")

        return add

    def finish_set(self, name: str, metrics: dict[str, Any], seconds: float) -> None:
        self.header["sets"][name].update(metrics=metrics, seconds=round(seconds, 1))
        self._write_header()


def question_line(
    question_id: str, streamed: Streamed, result: QuestionResult, calls: list[dict[str, Any]], history: list[Turn]
) -> dict[str, Any]:
    """One recorded question: what the search found and what it read, what the model was asked and wrote, what
    was decided, its score."""
    answer = streamed.answer
    return {
        "id": question_id,
        "question": answer.question,
        "history": [asdict(turn) for turn in history],
        "kind": answer.kind,
        "passages": [
            {
                "chunk_id": p.chunk.chunk_id,
                "doc_id": p.chunk.doc_id,
                "source": p.source,
                "start": p.chunk.start,
                "end": p.chunk.end,
                "score": p.score,
                "relevance": p.relevance,
            }
            for p in answer.passages
        ],
        "candidates": [
            {"chunk_id": p.chunk.chunk_id, "source": p.source, "score": p.score} for p in streamed.candidates
        ],
        "calls": calls,
        "draft": result.draft,
        "answer": answer.answer,
        "abstained_by": answer.abstained_by,
        "citations": [
            {"n": c.n, "source": c.source, "start": c.start, "end": c.end, "quote": [c.quote_start, c.quote_end]}
            for c in answer.citations
        ],
        "score": {
            "verdict": result.verdict,
            "correct": result.correct,
            "polarity": result.polarity,
            "citations_precise": [c.precise for c in result.citations],
            "lost": result.lost,
        },
        "timings": asdict(answer.timings),
    }


HEADLINE = ("correctness", "citation_precision", "abstention_recall", "false_abstention", "yes_no_right_polarity")


class Replay:
    """A recording asked again through the current pipeline on its recorded drafts."""

    def __init__(self, recording: Recording, engine: ReplayEngine) -> None:
        self.recording = recording
        self.engine = engine
        self.generated: set[str] = set()  # questions whose prompt the recording did not hold

    def on_result(self, set_name: str) -> Callable[[EvalQuestion, Streamed, QuestionResult, list[Turn]], None]:
        def note(question: EvalQuestion, streamed: Streamed, result: QuestionResult, history: list[Turn]) -> None:
            if any(call["call"] == "generated" for call in self.engine.take_calls()):
                self.generated.add(f"{set_name}/{question.id}")

        return note

    def changes(self, report: EvalReport) -> list[tuple[str, str, str]]:
        """(question id, recorded, replayed) for each question whose verdict or refusing step changed."""
        recorded = self.recording.lines[report.name]
        changed = []
        for result in report.results:
            before = recorded[result.id]
            was = _outcome(before["score"]["verdict"], before["abstained_by"])
            now = _outcome(result.verdict, result.abstained_by)
            if was != now:
                changed.append((result.id, was, now))
        return changed

    def compare(self, report: EvalReport) -> str:
        """The replay's headline metrics beside the recording's, and every question that changed."""
        before = self.recording.header["sets"][report.name]["metrics"] or {}
        lines = [f"Replay of {report.name} ({self.recording.folder}): recorded | replayed", ""]
        for name in HEADLINE:
            lines.append(f"  {name:<24}{_value(before.get(name)):>10}{_value(report.metrics.get(name)):>10}")
        generated = sorted(k.split("/", 1)[1] for k in self.generated if k.startswith(f"{report.name}/"))
        if generated:
            lines += ["", f"  generated for real (prompt not in the recording): {', '.join(generated)}"]
        losses = ", ".join(f"{name} {n}" for name, n in report.losses.items()) or "nowhere"
        lines += ["", f"  where lost (replayed): {losses}"]
        changes = self.changes(report)
        lines += ["", f"  {len(changes)} of {len(report.results)} questions changed verdict or refusing step"]
        lines += [f"  {qid}: {was} -> {now}" for qid, was, now in changes]
        return "\n".join(lines)


def _outcome(verdict: str, step: str | None) -> str:
    return f"{verdict} [{step}]" if step else verdict


def _value(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
