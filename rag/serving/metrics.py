"""Prometheus metrics at /metrics: what an operator graphs and alerts on, from every path alike.

Answers are counted in `AnswerService` (where the UI, the JSON API, the OpenAI-compatible API and MCP
all pass), requests in the telemetry middleware. Each server owns its registry, so several apps in one
process (the tests) do not collide. Counter names get `_total` from prometheus-client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from rag.serving.access import api_key_check
from rag.serving.schemas import GUARDED, error_responses
from rag.settings import Settings
from rag.types import Answer, IngestError

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)  # seconds: CPU answers take 5-60 s
RATE_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)  # tokens per second


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "rag_http_requests", "HTTP requests by route, method and status", ["route", "method", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "rag_http_request_seconds", "HTTP request duration by route", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.answer_seconds = Histogram(
            "rag_answer_seconds",
            "Answer latency by stage: retrieval done, first token, whole answer (checks included)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.answers = Counter(
            "rag_answers",
            "Questions by outcome: answered, abstained, cancelled (client left) or failed",
            ["outcome"],
            registry=r,
        )
        self.abstentions = Counter("rag_abstentions", "Refused answers by the step that refused", ["step"], registry=r)
        self.rejected = Counter(
            "rag_rejected_requests",
            "Questions refused because too many were waiting, or one waited too long (HTTP 503)",
            registry=r,
        )
        self.queue_depth = Gauge("rag_queue_depth", "Answers and uploads waiting for the model", registry=r)
        self.generations_running = Gauge(
            "rag_generations_running", "Answers being generated now (0 when idle: none left behind)", registry=r
        )
        self.generated_tokens = Counter("rag_generated_tokens", "Tokens the model generated for answers", registry=r)
        self.generation_seconds = Counter(
            "rag_generation_seconds", "Time from the first token to the last, over all answers", registry=r
        )
        self.tokens_per_second = Histogram(
            "rag_generation_tokens_per_second", "Decoding speed of each answer", buckets=RATE_BUCKETS, registry=r
        )
        self.index_documents = Gauge("rag_index_documents", "Documents in the index", registry=r)
        self.index_chunks = Gauge("rag_index_chunks", "Chunks in the index", registry=r)
        self.ingest_errors = Counter("rag_ingest_errors", "Uploaded files refused, by kind", ["kind"], registry=r)
        self.dependency_errors = Counter(
            "rag_dependency_errors",
            "Questions and uploads failed (503) because a part was down, by part: database or model server",
            ["part"],
            registry=r,
        )
        self.dependency_up = Gauge(
            "rag_dependency_up",
            "1 while a part answers (store, engine), as /readyz or a question last found it",
            ["part"],
            registry=r,
        )
        for outcome in ("answered", "abstained", "cancelled", "failed"):
            self.answers.labels(outcome)  # present at 0 from the start, so rates work on the first answer

    def watch(self, queue_depth: Callable[[], int], documents: Callable[[], int], chunks: Callable[[], int]) -> None:
        """Gauges read when scraped, from the service and the store."""
        self.queue_depth.set_function(queue_depth)
        self.index_documents.set_function(documents)
        self.index_chunks.set_function(chunks)

    def answered(self, answer: Answer, tokens: int, decoding_s: float) -> None:
        """One finished answer; `tokens` generated in `decoding_s` (first piece to last, checks excluded)."""
        timings = answer.timings
        self.answer_seconds.labels("retrieval").observe(timings.retrieve_ms / 1000)
        self.answer_seconds.labels("total").observe(timings.total_ms / 1000)
        if answer.abstained_by is not None:
            self.answers.labels("abstained").inc()
            self.abstentions.labels(answer.abstained_by).inc()
        else:
            self.answers.labels("answered").inc()
        if tokens:
            self.answer_seconds.labels("first_token").observe(timings.first_token_ms / 1000)
            self.generated_tokens.inc(tokens)
            self.generation_seconds.inc(decoding_s)
            if decoding_s > 0:
                self.tokens_per_second.observe(tokens / decoding_s)

    def ingest_failed(self, errors: list[IngestError]) -> None:
        for error in errors:
            self.ingest_errors.labels(error.kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_router(metrics: Metrics, settings: Settings) -> APIRouter:
    """`GET /metrics`, behind the API key when one is set (Prometheus sends it as a bearer token)."""
    router = APIRouter(tags=["operations"], dependencies=[Depends(api_key_check(settings))])

    @router.get(
        "/metrics",
        summary="Prometheus metrics (text exposition format)",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}} | error_responses(*GUARDED),
    )
    async def scrape() -> Any:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router
