"""One server on one port: the Gradio chat UI, the JSON API, the OpenAI-compatible API, MCP, the widget
and /metrics, all over one `Assistant`.

The routers (`api`, `openai_api`, `pages`, `metrics`), the MCP server and the UI are thin callers of one
`AnswerService`; `access` holds the API key, admin token and browser limits every response goes through,
`telemetry` the request ids, request metrics and log lines. `python app.py` calls `main`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from rag.assistant import Assistant, QuestionError
from rag.dependencies import RETRY_AFTER_S, DependencyUnavailable
from rag.generation.llamacpp import PromptTooLongError
from rag.models import ModelError
from rag.serving.access import AuthFailureLimit, BodyLimit, OriginCheck, RequireApiKey, SecurityHeaders, ui_auth
from rag.serving.api import api_router
from rag.serving.errors import error_response, is_openai_path
from rag.serving.mcp_server import build_mcp_server
from rag.serving.metrics import metrics_router
from rag.serving.openai_api import openai_router
from rag.serving.pages import pages_router
from rag.serving.schemas import NOT_BLANK, describe_api
from rag.serving.service import BUSY_RETRY_AFTER_S, AnswerService, Busy
from rag.serving.telemetry import REQUEST_ID_HEADER, RequestTelemetry, configure_logging
from rag.serving.ui import CSS, JS, STATIC, THEME, build_ui
from rag.settings import Settings, get_settings, settings_error
from rag.store.base import IndexLockedError, IndexStoreError, IndexWriteError

logger = logging.getLogger(__name__)
M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)


def create_app(assistant: Assistant) -> FastAPI:
    """The whole server as an ASGI app; `assistant` should be indexed and warmed up already."""
    settings = assistant.settings
    configure_logging(settings.log_format)
    service = AnswerService(assistant)
    mcp = build_mcp_server(service)
    mcp_http = mcp.streamable_http_app(streamable_http_path="/mcp", transport_security=_mcp_security(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with mcp.session_manager.run():  # MCP's HTTP sessions live as long as the server
            yield

    app = FastAPIOffline(  # FastAPI whose /docs page loads Swagger UI from this server, not a CDN
        title="rag",
        summary="Answers from your documents, with checked citations.",
        version="0.1.0",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    # The last added runs first: request ids, metrics and the log line see every response, refusals
    # included; CORS and framing headers go on every response.
    app.add_middleware(BodyLimit, upload_bytes=int(settings.max_upload_mb * 1024 * 1024))
    app.add_middleware(OriginCheck, origins=settings.allowed_origins)
    app.add_middleware(SecurityHeaders, origins=settings.allowed_origins)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
        allow_credentials=True,
        expose_headers=[REQUEST_ID_HEADER],
    )
    app.add_middleware(AuthFailureLimit, max_failures=settings.max_auth_failures)
    app.add_middleware(RequestTelemetry, metrics=service.metrics)
    _add_error_handlers(app, service)
    describe_api(app, settings)
    app.include_router(api_router(service, settings))
    app.include_router(openai_router(service, settings))
    app.include_router(metrics_router(service.metrics, settings))
    for route in mcp_http.routes:  # /mcp itself (a mount would redirect /mcp to /mcp/)
        app.router.routes.append(Route(route.path, RequireApiKey(route.app, settings), methods=None))
    app.include_router(pages_router(service, settings))
    _refuse_other_methods(app)
    app.mount("/rag-static", StaticFiles(directory=STATIC), name="rag-static")
    return gr.mount_gradio_app(
        app,
        build_ui(service, settings),
        path="",
        ssr_mode=False,
        mcp_server=False,
        footer_links=["api"],
        max_file_size=int(settings.max_upload_mb * 1024 * 1024),
        auth=ui_auth(settings),
        auth_message="Enter the API key of this assistant as the password (any user name).",
        theme=THEME,
        css=CSS,
        js=JS,
    )


def _refuse_other_methods(app: FastAPI) -> None:
    """A method a documented path does not take gets 405 with Allow, not the UI's 404: the UI is mounted at
    the root and would otherwise answer every request no route takes."""
    for path, operations in app.openapi()["paths"].items():
        allowed = ", ".join(sorted(method.upper() for method in operations))
        app.router.routes.append(Route(path, MethodNotAllowed(allowed)))  # after the path's own routes


class MethodNotAllowed:
    """An ASGI endpoint (so that its route takes every method) answering 405."""

    def __init__(self, allowed: str) -> None:
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"{scope['method']} is not allowed here; use {self.allowed}"
        await error_response(scope["path"], 405, message, {"Allow": self.allowed})(scope, receive, send)


# ---- errors --------------------------------------------------------------------------------------


def _add_error_handlers(app: FastAPI, service: AnswerService) -> None:
    """Every refusal is a 4xx (or 503 when busy or when the database or model server is down) with a message a
    person can act on and the request id (`rag.serving.errors`); request validation is a 400 under /v1, as
    OpenAI answers it, a 422 elsewhere."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(request.url.path, 400, "the request body is not valid JSON")
        parts = []
        for e in errors:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            message = _plain_message(e)
            parts.append(f"{where}: {message}" if where else message)
        return error_response(request.url.path, 400 if is_openai_path(request.url.path) else 422, "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request.url.path, exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(QuestionError)
    async def bad_question(request: Request, exc: QuestionError) -> JSONResponse:
        return error_response(request.url.path, 400 if is_openai_path(request.url.path) else 422, str(exc))

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy) -> JSONResponse:
        return error_response(request.url.path, 503, str(exc), {"Retry-After": str(BUSY_RETRY_AFTER_S)})

    @app.exception_handler(PromptTooLongError)
    async def prompt_too_long(request: Request, exc: PromptTooLongError) -> JSONResponse:
        return error_response(request.url.path, 400 if is_openai_path(request.url.path) else 422, str(exc))

    @app.exception_handler(DependencyUnavailable)
    async def dependency_down(request: Request, exc: DependencyUnavailable) -> JSONResponse:
        service.readiness.failed(exc)
        return error_response(request.url.path, 503, str(exc), {"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(IndexStoreError)
    async def index_unusable(request: Request, exc: IndexStoreError) -> JSONResponse:
        return error_response(request.url.path, 507 if isinstance(exc, IndexWriteError) else 503, str(exc))

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("request failed")
        message = f"internal error ({type(exc).__name__}); the server log has the details"
        return error_response(request.url.path, 500, message)


def _plain_message(error: Mapping[str, Any]) -> str:
    """Pydantic's message, in the assistant's own words where the schema states the assistant's rules."""
    context = error.get("ctx") or {}
    field = str((error.get("loc") or ("value",))[-1])
    if error.get("type") == "string_pattern_mismatch" and context.get("pattern") == NOT_BLANK:
        return f"the {field} is empty"
    if error.get("type") == "string_too_long":
        return f"the {field} is too long; the limit is {context.get('max_length')} characters"
    return str(error.get("msg"))


def _mcp_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection as the SDK sets it for loopback, plus the pages allowed to call us."""
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    if settings.host in ("0.0.0.0", "::"):  # reached by any of the machine's names: the Host header says nothing
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*", *settings.allowed_origins]
    return TransportSecuritySettings(allowed_hosts=[*hosts, f"{settings.host}:*"], allowed_origins=origins)


# ---- starting ------------------------------------------------------------------------------------


def prepared_assistant(settings: Settings) -> Assistant:
    """Index the corpus if there is no index yet and load both models, so the first question is fast."""
    assistant = Assistant(settings)
    if not assistant.store.is_built():
        print(f"rag: no index yet; indexing {settings.default_corpus}/ first", file=sys.stderr)
        try:
            report = assistant.index(progress=True)
        except IndexLockedError:
            _wait_for_index(assistant)  # another replica is building the shared index: it is not built twice
        else:
            for error in report.errors:
                print(f"rag: skipped {error}", file=sys.stderr)
    if settings.passage_states:
        assistant.store_passage_states(progress=True)  # a small collection's, once; a large one's as it is asked
        assistant.start_state_worker()
    assistant.warm_up()
    return assistant


def _wait_for_index(assistant: Assistant, timeout_s: float = 3600.0) -> None:
    print("rag: another process is building the index; waiting for it", file=sys.stderr)
    deadline = time.monotonic() + timeout_s
    while not assistant.store.is_built():
        if time.monotonic() > deadline:
            raise IndexStoreError(f"the index was not built by the other process within {timeout_s:.0f} s")
        time.sleep(1.0)


def _fewer_malloc_arenas() -> None:
    """glibc gives each thread that allocates its own heap arena (up to 8 per core), and every answer runs on a
    short-lived thread of its own: resident memory then creeps up by half-empty arenas (`rag soak` saw
    +140 MB a minute with SmolLM2), not by data. Two arenas serve two cores."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="app.py", description="Serve the chat UI, the API and the widget.")
    parser.add_argument("--host", help="address to listen on (setting `host`, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (setting `port`, default 7860)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="app processes on the one port, each a stateless replica (needs store = postgres and "
        "generator_engine = openai: in-process engines would load the model once per worker)",
    )
    args = parser.parse_args(argv)
    _fewer_malloc_arenas()
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"rag: error: {settings_error(exc)}", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    if args.workers > 1:
        if settings.store != "postgres" or settings.generator_engine != "openai":
            print('rag: error: --workers needs store = "postgres" and generator_engine = "openai"', file=sys.stderr)
            return 2
        print(f"rag: {args.workers} workers serving on http://{settings.host}:{settings.port}/", file=sys.stderr)
        uvicorn.run(
            "rag.serving.app:replica_app",
            factory=True,
            workers=args.workers,
            host=settings.host,
            port=settings.port,
            timeout_graceful_shutdown=3,
            access_log=False,
        )
        return 0
    try:
        assistant = prepared_assistant(settings)
    except (ModelError, IndexStoreError) as exc:
        print(f"rag: error: {exc}", file=sys.stderr)
        return 2
    print(f"rag: serving on http://{settings.host}:{settings.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(
        create_app(assistant),
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=3,
        access_log=False,  # each request is logged once, by rag.serving.telemetry, with its id
    )
    return 0


def replica_app() -> FastAPI:
    """One worker of `app.py --workers N`, with the settings of the environment and rag.toml."""
    _fewer_malloc_arenas()
    return create_app(prepared_assistant(get_settings()))


if __name__ == "__main__":  # python -m rag.serving.app, as `rag soak` starts it
    sys.exit(main(sys.argv[1:]))
