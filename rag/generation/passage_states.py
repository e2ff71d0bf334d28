"""Passage states on disk: each passage's keys and values, computed once after the fixed prompt, reused by questions.

Reading ~470 passage tokens is most of the time to the first word on 2 cores, and the passages are the
same text question after question. So an engine computes, once per passage, the attention keys and
values of its text as if it came right after the fixed head of every answer prompt (system prompt,
worked examples, "Passages:"), and a question only places those states at their positions and reads
what is new: each passage's number, the question, the reminder.

This module is the engine-independent part: what a state is keyed by, how it is kept (one file per
state, written to a temporary name and renamed, with a CRC32 of its payload checked on every read, so a
half-written or damaged file is never used: it is deleted and the passage read in full), and the disk
budget (`passage_state_gb`, least recently used out first). The bytes themselves are each engine's own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MAGIC = b"RAGPS\x00\x01\n"
_HEADER = struct.Struct("<8sIIQ")  # magic, token count, crc32 of the payload, payload length


@dataclass(frozen=True)
class PassageState:
    """One passage's keys and values in an engine's own format, and how many tokens they cover."""

    tokens: int
    data: bytes


def state_key(engine_id: str, head: list[int], body: list[int]) -> str:
    """Everything a state depends on: the engine and model (`engine_id`), the head it follows, its own tokens.

    The head's tokens stand for the prompt's version: any change to the system prompt or the worked
    examples gives every passage a new key, as does another model, engine build or cache type.
    """
    digest = hashlib.sha256(engine_id.encode())
    for tokens in (head, body):
        digest.update(struct.pack(f"<I{len(tokens)}I", len(tokens), *tokens))
    return digest.hexdigest()


class PassageStateStore:
    """A folder of state files; safe to share between threads of one process (and processes: writes are renames)."""

    def __init__(self, folder: Path, budget_bytes: int, reread_tokens: int = 0) -> None:
        self.folder = Path(folder)
        self.budget_bytes = budget_bytes
        # How a state is placed, not what it holds: the first tokens of each placed passage are read again in
        # place, after the passages before it (EPIC's LegoLink), so the passage's start attends to them.
        self.reread_tokens = reread_tokens
        self._lock = threading.Lock()
        self._total: int | None = None  # bytes on disk, counted on first write

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.kv"

    def has(self, key: str) -> bool:
        return self._path(key).is_file()

    def get(self, key: str) -> PassageState | None:
        """The state, or None when there is none or its file is damaged (then it is deleted)."""
        path = self._path(key)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        state = _decode(raw)
        if state is None:
            self._delete(path)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # most recently used: the last to be evicted
        return state

    def put(self, key: str, state: PassageState) -> None:
        """Write the state (to a temporary name, then renamed), then evict the least recently used past the budget.

        A state larger than the whole budget is not kept; a full or read-only disk is not an error here
        (the passage is read in full next time).
        """
        raw = _encode(state)
        if len(raw) > self.budget_bytes:
            return
        path = self._path(key)
        staging = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging.write_bytes(raw)
            os.replace(staging, path)
        except OSError:
            staging.unlink(missing_ok=True)
            return
        with self._lock:
            self._total = self._count() if self._total is None else self._total + len(raw)
            if self._total > self.budget_bytes:
                self._evict()

    def size_bytes(self) -> int:
        with self._lock:
            self._total = self._count()
            return self._total

    def count(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.kv"))

    def clear(self) -> None:
        for path in self.folder.glob("*/*.kv"):
            self._delete(path)
        self._total = 0

    def _count(self) -> int:
        total = 0
        for path in self.folder.glob("*/*.kv"):
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def _evict(self) -> None:
        """Delete the least recently used files until the folder is at 90% of the budget (callers hold the lock)."""
        files = []
        for path in self.folder.glob("*/*.kv"):
            try:
                stat = path.stat()
            except OSError:
                continue
            files.append((stat.st_mtime_ns, stat.st_size, path))
        files.sort()
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total <= 0.9 * self.budget_bytes:
                break
            self._delete(path)
            total -= size
        self._total = total

    @staticmethod
    def _delete(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()


class StateWorker:
    """Computes passage states in a background thread, so a question never waits for a state to be made.

    A server submits jobs (the states an answer lacked, an upload's new passages), each a callable given
    the worker's stop event; the thread runs them one after another through the engine, which takes its
    lock for one passage at a time, so a question waits for at most one passage's reading.
    """

    def __init__(self, max_waiting: int = 256) -> None:
        self._queue: queue.Queue[Callable[[threading.Event], Any] | None] = queue.Queue(max_waiting)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="passage-states", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[threading.Event], Any]) -> bool:
        """Queue a job; False when the queue is full (its states will be asked for again later)."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return False
        return True

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def join(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            job = self._queue.get()
            try:
                if job is not None:
                    job(self._stop)
            except Exception:  # a failed state is only a passage read in full next time
                pass
            finally:
                self._queue.task_done()


def _encode(state: PassageState) -> bytes:
    return _HEADER.pack(_MAGIC, state.tokens, zlib.crc32(state.data), len(state.data)) + state.data


def _decode(raw: bytes) -> PassageState | None:
    if len(raw) < _HEADER.size:
        return None
    magic, tokens, crc, length = _HEADER.unpack_from(raw)
    data = raw[_HEADER.size :]
    if magic != _MAGIC or length != len(data) or zlib.crc32(data) != crc:
        return None
    return PassageState(tokens, data)
