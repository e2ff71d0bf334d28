"""What the UI and the API share on top of the one `Assistant`: a line for the model, and uploads.

A 2-core CPU has room for one generation at a time, so every answer (from the UI, the API, the
widget or `gradio_client`) and every upload waits for its turn here; a bounded number may wait,
and a caller whose client went away (its `cancel` set) leaves the line or stops generating. With a
model server (the openai engine) the line has `max_concurrent_generations` places instead of one:
the bound on what this process asks of the server at once. Uploads then do not join it (they ask
nothing of the model server, and behind a busy line they would wait minutes); they only queue
behind each other.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import rag.disk as disk
from rag.assistant import Assistant, IndexReport
from rag.dependencies import DependencyUnavailable
from rag.serving.metrics import Metrics
from rag.serving.readiness import Readiness
from rag.store.base import IndexWriteError
from rag.types import Answer, AnswerEvent, Passage, Turn

_UNSAFE_NAME = re.compile(r"[^\w.\- ]+")
_POLL_S = 0.2
BUSY_RETRY_AFTER_S = 30  # what a refused caller is told to wait (Retry-After)


class Busy(RuntimeError):
    """Too many questions are already waiting; the caller should try again later."""


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name its sender gave it and where its bytes are now."""

    name: str
    path: Path


@dataclass(frozen=True)
class UploadResult:
    """What happened to one uploaded file: indexed (added or changed) or refused, with why."""

    name: str
    source: str
    status: str  # "added", "changed", "unchanged" or "error"
    detail: str = ""


class AnswerService:
    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.upload_dir = assistant.settings.upload_dir
        self.metrics = Metrics()
        self.metrics.watch(lambda: self._waiting, self._document_count, self._chunk_count)
        self.readiness = Readiness(assistant, self.metrics)
        settings = assistant.settings
        remote = settings.generator_engine == "openai"
        # a semaphore, not a lock: Gradio may resume a generator (and release its turn) on another thread
        self._turn = threading.BoundedSemaphore(settings.max_concurrent_generations if remote else 1)
        self._uploads_wait_for_the_model = not remote
        self._upload_lock = threading.Lock()
        self._waiting = 0
        self._waiting_lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """Answers and uploads waiting for their turn (not counting the one running)."""
        return self._waiting

    # ---- answers -------------------------------------------------------------------------

    def stream(
        self, question: str, history: Sequence[Turn] = (), cancel: threading.Event | None = None
    ) -> Iterator[AnswerEvent]:
        """Check the question now (raising `QuestionError` or `Busy`), then stream it when its turn comes."""
        question = self.assistant.check_question(question)
        if self._waiting >= self.assistant.settings.max_waiting:  # a soft limit: checked, not reserved
            self.metrics.rejected.inc()
            raise Busy(f"{self._waiting} questions are waiting for the model; try again in a minute")
        return self._answer(question, list(history), cancel or threading.Event())

    def ask(self, question: str, history: Sequence[Turn] = (), cancel: threading.Event | None = None) -> Answer:
        for event in self.stream(question, history, cancel):
            if isinstance(event, Answer):
                return event
        raise RuntimeError("the answer was cancelled before it was complete")

    def _answer(self, question: str, history: list[Turn], cancel: threading.Event) -> Iterator[AnswerEvent]:
        pieces: list[str] = []
        first = last = 0.0
        outcome = "cancelled"  # unless an answer comes, or the pipeline fails
        try:
            with (
                self._exclusive(cancel) as turn,
                self.metrics.generations_running.track_inprogress(),
            ):
                if turn and not cancel.is_set():
                    for event in self.assistant.ask_stream(question, history, cancel):
                        if isinstance(event, str):
                            last = time.perf_counter()
                            first = first or last
                            pieces.append(event)
                        elif isinstance(event, Answer):
                            outcome = ""
                            tokens = self.assistant.generator.count_tokens("".join(pieces)) if pieces else 0
                            self.metrics.answered(event, tokens, last - first)
                        yield event
        except Exception as exc:
            outcome = "failed"
            if isinstance(exc, DependencyUnavailable):
                self.readiness.failed(exc)
            raise
        finally:
            cancel.set()  # a client that stopped reading stops the generation
            if outcome:
                self.metrics.answers.labels(outcome).inc()

    @contextmanager
    def _exclusive(self, cancel: threading.Event | None = None) -> Iterator[bool]:
        """Wait for the model; yields False if `cancel` was set while waiting (the turn is skipped).

        Raises `Busy` after `max_queue_wait_s` of waiting: the count bound (`max_waiting`) alone lets a slow
        CPU keep the last of a full line for many minutes, which a client cannot tell from a hang.
        """
        with self._waiting_lock:
            self._waiting += 1
        acquired = False
        max_wait_s = self.assistant.settings.max_queue_wait_s
        deadline = time.monotonic() + max_wait_s
        try:
            while not (acquired := self._turn.acquire(timeout=_POLL_S)):
                if cancel is not None and cancel.is_set():
                    break
                if time.monotonic() > deadline:
                    self.metrics.rejected.inc()
                    raise Busy(f"waited {max_wait_s:.0f} s for the model without a turn; try again in a minute")
        finally:
            with self._waiting_lock:
                self._waiting -= 1
        try:
            yield acquired
        finally:
            if acquired:
                self._turn.release()

    # ---- uploads -------------------------------------------------------------------------

    def add_documents(self, uploads: Sequence[Upload]) -> list[UploadResult]:
        """Copy uploads under the index dir and index them incrementally, keeping every other document.

        A file that cannot be indexed is reported and its copy removed again (an earlier version of it
        stays in the index, as with `rag index`).
        """
        saved: dict[str, str] = {}  # stored path -> name given
        new: list[Path] = []  # stored paths that held no earlier version
        results: list[UploadResult] = []
        try:
            self.upload_dir.mkdir(parents=True, exist_ok=True)
            for upload in uploads:
                target = self.upload_dir / safe_filename(upload.name)
                if str(target) in saved:
                    results.append(UploadResult(upload.name, "", "error", f"same file name as {saved[str(target)]}"))
                    continue
                _copy_whole(upload.path, target, new)
                saved[str(target)] = upload.name
            if not saved:
                return results
            with self._exclusive() if self._uploads_wait_for_the_model else self._upload_lock:
                report = self.assistant.index(list(saved), replace=False)
            self.assistant.store_passage_states_later()
        except DependencyUnavailable as exc:  # refused with a 503: nothing of the batch is kept
            _discard(new)
            self.readiness.failed(exc)
            raise
        except (IndexWriteError, Busy):
            _discard(new)
            raise
        except OSError as exc:
            _discard(new)
            message = disk.describe(exc, self.upload_dir, "RAG_INDEX_DIR")
            if message is None:
                raise
            raise IndexWriteError(f"cannot keep the uploaded files: {message}; the index is unchanged") from exc
        self.metrics.ingest_failed(report.errors)
        return results + _results(report, saved)

    def search(self, query: str, k: int) -> list[Passage]:
        """The `k` passages an answer to `query` would be read from; no model turn needed (retrieval only)."""
        return self.assistant.retrieve(query, k)

    def documents(self) -> list[dict[str, object]]:
        chunks = self.assistant.store.chunk_counts()
        return [
            {
                "doc_id": d.doc_id,
                "title": d.title,
                "source": d.source,
                "chunks": chunks.get(d.doc_id, 0),
                "chars": len(d.text),
            }
            for d in self.assistant.documents()
        ]

    def _document_count(self) -> float:
        return self._index_count(lambda counts: len(counts))

    def _chunk_count(self) -> float:
        return self._index_count(lambda counts: sum(counts.values()))

    def _index_count(self, count: Callable[[dict[str, int]], int]) -> float:
        """For /metrics: NaN while the store is down, so the scrape still shows what is (the part being down)."""
        try:
            return count(self.assistant.store.chunk_counts()) if self.assistant.store.is_built() else 0
        except DependencyUnavailable:
            return math.nan


