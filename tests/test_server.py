"""The HTTP server over a real uvicorn, with the tiny SmolLM2 generator: API shape, errors, access, load."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import HOSTILE_DOCUMENT, PARIS, SEEDS, running_server
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from rag.assistant import Assistant
from rag.serving.app import create_app, prepared_assistant
from rag.settings import Settings

ANSWER_KEYS = {"question", "answer", "abstained", "abstained_by", "kind", "citations", "timings"}
ADMIN = "admin-secret"
ALLOWED = "http://intranet.example:8080"
QUESTION = "What did LeCun propose in Paris?"


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    settings = Settings(
        index_dir=tmp_path_factory.mktemp("index"),
        default_corpus=SEEDS,
        generator_model="smollm2-135m",
        admin_token=ADMIN,
        allowed_origins=[ALLOWED],
        max_upload_mb=1,
        max_waiting=3,
    )
    return prepared_assistant(settings)


@pytest.fixture(scope="module")
def app(assistant: Assistant) -> FastAPI:
    return create_app(assistant)


@pytest.fixture(scope="module")
def url(app: FastAPI) -> Iterator[str]:
    with running_server(app) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=120) as client:
        yield client


class FakeGeneration:
    """Stands in for the model: slow, cancellable, and it records how many generations overlap."""

    def __init__(self, pieces: int, delay_s: float) -> None:
        self.pieces, self.delay_s = pieces, delay_s
        self.running = self.most_at_once = 0
        self.runs: list[tuple[int, bool]] = []  # (pieces yielded, cancelled) per generation
        self.lock = threading.Lock()

    def stream(self, prompt: object, cancel: threading.Event | None = None) -> Iterator[str]:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        sent = 0
        try:
            while sent < self.pieces and not (cancel and cancel.is_set()):
                time.sleep(self.delay_s)
                sent += 1
                yield "LeCun proposed sharing data [1]. " if sent == 1 else "more "
        finally:
            with self.lock:
                self.running -= 1
                self.runs.append((sent, bool(cancel and cancel.is_set())))


@pytest.fixture
def fake_generation(assistant: Assistant, monkeypatch: pytest.MonkeyPatch) -> FakeGeneration:
    fake = FakeGeneration(pieces=300, delay_s=0.01)
    monkeypatch.setattr(assistant.generator, "stream", fake.stream)
    return fake


def _until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    name = None
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            yield name or "message", json.loads(line.removeprefix("data:"))


# ---- the API -------------------------------------------------------------------------------------


def test_health_and_documents(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "waiting": 0}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.json()
    assert ready.json()["store"]["status"] == ready.json()["engine"]["status"] == "up"
    documents = client.get("/api/documents").json()
    assert len(documents) == 4
    assert set(documents[0]) == {"doc_id", "title", "source", "chunks", "chars"}
    paris = next(d for d in documents if d["source"].endswith(PARIS))
    full = client.get(f"/api/documents/{paris['doc_id']}").json()
    assert len(full["text"]) == paris["chars"]
    assert client.get("/api/documents/nope").status_code == 404


def test_ask_returns_the_cli_json_shape(client: httpx.Client) -> None:
    response = client.post("/api/ask", json={"question": QUESTION})
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == ANSWER_KEYS
    assert data["question"] == QUESTION
    follow_up = client.post(
        "/api/ask",
        json={"question": "What did he say about data?", "history": [{"question": QUESTION, "answer": data["answer"]}]},
    )
    assert follow_up.status_code == 200, follow_up.text


def test_stream_sends_the_sources_then_tokens_then_one_answer(client: httpx.Client) -> None:
    with client.stream("POST", "/api/ask/stream", json={"question": QUESTION}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(_events(response))
    names = [name for name, _ in events]
    assert names[0] == "sources" and names.count("sources") == 1
    assert names[-1] == "answer" and names.count("answer") == 1
    assert names[1:-1] and set(names[1:-1]) == {"token"}
    assert all(data["text"] for _, data in events[1:-1])
    assert set(events[-1][1]) == ANSWER_KEYS
    sources = {s["n"]: s for s in events[0][1]["sources"]}
    assert any(s["source"].endswith(PARIS) for s in sources.values())
    for citation in events[-1][1]["citations"]:  # what is cited is what was announced as being read
        announced = sources[citation["n"]]
        assert (announced["doc_id"], announced["start"], announced["end"]) == (
            citation["doc_id"],
            citation["start"],
            citation["end"],
        )


def test_a_question_refused_before_generation_streams_no_sources(client: httpx.Client) -> None:
    with client.stream("POST", "/api/ask/stream", json={"question": "What did Macron announce?"}) as response:
        names = [name for name, _ in _events(response)]
    assert "sources" not in names and names[-1] == "answer"


@pytest.mark.parametrize("path", ["/api/ask", "/api/ask/stream"])
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"question": ""}, 422, "the question is empty"),
        ({"question": " \n\t "}, 422, "the question is empty"),
        ({"question": "why " * 1000}, 422, "the limit is 2000"),
        ({}, 422, "question: Field required"),
        ({"question": 5}, 422, "question: Input should be a valid string"),
        ({"question": QUESTION, "history": [{"q": "x"}]}, 422, "history.0.question: Field required"),
        ({"question": QUESTION, "extra": 1}, 422, "extra: Extra inputs are not permitted"),
    ],
)
def test_bad_questions_get_a_clear_4xx(client: httpx.Client, path: str, body: dict, status: int, message: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["detail"]


def test_malformed_and_oversized_bodies_are_refused(client: httpx.Client) -> None:
    broken = client.post("/api/ask", content=b'{"question": "wh', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400
    assert broken.json() == {
        "detail": "the request body is not valid JSON",
        "request_id": broken.headers["x-request-id"],  # the id in the header names the request in the log
    }
    huge = client.post("/api/ask", content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert huge.status_code == 413
    assert "over the limit" in huge.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
        for _ in range(40):
            yield b" " * 65536

    streamed = client.post("/api/ask", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413


# ---- uploads -------------------------------------------------------------------------------------


def test_upload_requires_the_admin_token(client: httpx.Client) -> None:
    files = {"files": ("note.txt", b"The canteen serves soup on Fridays.")}
    assert client.post("/api/documents", files=files).status_code == 401
    wrong = client.post("/api/documents", files=files, headers={"X-Admin-Token": "guess"})
    assert wrong.status_code == 401
    assert "admin token" in wrong.json()["detail"]


def test_upload_indexes_good_files_and_reports_bad_ones(client: httpx.Client, assistant: Assistant) -> None:
    files = [
        ("files", ("../../etc/lunch.md", b"# Lunch\n\nThe canteen serves lentil soup on Fridays.\n")),
        ("files", ("empty.txt", b"")),
        ("files", ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00")),
    ]
    response = client.post("/api/documents", files=files, headers={"X-Admin-Token": ADMIN})
    assert response.status_code == 200, response.text
    results = {r["name"]: r for r in response.json()["files"]}
    assert results["../../etc/lunch.md"]["status"] == "added"
    assert results["../../etc/lunch.md"]["source"].endswith("uploads/lunch.md")
    assert results["empty.txt"]["status"] == "error" and results["empty.txt"]["detail"]
    assert results["photo.png"]["status"] == "error"
    titles = [d["title"] for d in client.get("/api/documents").json()]
    assert "Lunch" in titles and len(titles) == 5  # the seeds stay: uploads are incremental

    again = client.post("/api/documents", files=files[:1], headers={"X-Admin-Token": ADMIN}).json()
    assert again["files"][0]["status"] == "unchanged"

    # `rag index` with no paths re-syncs the corpus folder and the uploads: the upload stays
    reindexed = assistant.index()
    assert not reindexed.sync.removed and len(reindexed.sync.unchanged) == 5


def test_oversized_upload_is_refused(client: httpx.Client) -> None:
    files = {"files": ("big.txt", b"word " * 300_000)}
    response = client.post("/api/documents", files=files, headers={"X-Admin-Token": ADMIN})
    assert response.status_code == 413
    assert "over the limit of 1.0 MB" in response.json()["detail"]


def test_document_page_shows_hostile_text_as_text(client: httpx.Client) -> None:
    files = {"files": ("notice.txt", HOSTILE_DOCUMENT.encode())}
    [result] = client.post("/api/documents", files=files, headers={"X-Admin-Token": ADMIN}).json()["files"]
    doc = next(d for d in client.get("/api/documents").json() if d["source"] == result["source"])
    page = client.get(f"/documents/{doc['doc_id']}", params={"start": 0, "end": 80, "quote_start": 10, "quote_end": 40})
    assert page.status_code == 200
    assert "<script>" not in page.text and "<img" not in page.text
    assert "&lt;script&gt;window.__xss" in page.text
    assert "<mark id='cited'>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


# ---- browsers: origins and embedding -------------------------------------------------------------


def test_cors_allows_only_the_allowlisted_origins(client: httpx.Client) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    allowed = client.options("/api/ask", headers={"Origin": ALLOWED, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    refused = client.options("/api/ask", headers={"Origin": "http://evil.example", **preflight})
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    simple = client.get("/api/documents", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_pages_may_be_framed_only_by_allowlisted_origins(client: httpx.Client) -> None:
    for path in ("/", "/widget", "/docs"):
        policy = client.get(path).headers["content-security-policy"]
        assert f"frame-ancestors 'self' {ALLOWED}" in policy, path
    widget = client.get("/widget")
    assert "script-src 'self'" in widget.headers["content-security-policy"]
    assert 'src="rag-static/widget-panel.js"' in widget.text


def test_widget_script_and_gradio_web_component_are_served_locally(client: httpx.Client) -> None:
    script = client.get("/widget.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "data-position" in script.text
    loader = client.get("/gradio.js")
    assert loader.status_code == 200
    asset = loader.text.split('"')[1].removeprefix("./")
    assert client.get(f"/{asset}").status_code == 200
    assert client.get("/docs").status_code == 200
    assert "/api/ask/stream" in client.get("/openapi.json").json()["paths"]


def test_api_key_guards_the_api_and_the_ui_but_not_health_or_widget(assistant: Assistant) -> None:
    guarded = Assistant(assistant.settings.model_copy(update={"api_key": SecretStr("k3y"), "admin_token": None}))
    with TestClient(create_app(guarded)) as client:
        assert client.get("/api/documents").status_code == 401
        assert client.get("/api/documents", headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get("/api/documents", headers={"X-API-Key": "k3y"}).status_code == 200
        assert client.get("/api/documents", headers={"Authorization": "Bearer k3y"}).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/widget").status_code == 200
        assert client.get("/config").status_code == 401  # the Gradio UI asks for the key at a login page
        assert client.post("/login", data={"username": "me", "password": "k3y"}).json() == {"success": True}
        assert client.get("/config").status_code == 200
        upload = client.post("/api/documents", files={"files": ("a.txt", b"x")}, headers={"X-API-Key": "k3y"})
        assert upload.status_code == 403
        assert "no admin_token" in upload.json()["detail"]


# ---- load ----------------------------------------------------------------------------------------


def test_concurrent_questions_queue_for_one_generation_at_a_time(url: str, fake_generation: FakeGeneration) -> None:
    fake_generation.pieces = 20

    def ask(_: int) -> int:
        return httpx.post(f"{url}/api/ask", json={"question": QUESTION}, timeout=120).status_code

    with ThreadPoolExecutor(3) as pool:
        statuses = list(pool.map(ask, range(3)))
    assert statuses == [200, 200, 200]
    assert len(fake_generation.runs) == 3
    assert fake_generation.most_at_once == 1


def test_too_many_waiting_get_503(url: str, app: FastAPI, fake_generation: FakeGeneration) -> None:
    service = app.state.service

    def ask() -> int:
        return httpx.post(f"{url}/api/ask", json={"question": QUESTION}, timeout=120).status_code

    with ThreadPoolExecutor(4) as pool:
        running = pool.submit(ask)
        _until(lambda: fake_generation.running == 1)
        waiting = [pool.submit(ask) for _ in range(3)]  # max_waiting
        _until(lambda: service.waiting == 3)
        refused = httpx.post(f"{url}/api/ask", json={"question": QUESTION}, timeout=10)
        fake_generation.pieces = 0  # let the others finish at once
        statuses = [f.result() for f in [running, *waiting]]
    assert refused.status_code == 503
    assert "waiting for the model" in refused.json()["detail"]
    assert refused.headers["retry-after"]
    assert statuses == [200] * 4


def test_a_question_that_waits_too_long_gets_503_not_a_hang(
    url: str, app: FastAPI, fake_generation: FakeGeneration, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a slow CPU the last of a full line waits minutes: past `max_queue_wait_s` it is told to come back."""
    service = app.state.service
    monkeypatch.setattr(service.assistant.settings, "max_queue_wait_s", 1.0)
    fake_generation.delay_s = 0.05  # 300 pieces: 15 s
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(lambda: httpx.post(f"{url}/api/ask", json={"question": QUESTION}, timeout=120))
        _until(lambda: fake_generation.running == 1)
        started = time.monotonic()
        refused = httpx.post(f"{url}/api/ask", json={"question": QUESTION}, timeout=30)
        waited = time.monotonic() - started
        with httpx.stream("POST", f"{url}/api/ask/stream", json={"question": QUESTION}, timeout=30) as response:
            streamed = list(_events(response))
        assert service.waiting == 0 and fake_generation.running == 1  # the first one never stopped
        fake_generation.pieces = 0
        assert running.result().status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"], refused.text
    assert "waited 1 s for the model" in refused.json()["detail"]
    assert 1 <= waited < 10
    assert streamed[-1][0] == "error" and "waited 1 s for the model" in streamed[-1][1]["detail"], streamed
    assert streamed[-1][1]["status"] == 503 and streamed[-1][1]["retry_after"] == int(refused.headers["retry-after"])


