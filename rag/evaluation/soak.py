"""`rag soak`: N clients against a real server (`python app.py`, the configured model) for M minutes.

Each client loops over a mix of what users do: JSON and streamed questions, follow-ups, streams closed
after the first words, document listings and uploads. Every request is recorded with its route,
status and latency. A run lasts its minutes and then goes on, asking only for what is still missing,
until each of `ANSWERED_ROUTES` has been answered at least once (at most `OVERTIME_S` more): on two slow
cores a minute can pass without one whole stream, and a run that never streamed proves nothing about
streams. The run fails (exit 1) on any 5xx, any request that hangs past its timeout, a 503
without Retry-After, a generation still running once every client has left, or growth of the server's
memory or open files beyond noise over the last two thirds of the run (the first third settles the
allocator and caches). Loopback only, bounded in time and clients.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from rag.evaluation.bench.report import Series, free_port
from rag.settings import Settings

QUESTIONS = (
    "What did LeCun propose in Paris?",
    "Who is Meta's chief AI scientist?",
    "Why does Meta release its models openly?",
    "What did Macron announce?",  # refused before generation
    "What is PyTorch?",
)
FOLLOW_UPS = ("Why?", "What did he say next?", "Which article says so?")
ACTIONS = {  # what a client does next, by weight
    "ask": 30,
    "ask_stream": 25,
    "follow_up": 15,
    "disconnect": 10,
    "documents": 15,
    "upload": 5,
}
REQUEST_TIMEOUT_S = 600  # a request still unanswered then is a hang
MAX_MINUTES, MAX_CLIENTS = 240, 64
RSS_NOISE = 0.10  # growth of resident memory over the last two thirds that counts as a leak: 10% and 100 MB
RSS_NOISE_MB = 100
FD_NOISE = 16
# Each answered (200) at least once before a run ends, with the action that asks for it once time is up
ANSWERED_ROUTES = {"POST /api/ask": "ask", "POST /api/ask/stream": "ask_stream", "GET /api/documents": "documents"}
OVERTIME_S = 600  # how long past its minutes a run waits for a route still unanswered
RETRY_PAUSE_S = 0.5  # a client's pause after a 503 (shorter than Retry-After, to keep the load up)


@dataclass
class Record:
    route: str
    status: int  # 0: no reply (hang or connection error)
    seconds: float
    note: str = ""


@dataclass
class SoakResult:
    minutes: float
    clients: int
    records: list[Record] = field(default_factory=list)
    start: tuple[float, int] = (0.0, 0)  # RSS MB, open fds, after the warm-up
    settled: tuple[float, int] = (0.0, 0)  # a third into the run: what growth is measured from
    end: tuple[float, int] = (0.0, 0)
    left_running: int = 0
    overtime_s: float = 0.0  # how long past its minutes the run went on for an unanswered route
    problems: list[str] = field(default_factory=list)


def soak(settings: Settings, minutes: float, clients: int, seed: int = 0) -> SoakResult:
    if not (0 < minutes <= MAX_MINUTES and 0 < clients <= MAX_CLIENTS):
        raise ValueError(f"--minutes must be in (0, {MAX_MINUTES}] and --clients in [1, {MAX_CLIENTS}]")
    result = SoakResult(minutes, clients)
    admin = secrets.token_hex(8)
    with (
        tempfile.TemporaryDirectory(prefix="rag-soak-") as tmp,
        soak_server(settings, Path(tmp), admin) as (url, server),
    ):
        _warm_up(url)
        result.start = _resources(server.pid)
        deadline = time.monotonic() + minutes * 60
        threads = start_clients(url, admin, clients, seed, deadline, result)
        time.sleep(minutes * 60 / 3)
        result.settled = _resources(server.pid)
        for thread in threads:
            thread.join()
        result.overtime_s = max(0.0, time.monotonic() - deadline)
        result.left_running = _settled(url)
        result.end = _resources(server.pid)
    result.problems = _problems(result)
    return result


@contextmanager
def soak_server(
    settings: Settings, folder: Path, admin: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real `python -m rag.serving.app` on a free loopback port, indexing into `folder`; `env` adds settings."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAG_HOST": "127.0.0.1",
        "RAG_PORT": str(port),
        "RAG_INDEX_DIR": str(folder / "index"),
        "RAG_DEFAULT_CORPUS": str(settings.default_corpus),
        "RAG_GENERATOR_MODEL": settings.generator_model,
        "RAG_ADMIN_TOKEN": admin,
        **(env or {}),
    }
    log = folder / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "rag.serving.app"], env=server_env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until_up(f"{url}/healthz", server, log)
        yield url, server
    finally:
        server.terminate()
        server.wait(timeout=60)


def start_clients(
    url: str,
    admin: str,
    clients: int,
    seed: int,
    deadline: float,
    result: SoakResult,
    uploaded: list[str] | None = None,
) -> list[threading.Thread]:
    """The soak's clients, each on a thread of its own until `deadline`, recording into `result`."""
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_client, args=(url, admin, deadline, random.Random(seed + i), result, lock, uploaded))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    return threads


