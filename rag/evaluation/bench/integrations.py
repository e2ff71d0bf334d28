"""Every way in, side by side: the LeCun question through the JSON API and its stream, the OpenAI-compatible
API whole and streamed (the official `openai` client), and MCP over streamable HTTP and over stdio (the `mcp`
SDK's client), against one real `python -m rag.serving.app` and one `rag mcp` process.

All of them are thin callers of one `AnswerService`, so each should cost what /api/ask costs and return the
same checked answer: the table shows the ratio to /api/ask (medians of interleaved rounds), whether each got
that answer and cited the Paris article, and what the server's /metrics counted while it ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from prometheus_client.parser import text_string_to_metric_families

from rag.evaluation.bench.generation import LECUN
from rag.evaluation.bench.report import Report, Series, free_port, ratio, serving
from rag.settings import Settings

PARIS = "003_242d03d61eec7c62.txt"  # the seeds article on LeCun's proposal in Paris
TIMEOUT_S = 600


@dataclass
class _Reply:
    """What one path returned: the checked answer, the cited sources, how long the service took to answer
    (its own `timings.total_ms`), and when a streaming client got the first token."""

    answer: str
    sources: list[str]
    answer_s: float
    first_s: float | None = None

    @classmethod
    def of(cls, fields: dict[str, Any], first_s: float | None = None) -> _Reply:
        sources = [c["source"] for c in fields["citations"]]
        return cls(fields["answer"], sources, fields["timings"]["total_ms"] / 1000, first_s)


def integrations(report: Report, settings: Settings, reps: int) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAG_INDEX_DIR": str(settings.index_dir),
        "RAG_DEFAULT_CORPUS": str(settings.default_corpus),
        "RAG_GENERATOR_MODEL": settings.generator_model,
        "RAG_GENERATOR_ENGINE": settings.generator_engine,
        "RAG_MAX_NEW_TOKENS": str(settings.max_new_tokens),
        "RAG_THREADS": str(settings.threads),
        "RAG_CACHE_DIR": str(settings.cache_dir),
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        app = [sys.executable, "-m", "rag.serving.app", "--host", "127.0.0.1", "--port", str(port)]
        with serving(app, f"{url}/healthz", Path(tmp) / "server.log", env):
            names, whole, first, added, replies, before, after = asyncio.run(_rounds(url, env, reps))
    counted = _counted(before, after)
    asked_the_server = reps * (len(names) - 1)  # the stdio server is a process of its own
    baseline = replies["/api/ask"]
    report.add(
        "## Every way in",
        "",
        f"`{LECUN}` through each interface of one `python -m rag.serving.app` (engine `{settings.generator_engine}`, "
        f"model `{settings.generator_model}`), and through `rag mcp` over stdio (its own process on the same "
        f"index), {reps} interleaved rounds after a warm-up round. Client-side times: from the call to the "
        "complete reply; first token = the first piece of the answer's text a streaming client receives; added to "
        "the answer = the whole reply's time less the answer's own `timings.total_ms` (what the path costs: "
        "HTTP, JSON, SSE, the MCP session), which takes out how long each answer happened to take.",
        "",
    )
    report.table(
        [
            "path",
            "first token (s)",
            "whole reply (s)",
            "vs /api/ask",
            "added to the answer (ms)",
            "same answer as /api/ask",
            "cites the Paris article",
        ],
        [
            [
                name,
                first[name].cell() if first[name].values else "",
                whole[name].cell(),
                ratio(whole[name].median, whole["/api/ask"].median),
                added[name].cell(0),
                "yes" if replies[name].answer == baseline.answer else "no",
                "yes" if any(s.endswith(PARIS) for s in replies[name].sources) else "no",
            ]
            for name in names
        ],
    )
    report.add(
        f"The server's /metrics over the counted rounds: {counted['answers']:.0f} answers for {asked_the_server} "
        f"questions asked of it (answered {counted['answered']:.0f}, abstained {counted['abstained']:.0f}); "
        f'`rag_answer_seconds{{stage="total"}}` mean {counted["mean_total_s"]:.2f} s; '
        f"{counted['tokens']:.0f} tokens generated; requests counted by route: "
        + ", ".join(f"{route} {n:.0f}" for route, n in sorted(counted["routes"].items()))
        + ".",
        "",
        f"- `/api/ask` answered: {baseline.answer!r}",
        "",
    )


async def _rounds(url: str, env: dict[str, str], reps: int) -> tuple[Any, ...]:
    """The interleaved rounds, in one event loop: the stdio session lives across them (started once, as an
    agent keeps it), the blocking clients run in a thread."""
    stdio = StdioServerParameters(command=sys.executable, args=["-m", "rag.cli", "mcp"], env=env)
    with (  # one client of each kind for the whole run, as an application keeps them: no set-up in the times
        openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=TIMEOUT_S) as chat,
        httpx.Client(timeout=TIMEOUT_S) as http,
    ):
        model = (await asyncio.to_thread(chat.models.list)).data[0].id  # as a chat front end finds it
        async with Client(stdio, read_timeout_seconds=TIMEOUT_S) as stdio_client:
            paths: dict[str, Callable[[], Awaitable[_Reply]]] = {
                "/api/ask": lambda: asyncio.to_thread(_api, http, url),
                "/api/ask/stream": lambda: asyncio.to_thread(_api_stream, http, url),
                "/v1 chat completions": lambda: asyncio.to_thread(_v1, chat, model),
                "/v1 chat completions, stream": lambda: asyncio.to_thread(_v1_stream, chat, model),
                "MCP ask, streamable HTTP": lambda: _mcp_http(url),
                "MCP ask, stdio": lambda: _mcp_ask(stdio_client),
            }
            whole = {name: Series() for name in paths}
            first = {name: Series() for name in paths}
            added = {name: Series() for name in paths}  # client time over the service's own answer time
            replies: dict[str, _Reply] = {}
            before: dict[tuple[str, tuple], float] = {}
            for rep in range(reps + 1):  # the first round warms both processes up and is not counted
                if rep == 1:
                    before = await asyncio.to_thread(scrape_metrics, url)
                for name, ask in paths.items():
                    started = time.perf_counter()
                    reply = await ask()
                    if rep:
                        whole[name].values.append(time.perf_counter() - started)
                        added[name].values.append((whole[name].values[-1] - reply.answer_s) * 1000)
                        if reply.first_s is not None:
                            first[name].values.append(reply.first_s)
                    replies[name] = reply
            after = await asyncio.to_thread(scrape_metrics, url)
    return list(paths), whole, first, added, replies, before, after


def _api(http: httpx.Client, url: str) -> _Reply:
    body = http.post(f"{url}/api/ask", json={"question": LECUN}).raise_for_status().json()
    return _Reply.of(body)


def _api_stream(http: httpx.Client, url: str) -> _Reply:
    started = time.perf_counter()
    first_s = None
    event = ""
    with http.stream("POST", f"{url}/api/ask/stream", json={"question": LECUN}) as response:
        for line in response.raise_for_status().iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "token":
                first_s = first_s or time.perf_counter() - started
            elif line.startswith("data: ") and event == "answer":
                body = json.loads(line.removeprefix("data: "))
                return _Reply.of(body, first_s)
    raise RuntimeError("/api/ask/stream ended without an answer")


def _v1(chat: openai.OpenAI, model: str) -> _Reply:
    completion = chat.chat.completions.create(model=model, messages=[{"role": "user", "content": LECUN}])
    fields = completion.model_extra["rag"]
    return _Reply.of(fields)


def _v1_stream(chat: openai.OpenAI, model: str) -> _Reply:
    started = time.perf_counter()
    first_s = None
    messages = [{"role": "user", "content": LECUN}]
    stream = chat.chat.completions.create(model=model, messages=messages, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first_s = first_s or time.perf_counter() - started
        if chunk.model_extra and "rag" in chunk.model_extra:
            fields = chunk.model_extra["rag"]
            return _Reply.of(fields, first_s)
    raise RuntimeError("the /v1 stream ended without its rag field")


async def _mcp_http(url: str) -> _Reply:
    """A session per question, as an agent that connects for one call would; its set-up is in the time."""
    async with Client(f"{url}/mcp") as client:
        return await _mcp_ask(client)


async def _mcp_ask(client: Client) -> _Reply:
    result = await client.call_tool("ask", {"question": LECUN})
    if result.is_error:
        raise RuntimeError(f"MCP ask failed: {result.content}")
    fields = result.structured_content
    return _Reply.of(fields)


def scrape_metrics(url: str) -> dict[tuple[str, tuple], float]:
    """A server's /metrics as {(sample name, sorted labels): value}."""
    text = httpx.get(f"{url}/metrics", timeout=30).raise_for_status().text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _counted(before: dict[tuple[str, tuple], float], after: dict[tuple[str, tuple], float]) -> dict[str, Any]:
    """What the server counted between two scrapes."""

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    answered, abstained = grew("rag_answers_total", outcome="answered"), grew("rag_answers_total", outcome="abstained")
    count = grew("rag_answer_seconds_count", stage="total")
    routes: dict[str, float] = {}
    for (name, labels), value in after.items():
        route = dict(labels).get("route", "")
        if name == "rag_http_requests_total" and route != "/metrics":
            routes[route] = routes.get(route, 0.0) + value - before.get((name, labels), 0.0)
    return {
        "answers": answered + abstained,
        "answered": answered,
        "abstained": abstained,
        "mean_total_s": grew("rag_answer_seconds_sum", stage="total") / count if count else float("nan"),
        "tokens": grew("rag_generated_tokens_total"),
        "routes": {route: n for route, n in routes.items() if n},
    }
