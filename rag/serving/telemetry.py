"""Request ids, one log line per request (JSON or text), and the request metrics.

Every request gets an id (the client's `X-Request-ID` when it is a sane token, else a new one),
returned in the `X-Request-ID` header and put in error bodies and in every log record written while
the request runs. When the request ends, one line says what it was: id, method, route, status,
duration, and for answers the stage timings and the step that refused. Headers, bodies and document
text are never logged, so neither is an API key or a document.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.types import Answer

if TYPE_CHECKING:  # metrics' router imports the error shapes, which need the request id from here
    from rag.serving.metrics import Metrics

REQUEST_ID_HEADER = "x-request-id"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
logger = logging.getLogger("rag.requests")


@dataclass
class RequestRecord:
    """What the log line of one request will say; routes add answer fields as they learn them."""

    request_id: str
    fields: dict[str, Any] = field(default_factory=dict)


_current: ContextVar[RequestRecord | None] = ContextVar("rag_request", default=None)


def current_request_id() -> str | None:
    record = _current.get()
    return record.request_id if record else None


def note_answer(answer: Answer) -> None:
    """Put an answer's timings and outcome on the current request's log line (no text: it may quote documents)."""
    record = _current.get()
    if record is not None:
        timings = answer.timings
        record.fields.update(
            kind=answer.kind,
            abstained_by=answer.abstained_by,
            citations=len(answer.citations),
            retrieve_ms=round(timings.retrieve_ms, 1),
            first_token_ms=round(timings.first_token_ms, 1),
            answer_ms=round(timings.total_ms, 1),
        )


class RequestTelemetry:
    """Outermost middleware: it sees every response, refusals by the other middlewares included."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        record = RequestRecord(given if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex)
        token = _current.set(record)
        started = time.perf_counter()
        status = 500  # if the app fails before it answers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (REQUEST_ID_HEADER.encode(), record.request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = _route_label(scope, status)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(seconds)
            logger.info(
                "request",
                extra={
                    "fields": {
                        "method": scope["method"],
                        "route": route,
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(seconds * 1000, 1),
                        **record.fields,
                    }
                },
            )
            _current.reset(token)


def _route_label(scope: Scope, status: int) -> str:
    """The matched route's template (`/api/documents/{doc_id}`), so labels stay few; UI paths by their prefix."""
    route = scope.get("route")
    if route is not None and getattr(route, "path", None):
        return route.path
    if status == 404:
        return "unmatched"
    path = scope["path"]
    for prefix in ("/api", "/v1", "/mcp", "/gradio_api", "/rag-static", "/assets"):
        if path == prefix or path.startswith(prefix + "/"):
            return prefix + "/*"
    return "/ui"


class _WithRequestId(logging.Filter):
    """Every record written while a request runs carries its id (errors logged deep in the pipeline too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "fields", {}).items() if v is not None)
        request = getattr(record, "request_id", None)
        text = f"{self.formatTime(record)} {record.levelname.lower()} {record.name}: {record.getMessage()}"
        text += f" request_id={request}" * bool(request) + f" {fields}" * bool(fields)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(log_format: Literal["json", "text"]) -> None:
    """Our loggers (`rag.*`) write to stderr in the chosen format; called once per server process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_WithRequestId())
    root = logging.getLogger("rag")
    for old in [h for h in root.handlers if getattr(h, "_rag_telemetry", False)]:
        root.removeHandler(old)
    handler._rag_telemetry = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