def _client(
    url: str,
    admin: str,
    deadline: float,
    rng: random.Random,
    result: SoakResult,
    lock: threading.Lock,
    uploaded: list[str] | None,
) -> None:
    history: list[dict[str, str]] = []
    names, weights = zip(*ACTIONS.items(), strict=True)
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        while True:
            with lock:
                missing = unanswered_routes(result)
            now = time.monotonic()
            if now >= deadline + (OVERTIME_S if missing else 0):
                break
            action = rng.choices(names, weights)[0] if now < deadline else ANSWERED_ROUTES[rng.choice(missing)]
            started = time.perf_counter()
            route, status, note = _act(client, action, rng, history, admin, uploaded)
            with lock:
                result.records.append(Record(route, status, time.perf_counter() - started, note))
            if status == 503:
                time.sleep(RETRY_PAUSE_S)  # told to come back later: a client does not hammer the server


def _act(
    client: httpx.Client,
    action: str,
    rng: random.Random,
    history: list[dict[str, str]],
    admin: str,
    uploaded: list[str] | None = None,
) -> tuple[str, int, str]:
    """One request: its route label, status and a note (what went wrong, if anything).

    With `uploaded`, each upload has a name of its own, added there once acknowledged (to be found later);
    without, every upload replaces the one memo, so the index does not grow over a long soak.
    """
    try:
        if action == "documents":
            return "GET /api/documents", client.get("/api/documents").status_code, ""
        if action == "upload":
            text = f"Memo {rng.random()}\n\nThe canteen serves fish on day {rng.randint(1, 31)}."
            name = "memo.txt" if uploaded is None else f"memo-{secrets.token_hex(6)}.txt"
            reply = client.post(
                "/api/documents", files={"files": (name, text.encode())}, headers={"X-Admin-Token": admin}
            )
            if reply.status_code == 200 and uploaded is not None:
                uploaded.append(name)
            return "POST /api/documents", reply.status_code, _retry_after(reply)
        question = rng.choice(FOLLOW_UPS) if action == "follow_up" and history else rng.choice(QUESTIONS)
        body = {"question": question, "history": history[-2:] if action == "follow_up" else []}
        if action == "ask" or action == "follow_up":
            reply = client.post("/api/ask", json=body)
            if reply.status_code == 200:
                history.append({"question": question, "answer": reply.json()["answer"]})
            return "POST /api/ask", reply.status_code, _retry_after(reply)
        with client.stream("POST", "/api/ask/stream", json=body) as reply:
            if reply.status_code != 200:
                reply.read()
                return "POST /api/ask/stream", reply.status_code, _retry_after(reply)
            lines = reply.iter_lines()
            for line in lines:
                if action == "disconnect" and line.startswith("event: token"):
                    return "POST /api/ask/stream (left)", 200, ""  # leaving the block closes the connection
                if line.startswith("event: error"):
                    data = json.loads(next(lines).removeprefix("data:"))
                    if data.get("status") == 503:  # waited too long: a refusal with its retry_after, not a fault
                        return "POST /api/ask/stream", 503, "" if data.get("retry_after") else "503 without Retry-After"
                    return "POST /api/ask/stream", 200, "error event"
        return "POST /api/ask/stream", 200, ""
    except httpx.TimeoutException:
        return f"{action}", 0, "hang"
    except httpx.HTTPError as exc:
        return f"{action}", 0, f"connection: {type(exc).__name__}"


