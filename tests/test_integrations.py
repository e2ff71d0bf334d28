"""What teams plug in: the OpenAI-compatible API (official `openai` client), MCP (the `mcp` SDK's own
client, stdio and HTTP), /metrics and the request log, against a real uvicorn server.

The answers themselves are the default model's (marked e2e); the plumbing (errors, queueing, cancel,
limits, metrics, logs) runs on SmolLM2, with the model's stream slowed where a test needs time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from conftest import ROOT, SEEDS, running_server
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from pydantic import SecretStr
from test_server import FakeGeneration, _until

from rag.assistant import Assistant
from rag.evaluation.bench.integrations import scrape_metrics
from rag.evaluation.bench.report import free_port, serving
from rag.serving.app import create_app, prepared_assistant
from rag.serving.openai_api import MODEL_ID, REVISED_NOTE
from rag.serving.telemetry import JsonFormatter, _WithRequestId
from rag.settings import Settings

QUESTION = "What did LeCun propose in Paris?"
UNANSWERABLE = "What did Macron announce?"  # refused before generation: no passage is about it
PARIS = "003_242d03d61eec7c62.txt"


def _openai(url: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=300)


# ---- plumbing, on SmolLM2 ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    settings = Settings(
        index_dir=tmp_path_factory.mktemp("index"),
        default_corpus=SEEDS,
        generator_model="smollm2-135m",
        max_waiting=2,
        log_format="json",
    )
    return prepared_assistant(settings)


@pytest.fixture(scope="module")
def small_url(small: Assistant) -> Iterator[str]:
    with running_server(create_app(small)) as url:
        yield url


@pytest.fixture
def slow_model(small: Assistant, monkeypatch: pytest.MonkeyPatch) -> FakeGeneration:
    fake = FakeGeneration(pieces=300, delay_s=0.05)  # 15 s unless cancelled
    monkeypatch.setattr(small.generator, "stream", fake.stream)
    return fake


@pytest.fixture
def request_log() -> Iterator[list[dict]]:
    """The request log's JSON lines, as the server's handler formats them."""
    lines: list[dict] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(self.format(record)))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_WithRequestId())
    logger = logging.getLogger("rag.requests")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def test_v1_lists_one_model_and_answers_in_the_openai_shape(small_url: str) -> None:
    client = _openai(small_url)
    assert [m.id for m in client.models.list()] == [MODEL_ID]
    completion = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}])
    extra = completion.model_extra["rag"]
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content.startswith(extra["answer"])
    assert set(extra) >= {"citations", "abstained", "abstained_by", "kind", "timings"}
    for citation in extra["citations"]:
        assert f"[{citation['n']}] {citation['title']} ({citation['source']})" in completion.choices[0].message.content


@pytest.mark.parametrize(
    ("request_body", "error", "message"),
    [
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": QUESTION}]}, openai.NotFoundError, "gpt-4o"),
        ({"model": MODEL_ID, "messages": [{"role": "user", "content": "  "}]}, openai.BadRequestError, "empty"),
        (
            {"model": MODEL_ID, "messages": [{"role": "system", "content": QUESTION}]},
            openai.BadRequestError,
            "no user message",
        ),
        ({"model": MODEL_ID, "messages": []}, openai.BadRequestError, "messages"),
        (  # max_question_chars holds on /v1 as on /api
            {"model": MODEL_ID, "messages": [{"role": "user", "content": "why " * 600}]},
            openai.BadRequestError,
            "2000",
        ),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_v1_errors_take_the_openai_shape(
    small_url: str, request_body: dict, error: type[openai.APIStatusError], message: str, stream: bool
) -> None:
    with pytest.raises(error) as caught:
        _openai(small_url).chat.completions.create(**request_body, stream=stream)
    assert message in caught.value.message
    body = caught.value.body
    assert set(body) >= {"message", "type", "param", "code"}  # the client hands over the `error` object
    assert body["request_id"] == caught.value.response.headers["x-request-id"]


def test_v1_needs_the_api_key_when_one_is_set(small: Assistant) -> None:
    keyed = Assistant(small.settings.model_copy(update={"api_key": SecretStr("k3y")}))
    with running_server(create_app(keyed)) as url:
        with pytest.raises(openai.AuthenticationError):
            _openai(url, "wrong").models.list()
        assert [m.id for m in _openai(url, "k3y").models.list()] == [MODEL_ID]
        assert httpx.post(f"{url}/mcp", json={}).status_code == 401
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer k3y"}).status_code == 200


def test_v1_and_mcp_wait_in_the_one_line_and_are_refused_when_it_is_full(
    small_url: str, slow_model: FakeGeneration
) -> None:
    """max_waiting 2: one answer running, two waiting (one from /v1, one from MCP); the next is refused."""
    slow_model.delay_s = 0.02

    def over_v1() -> str:
        reply = _openai(small_url).chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}]
        )
        return reply.choices[0].message.content

    async def over_mcp() -> str:
        async with Client(f"{small_url}/mcp") as client:
            result = await client.call_tool("ask", {"question": QUESTION})
            return result.structured_content["answer"]

    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(lambda: httpx.post(f"{small_url}/api/ask", json={"question": QUESTION}, timeout=120))
        _until(lambda: slow_model.running == 1)
        waiting = [pool.submit(over_v1), pool.submit(lambda: asyncio.run(over_mcp()))]
        _until(lambda: scrape_metrics(small_url)[("rag_queue_depth", ())] == 2)
        before = scrape_metrics(small_url)[("rag_rejected_requests_total", ())]
        with pytest.raises(openai.APIStatusError) as refused:
            over_v1()
        assert refused.value.status_code == 503 and refused.value.response.headers["retry-after"]
        assert "waiting for the model" in refused.value.message
        mcp_refusal = asyncio.run(_mcp_error(small_url))
        assert "waiting for the model" in mcp_refusal
        assert scrape_metrics(small_url)[("rag_rejected_requests_total", ())] == before + 2
        slow_model.pieces = 5
        assert running.result().status_code == 200
        assert all(f.result() for f in waiting)
    assert slow_model.most_at_once == 1  # every path took its turn at the one model


async def _mcp_error(url: str, tool: str = "ask", arguments: dict | None = None) -> str:
    async with Client(f"{url}/mcp") as client:
        result = await client.call_tool(tool, arguments or {"question": QUESTION})
        assert result.is_error
        return result.content[0].text


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("ask", {"question": "why " * 600}, "the limit is 2000"),
        ("ask", {"question": " \n "}, "the question is empty"),
        ("search", {"query": "why " * 600}, "the limit is 2000"),
        ("search", {"query": "LeCun", "k": 51}, "k must be between 1 and 50"),
    ],
)
def test_mcp_tools_keep_the_question_limits(small_url: str, tool: str, arguments: dict, message: str) -> None:
    assert message in asyncio.run(_mcp_error(small_url, tool, arguments))


def test_a_v1_reply_whose_client_left_stops_its_generation(small_url: str, slow_model: FakeGeneration) -> None:
    """Not streamed: the reply is sent whole at the end, so the server must notice the client go while it waits."""
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        _openai(small_url).with_options(timeout=2).chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}]
        )
    _until(lambda: bool(slow_model.runs), timeout_s=10)
    [(pieces, cancelled)] = slow_model.runs
    assert cancelled and pieces < 150  # 300 pieces would take 15 s
    assert time.monotonic() - started < 10


def test_a_v1_stream_closed_early_stops_its_generation(small_url: str, slow_model: FakeGeneration) -> None:
    started = time.monotonic()
    stream = _openai(small_url).chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()
    _until(lambda: bool(slow_model.runs), timeout_s=10)
    [(pieces, cancelled)] = slow_model.runs
    assert cancelled and pieces < 100
    assert time.monotonic() - started < 10


def test_a_cancelled_mcp_call_stops_its_generation(small_url: str, slow_model: FakeGeneration) -> None:
    async def ask_and_give_up() -> None:
        async with Client(f"{small_url}/mcp") as client:
            call = asyncio.create_task(client.call_tool("ask", {"question": QUESTION}))
            while slow_model.running == 0:
                await asyncio.sleep(0.05)
            call.cancel()  # the SDK tells the server the request is cancelled
            with pytest.raises(asyncio.CancelledError):
                await call

    started = time.monotonic()
    asyncio.run(ask_and_give_up())
    _until(lambda: bool(slow_model.runs), timeout_s=10)
    [(pieces, cancelled)] = slow_model.runs
    assert cancelled and pieces < 100
    assert time.monotonic() - started < 10


def test_metrics_count_a_question_its_latency_and_an_abstention_step(small_url: str) -> None:
    before = scrape_metrics(small_url)
    assert httpx.post(f"{small_url}/api/ask", json={"question": QUESTION}, timeout=120).status_code == 200
    refusal = httpx.post(f"{small_url}/api/ask", json={"question": UNANSWERABLE}, timeout=120).json()
    assert refusal["abstained"]
    after = scrape_metrics(small_url)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("rag_http_requests_total", route="/api/ask", method="POST", status="200") == 2
    assert grew("rag_answer_seconds_count", stage="total") == 2
    assert grew("rag_answer_seconds_count", stage="retrieval") == 2
    assert grew("rag_answers_total", outcome="answered") + grew("rag_answers_total", outcome="abstained") == 2
    steps = {dict(k[1])["step"]: v for k, v in after.items() if k[0] == "rag_abstentions_total"}
    assert sum(steps.values()) - sum(v for k, v in before.items() if k[0] == "rag_abstentions_total") >= 1, (
        steps
    )  # the refused question counted under the step that refused it
    assert after[("rag_index_documents", ())] == 4
    assert after[("rag_index_chunks", ())] > 4
    if grew("rag_answers_total", outcome="answered"):
        assert grew("rag_generated_tokens_total") > 0 and grew("rag_answer_seconds_count", stage="first_token") >= 1


def test_metrics_count_refused_uploads_by_kind(small: Assistant) -> None:
    admin = Assistant(small.settings.model_copy(update={"admin_token": SecretStr("adm1n")}))
    with running_server(create_app(admin)) as url:
        before = scrape_metrics(url)
        files = [("files", ("empty.txt", b"", "text/plain")), ("files", ("notes.exe", b"MZ", "application/x-msdos"))]
        reply = httpx.post(f"{url}/api/documents", files=files, headers={"X-Admin-Token": "adm1n"}, timeout=120)
        assert reply.status_code == 200 and [f["status"] for f in reply.json()["files"]] == ["error", "error"]
        after = scrape_metrics(url)
    for kind in ("empty", "unsupported"):
        key = ("rag_ingest_errors_total", (("kind", kind),))
        assert after[key] - before.get(key, 0) == 1, kind
    assert after[("rag_index_documents", ())] == 4  # nothing refused reached the index


def test_each_request_is_one_json_log_line_with_its_id(small_url: str, request_log: list[dict]) -> None:
    response = httpx.post(
        f"{small_url}/api/ask", json={"question": UNANSWERABLE}, headers={"X-Request-ID": "req-42"}, timeout=120
    )
    assert response.headers["x-request-id"] == "req-42"
    _until(lambda: any(entry["request_id"] == "req-42" for entry in request_log))  # written once the reply is sent
    line = next(entry for entry in request_log if entry["request_id"] == "req-42")
    assert line["message"] == "request" and line["route"] == "/api/ask" and line["status"] == 200
    assert line["abstained_by"] == response.json()["abstained_by"] and line["answer_ms"] > 0
    assert UNANSWERABLE not in json.dumps(line)  # no question or document text in the log
    fresh = httpx.get(f"{small_url}/api/documents/nope", headers={"X-Request-ID": "bad id with spaces"})
    assert fresh.status_code == 404 and fresh.headers["x-request-id"] != "bad id with spaces"
    assert fresh.json()["request_id"] == fresh.headers["x-request-id"]
    _until(lambda: any(e["request_id"] == fresh.headers["x-request-id"] and e["status"] == 404 for e in request_log))


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_server_process_writes_one_line_per_request_to_stderr(
    small: Assistant, tmp_path: Path, log_format: str
) -> None:
    """`python -m rag.serving.app` as an operator runs it: the line its stderr gets, in either format."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAG_INDEX_DIR": str(small.settings.index_dir),
        "RAG_GENERATOR_MODEL": "smollm2-135m",
        "RAG_LOG_FORMAT": log_format,
        "RAG_API_KEY": "s3cret-key",
    }
    command = [sys.executable, "-m", "rag.serving.app", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "server.log"
    with serving(command, f"{url}/healthz", log, env):
        headers = {"Authorization": "Bearer s3cret-key", "X-Request-ID": "ops-7"}
        assert httpx.get(f"{url}/api/documents/nope", headers=headers).status_code == 404
        _until(lambda: "ops-7" in log.read_text())
    [line] = [line for line in log.read_text().splitlines() if "ops-7" in line]
    if log_format == "json":
        entry = json.loads(line)
        assert entry["request_id"] == "ops-7" and entry["status"] == 404
        assert entry["route"] == "/api/documents/{doc_id}" and entry["duration_ms"] >= 0
    else:
        assert " rag.requests: request request_id=ops-7 method=GET route=/api/documents/{doc_id} " in line
        assert " status=404 " in line
    assert "s3cret-key" not in log.read_text()


def test_the_log_never_carries_the_api_key(small: Assistant, request_log: list[dict]) -> None:
    keyed = Assistant(small.settings.model_copy(update={"api_key": SecretStr("s3cret-key")}))
    with running_server(create_app(keyed)) as url:
        httpx.get(f"{url}/api/documents", headers={"Authorization": "Bearer s3cret-key"})
        httpx.get(f"{url}/api/documents", headers={"Authorization": "Bearer wrong-key"})
        _until(lambda: len(request_log) >= 2)
    assert "s3cret-key" not in json.dumps(request_log) and "wrong-key" not in json.dumps(request_log)


# ---- the answers, with the default model ---------------------------------------------------------


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    settings = Settings(index_dir=tmp_path_factory.mktemp("index"), default_corpus=SEEDS)
    return prepared_assistant(settings)


@pytest.fixture(scope="module")
def default_url(default: Assistant) -> Iterator[str]:
    with running_server(create_app(default)) as url:
        yield url


def _cites_paris(fields: dict, default: Assistant) -> None:
    assert not fields["abstained"], fields["answer"]
    assert any(c["source"].endswith(PARIS) for c in fields["citations"]), fields["citations"]
    for citation in fields["citations"]:
        document = default.store.document(citation["doc_id"])
        assert document.text[citation["start"] : citation["end"]] == citation["text"]
        assert citation["start"] <= citation["quote_start"] < citation["quote_end"] <= citation["end"]
        assert f"[{citation['n']}]" in fields["answer"]


@pytest.mark.e2e
def test_the_openai_client_gets_the_lecun_answer_with_its_paris_citation(default_url: str, default: Assistant) -> None:
    client = _openai(default_url)
    completion = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}])
    fields = completion.model_extra["rag"]
    _cites_paris(fields, default)
    content = completion.choices[0].message.content
    assert content.startswith(fields["answer"]) and "\n\nSources:\n" in content and PARIS in content

    chunks = list(
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}], stream=True)
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = chunks[-1].model_extra["rag"]
    _cites_paris(last, default)
    assert last["answer"] == fields["answer"]  # greedy: the same answer either way
    assert chunks[-1].choices[0].finish_reason == "stop"
    if last["revised"]:
        assert streamed.split(REVISED_NOTE, 1)[1].strip() == content
    else:
        assert streamed.strip() == content