def safe_filename(name: str) -> str:
    """The last part of a client-given name, without path tricks or odd characters; keeps the extension."""
    base = _UNSAFE_NAME.sub("_", Path(name.replace("\\", "/")).name).strip(". ")
    return base[:120] or "upload"


def _copy_whole(source: Path, target: Path, new: list[Path]) -> None:
    """Copy beside `target` (a hidden name the loaders skip), then rename: a full disk cuts off the copy,
    never the earlier version of the file, which the index still holds."""
    partial = target.with_name(f".{target.name}.partial")
    existed = target.exists()
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
    if not existed:
        new.append(target)


def _discard(new: list[Path]) -> None:
    """The new files of a batch the sender is told was not taken (the disk is full or read-only); a file
    that replaced an earlier version stays, for the next sync to index (deleting it would drop that version)."""
    for path in new:
        with contextlib.suppress(OSError):  # a read-only disk holds none of them anyway
            path.unlink(missing_ok=True)


def _results(report: IndexReport, saved: dict[str, str]) -> list[UploadResult]:
    """Match the index report back to the uploaded names; `load_documents` shows paths relative to cwd."""
    sync = report.sync
    status = {s: "added" for s in sync.added} | {s: "changed" for s in [*sync.changed, *sync.retitled]}
    status |= {s: "unchanged" for s in sync.unchanged}
    errors = {e.path: e.reason for e in report.errors}
    shown = {Path(s).resolve(): s for s in [*status, *errors]}
    results = []
    for stored, name in saved.items():
        source = shown.get(Path(stored).resolve(), stored)
        if source in errors:
            Path(stored).unlink(missing_ok=True)
            results.append(UploadResult(name, source, "error", errors[source]))
        else:
            results.append(UploadResult(name, source, status.get(source, "unchanged")))
    return results