def unanswered_routes(result: SoakResult) -> list[str]:
    """The routes of `ANSWERED_ROUTES` with no answered (200) request recorded yet, in their order."""
    answered = {r.route for r in result.records if r.status == 200}
    return [route for route in ANSWERED_ROUTES if route not in answered]


def _retry_after(reply: httpx.Response) -> str:
    return "503 without Retry-After" if reply.status_code == 503 and not reply.headers.get("retry-after") else ""


def wait_until_up(ready_url: str, server: subprocess.Popen[bytes], log: Path, timeout_s: float = 900) -> None:
    """Until `ready_url` answers 200; the end of the server's log in the error if it exits or takes too long."""
    deadline = time.monotonic() + timeout_s
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{log.stem} did not start: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)


def _warm_up(url: str) -> None:
    """One of each kind of answer first, so first-use allocations are not counted as growth."""
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        for question in QUESTIONS[:2]:
            client.post("/api/ask", json={"question": question}).raise_for_status()
        with client.stream("POST", "/api/ask/stream", json={"question": QUESTIONS[2]}) as reply:
            reply.read()
        client.get("/api/documents").raise_for_status()


def _settled(url: str, timeout_s: float = 60) -> int:
    """Generations still running once every client has gone (after `timeout_s` for the last ones to stop)."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = httpx.get(f"{url}/metrics", timeout=30).text
        values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
        running = int(values.get("rag_generations_running", 0) + values.get("rag_queue_depth", 0))
        if running == 0 or time.monotonic() > deadline:
            return running
        time.sleep(0.5)


def _resources(pid: int) -> tuple[float, int]:
    """The server's resident memory (MB) and open file descriptors, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def _problems(result: SoakResult) -> list[str]:
    problems = []
    server_errors = [r for r in result.records if r.status >= 500 and r.status != 503]
    if server_errors:
        problems.append(f"{len(server_errors)} server errors (5xx)")
    for note, count in Counter(r.note for r in result.records if r.note).items():
        problems.append(f"{count} x {note}")
    missing = unanswered_routes(result)
    if missing:
        problems.append(f"never answered, even {OVERTIME_S} s past the run's minutes: {', '.join(missing)}")
    if result.left_running:
        problems.append(f"{result.left_running} generations still running or waiting after every client left")
    (rss0, fds0), (rss1, fds1) = result.settled, result.end
    if rss1 - rss0 > max(RSS_NOISE * rss0, RSS_NOISE_MB):
        problems.append(f"resident memory grew from {rss0:.0f} to {rss1:.0f} MB")
    if fds1 - fds0 > FD_NOISE:
        problems.append(f"open files grew from {fds0} to {fds1}")
    return problems


def report(result: SoakResult, settings: Settings, cpu: str) -> str:
    by_route: dict[str, list[Record]] = {}
    for record in result.records:
        by_route.setdefault(record.route, []).append(record)
    lines = [
        f"## Soak: {result.clients} clients for {result.minutes:g} minutes",
        "",
        f"`rag soak --minutes {result.minutes:g} --clients {result.clients}`, model {settings.generator_model}, "
        f"on {cpu}. {len(result.records)} requests; server RSS after the warm-up / a third in / at the end "
        f"{result.start[0]:.0f} / {result.settled[0]:.0f} / {result.end[0]:.0f} MB, open files "
        f"{result.start[1]} / {result.settled[1]} / {result.end[1]}; generations left running after the clients left: "
        f"{result.left_running}"
        + (
            f"; it went on {result.overtime_s:.0f} s past its minutes until each route was answered."
            if result.overtime_s > 1
            else "."
        ),
        "",
        "| route | requests | statuses | p50 (s) | p95 (s) | p99 (s) |",
        "|---|---|---|---|---|---|",
    ]
    for route, records in sorted(by_route.items()):
        latency = Series([r.seconds for r in records if r.status == 200])
        statuses = ", ".join(f"{s or 'none'}: {n}" for s, n in sorted(Counter(r.status for r in records).items()))
        cells = [f"{latency.percentile(q):.2f}" if latency.values else "-" for q in (50, 95, 99)]
        lines.append(f"| {route} | {len(records)} | {statuses} | {' | '.join(cells)} |")
    lines += ["", "Result: " + ("passed" if not result.problems else "FAILED: " + "; ".join(result.problems)), ""]
    return "\n".join(lines)
