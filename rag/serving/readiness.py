"""`/readyz`: whether each part a question needs (the index store, the generation engine) answers now.

`/healthz` says the process is alive and never touches a dependency; `/readyz` probes both parts at once,
each within `PROBE_TIMEOUT_S` (a hung database or model server is reported down, not waited for), and
answers 503 while one is down, so a load balancer stops sending questions to this replica. Failures seen
by questions and uploads are recorded too, with when they happened, and counted in /metrics by part.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rag.assistant import Assistant
from rag.dependencies import DependencyUnavailable
from rag.serving.metrics import Metrics
from rag.store.base import DatabaseUnavailable

PROBE_TIMEOUT_S = 1.5  # /readyz answers within this, whatever a part does


@dataclass
class PartHealth:
    """One part's state: up or not since `since`; its last error (kept after it recovers) and when it came."""

    up: bool = True
    since: float = 0.0
    last_error: str | None = None
    last_error_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "up" if self.up else "down",
            "since": _iso(self.since),
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
        }


class Readiness:
    def __init__(self, assistant: Assistant, metrics: Metrics) -> None:
        # read when probed: the engine is made on first use (with `auto`, maybe after measuring), not here
        self._probes = {"store": lambda: assistant.store.ping(), "engine": lambda: assistant.generator.ping()}
        # one thread per part: a probe stuck on a hung part is waited on again, never stacked up
        self._workers = {part: ThreadPoolExecutor(1, thread_name_prefix=f"readyz-{part}") for part in self._probes}
        self._running: dict[str, Future[None]] = {}
        now = time.time()
        self._parts = {part: PartHealth(since=now) for part in self._probes}
        self._lock = threading.Lock()
        self._metrics = metrics
        for part in self._probes:
            metrics.dependency_up.labels(part).set(1)

    def failed(self, exc: DependencyUnavailable) -> None:
        """A question or upload met `exc`: the part is down until a probe finds it back; counted once."""
        if getattr(exc, "noted", False):
            return
        exc.noted = True  # type: ignore[attr-defined]  # the service and the error handler both see it
        self._metrics.dependency_errors.labels(exc.part).inc()
        self._set("store" if isinstance(exc, DatabaseUnavailable) else "engine", str(exc))

    def check(self) -> dict[str, PartHealth]:
        """Probe every part at once, each for at most `PROBE_TIMEOUT_S`; the state of each after it."""
        with self._lock:
            for part, probe in self._probes.items():
                if part not in self._running or self._running[part].done():
                    self._running[part] = self._workers[part].submit(probe)
            running = dict(self._running)
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        for part, future in running.items():
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
                self._set(part, None)
            except FutureTimeout:
                self._set(part, f"no answer within {PROBE_TIMEOUT_S:g} s")
            except Exception as exc:  # any failure of a part is its being down, never this route's 500
                self._set(part, str(exc) or type(exc).__name__)
        with self._lock:
            return {part: PartHealth(**vars(health)) for part, health in self._parts.items()}

    def _set(self, part: str, error: str | None) -> None:
        with self._lock:
            health = self._parts[part]
            now = time.time()
            if health.up != (error is None):
                health.up, health.since = error is None, now
            if error is not None:
                health.last_error, health.last_error_at = error, now
            self._metrics.dependency_up.labels(part).set(1 if health.up else 0)


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")