def test_a_client_that_disconnects_stops_its_generation(url: str, fake_generation: FakeGeneration) -> None:
    fake_generation.delay_s = 0.05  # 300 pieces: 15 s unless cancelled
    started = time.monotonic()
    with (
        httpx.Client(base_url=url, timeout=30) as client,
        client.stream("POST", "/api/ask/stream", json={"question": QUESTION}) as response,
    ):
        for name, _ in _events(response):
            if name == "token":
                break
    deadline = time.monotonic() + 10
    while not fake_generation.runs and time.monotonic() < deadline:
        time.sleep(0.05)
    [(pieces, cancelled)] = fake_generation.runs
    assert cancelled and pieces < 100
    assert time.monotonic() - started < 10


def test_a_question_abandoned_while_waiting_leaves_the_line(
    url: str, app: FastAPI, fake_generation: FakeGeneration
) -> None:
    fake_generation.delay_s = 0.05  # 300 pieces: 15 s
    first = threading.Thread(target=lambda: httpx.post(f"{url}/api/ask", json={"question": QUESTION}, timeout=60))
    first.start()
    _until(lambda: fake_generation.running == 1)
    with httpx.Client(base_url=url, timeout=1) as client, pytest.raises(httpx.ReadTimeout):
        client.post("/api/ask", json={"question": QUESTION})  # waits behind the first, then gives up
    _until(lambda: app.state.service.waiting == 0)  # it left the line while the first still runs
    assert fake_generation.running == 1
    fake_generation.pieces = 0
    first.join(timeout=30)
    assert len(fake_generation.runs) == 1  # the abandoned one never reached the model