@pytest.mark.e2e
def test_an_unanswerable_question_comes_back_as_an_abstention_not_an_error(default_url: str) -> None:
    client = _openai(default_url)
    completion = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "What is the capital of Australia?"}]
    )
    fields = completion.model_extra["rag"]
    assert fields["abstained"] and fields["abstained_by"] and fields["citations"] == []
    assert completion.choices[0].message.content.startswith("The documents don't")
    chunks = list(
        client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "What is the capital of Australia?"}], stream=True
        )
    )
    assert chunks[-1].model_extra["rag"]["abstained"]


@pytest.mark.e2e
def test_a_follow_up_over_v1_uses_the_conversation(default_url: str, default: Assistant) -> None:
    client = _openai(default_url)
    first = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Who is Meta's chief AI scientist?"}]
    )
    assert "LeCun" in first.choices[0].message.content
    follow_up = client.chat.completions.create(
        model=MODEL_ID,
        messages=[
            {"role": "user", "content": "Who is Meta's chief AI scientist?"},
            {"role": "assistant", "content": first.choices[0].message.content},  # its Sources list included
            {"role": "user", "content": "What did he propose in Paris?"},
        ],
    )
    _cites_paris(follow_up.model_extra["rag"], default)


async def _mcp_session(client: Client, paris_doc: str) -> dict:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {"ask", "search"}
    answer = (await client.call_tool("ask", {"question": QUESTION})).structured_content
    passages = (await client.call_tool("search", {"query": "LeCun Paris proposal", "k": 3})).structured_content
    resources = (await client.list_resources()).resources
    paris = next(r for r in resources if r.description.endswith(PARIS))
    text = (await client.read_resource(paris.uri)).contents[0].text
    assert text == paris_doc
    return {"answer": answer, "passages": passages["result"], "resources": len(resources)}