# ---- security basics -----------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(client: httpx.Client) -> None:
    for path in ("/", "/widget", "/api/documents", "/v1/models", "/metrics", "/healthz", "/api/documents/nope"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer", path
        assert "frame-ancestors" in headers["content-security-policy"], path


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/ask", {"question": QUESTION}),
        ("/api/ask/stream", {"question": QUESTION}),
        ("/v1/chat/completions", {"model": "rag", "messages": [{"role": "user", "content": QUESTION}]}),
    ],
)
def test_a_page_off_the_allowlist_cannot_make_the_server_answer(
    client: httpx.Client, url: str, path: str, body: dict, fake_generation: FakeGeneration
) -> None:
    """CORS alone would let the request run (the browser only hides the reply): it is refused before that."""
    fake_generation.pieces = 2
    refused = client.post(path, json=body, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403 and "not allowed" in refused.text
    assert fake_generation.runs == []
    for origin in (ALLOWED, url):  # an allowlisted page, and our own (the UI, the widget's iframe)
        assert client.post(path, json=body, headers={"Origin": origin}).status_code == 200, origin


def test_repeated_wrong_keys_are_rate_limited_per_client(assistant: Assistant) -> None:
    guarded = Assistant(assistant.settings.model_copy(update={"api_key": SecretStr("k3y"), "max_auth_failures": 3}))
    with running_server(create_app(guarded)) as base, httpx.Client(base_url=base, timeout=30) as client:
        statuses = [client.get("/api/documents", headers={"X-API-Key": f"guess{i}"}).status_code for i in range(4)]
        assert statuses == [401, 401, 401, 429]
        blocked = client.get("/api/documents", headers={"X-API-Key": "k3y"})  # even the right key, for a while
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert "too many wrong keys" in blocked.json()["detail"]
        assert client.get("/healthz").status_code == 200
        wrong_admin = [
            client.post("/api/documents", files={"files": ("a.txt", b"x")}, headers={"X-Admin-Token": "no"})
            for _ in range(2)
        ]
        assert all(r.status_code == 429 for r in wrong_admin)


def test_the_rate_limit_lifts_when_its_window_has_passed() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from rag.serving.access import AuthFailureLimit

    def endpoint(request: object) -> PlainTextResponse:
        return PlainTextResponse("no", 401 if request.headers.get("x-api-key") != "k" else 200)  # type: ignore[attr-defined]

    app = AuthFailureLimit(Starlette(routes=[Route("/", endpoint)]), max_failures=2, window_s=0.5)
    with TestClient(app) as client:
        assert [client.get("/", headers={"X-API-Key": "x"}).status_code for _ in range(3)] == [401, 401, 429]
        time.sleep(0.6)
        assert client.get("/", headers={"X-API-Key": "k"}).status_code == 200