@pytest.mark.e2e
def test_the_mcp_client_gets_the_same_answer_over_stdio_and_http(default_url: str, default: Assistant) -> None:
    paris_doc = next(d for d in default.documents() if d.source.endswith(PARIS)).text
    over_http = asyncio.run(_over(Client(f"{default_url}/mcp"), paris_doc))
    env = {**os.environ, "RAG_INDEX_DIR": str(default.settings.index_dir), "HF_HUB_OFFLINE": "1"}
    stdio = StdioServerParameters(command=sys.executable, args=["-m", "rag.cli", "mcp"], env=env, cwd=str(ROOT))
    over_stdio = asyncio.run(_over(Client(stdio, read_timeout_seconds=600), paris_doc))
    for result in (over_http, over_stdio):
        fields = result["answer"]
        _cites_paris(fields, default)
        assert result["resources"] == 4
        for passage in result["passages"]:
            document = default.store.document(passage["doc_id"])
            assert document.text[passage["start"] : passage["end"]] == passage["text"]
        assert any(p["source"].endswith(PARIS) for p in result["passages"])
    assert over_http["answer"]["answer"] == over_stdio["answer"]["answer"]


async def _over(client: Client, paris_doc: str) -> dict:
    async with client:
        return await _mcp_session(client, paris_doc)
