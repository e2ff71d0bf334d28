"""One server on one port: the Gradio chat UI, the JSON API and the widget, all over one `Assistant`.

Routes here only translate HTTP to `AnswerService` calls and back; retrieval, prompting and
citations happen in the Assistant. Browsers are kept in line by settings: `allowed_origins` is both
the CORS allowlist and the CSP frame-ancestors list, so only those pages may embed or call us.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.assistant import Assistant, QuestionError
from rag.models import ModelError
from rag.render import document_page
from rag.service import AnswerService, Busy, Upload
from rag.settings import Settings, get_settings
from rag.store import IndexStoreError
from rag.types import Answer, Document, Turn
from rag.ui import CSS, JS, STATIC, THEME, build_ui

logger = logging.getLogger(__name__)
GRADIO_JS = Path(gr.__file__).parent / "templates" / "frontend" / "gradio.js"
MAX_JSON_BYTES = 1024 * 1024
MAX_UPLOAD_FILES = 100
_END = object()


class TurnIn(BaseModel):
    question: str
    answer: str


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(description="The question; follow-ups may rely on `history`.")
    history: list[TurnIn] = Field(default_factory=list, max_length=50, description="Earlier exchanges, oldest first.")

    def turns(self) -> list[Turn]:
        return [Turn(t.question, t.answer) for t in self.history]


def create_app(assistant: Assistant) -> FastAPI:
    """The whole server as an ASGI app; `assistant` should be indexed and warmed up already."""
    settings = assistant.settings
    service = AnswerService(assistant)
    app = FastAPIOffline(  # FastAPI whose /docs page loads Swagger UI from this server, not a CDN
        title="rag",
        summary="Answers from your documents, with checked citations.",
        version="0.1.0",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.service = service
    # The last added runs first: CORS and framing headers go on every response, refusals included.
    app.add_middleware(BodyLimit, upload_bytes=int(settings.max_upload_mb * 1024 * 1024))
    app.add_middleware(FrameAncestors, origins=settings.allowed_origins)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
        allow_credentials=True,
    )
    _add_error_handlers(app)
    app.include_router(_api(service, settings))
    app.include_router(_pages(service, settings))
    app.mount("/rag-static", StaticFiles(directory=STATIC), name="rag-static")
    return gr.mount_gradio_app(
        app,
        build_ui(service, settings),
        path="",
        ssr_mode=False,
        mcp_server=False,
        footer_links=["api"],
        max_file_size=int(settings.max_upload_mb * 1024 * 1024),
        auth=_ui_auth(settings),
        auth_message="Enter the API key of this assistant as the password (any user name).",
        theme=THEME,
        css=CSS,
        js=JS,
    )


# ---- API ---------------------------------------------------------------------------------------


def _api(service: AnswerService, settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["api"], dependencies=[Depends(_api_key_check(settings))])

    @router.post("/ask", summary="Answer a question; the same JSON object as `rag ask --json`")
    async def ask(body: AskRequest, request: Request) -> dict[str, Any]:
        cancel = threading.Event()
        events = service.stream(body.question, body.turns(), cancel)
        watcher = asyncio.create_task(_cancel_on_disconnect(request, cancel))
        answer = None
        try:
            async for event in _in_thread(events, cancel):
                if isinstance(event, Answer):
                    answer = event
        finally:
            watcher.cancel()
        if answer is None:
            raise HTTPException(503, "the answer was cancelled")
        return answer.to_dict()

    @router.post(
        "/ask/stream",
        summary="Answer a question as Server-Sent Events",
        description='`token` events carry `{"text"}` pieces of the draft as it is generated; one final '
        "`answer` event carries the whole answer object (as `/api/ask`), whose text may differ from the draft "
        'after citation checks. An `error` event carries `{"detail"}` if generation fails.',
        response_class=StreamingResponse,
    )
    async def ask_stream(body: AskRequest) -> StreamingResponse:
        cancel = threading.Event()
        events = service.stream(body.question, body.turns(), cancel)
        return StreamingResponse(
            _sse(_in_thread(events, cancel)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/documents", summary="The indexed documents")
    async def documents() -> list[dict[str, Any]]:
        return service.documents()

    @router.get("/documents/{doc_id}", summary="One indexed document with its text")
    async def document(doc_id: str) -> dict[str, Any]:
        doc = _document(service, doc_id)
        return {"doc_id": doc.doc_id, "title": doc.title, "source": doc.source, "text": doc.text}

    @router.post(
        "/documents",
        summary="Upload files to index (requires the admin token in X-Admin-Token)",
        description="multipart/form-data with one or more `files` fields. Each file gets a status: "
        "added, changed, unchanged or error (with the reason); the other files are indexed regardless.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                            "required": ["files"],
                        }
                    }
                },
            }
        },
    )
    async def upload(request: Request) -> dict[str, Any]:
        _check_admin(settings, request.headers.get("x-admin-token"))
        form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=MAX_UPLOAD_FILES)
        files = [f for f in form.getlist("files") if not isinstance(f, str)]
        if not files:
            raise HTTPException(422, "send the documents as multipart/form-data fields named `files`")
        with tempfile.TemporaryDirectory(prefix="rag-upload-") as tmp:
            uploads = []
            for i, file in enumerate(files):
                path = Path(tmp) / str(i)
                path.write_bytes(await file.read())
                uploads.append(Upload(file.filename or f"file {i + 1}", path))
            results = await asyncio.to_thread(service.add_documents, uploads)
        return {"files": [r.__dict__ for r in results], "documents": len(service.assistant.documents())}

    return router


def _pages(service: AnswerService, settings: Settings) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    strict = _strict_csp(settings.allowed_origins)

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "documents": len(service.assistant.documents())}

    @router.get("/widget.js")
    async def widget_js() -> FileResponse:
        return FileResponse(STATIC / "widget.js", media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    @router.get("/widget")
    async def widget() -> FileResponse:
        return FileResponse(STATIC / "widget.html", headers={"Content-Security-Policy": strict})

    @router.get("/gradio.js")
    async def gradio_web_component() -> FileResponse:
        """Gradio's web component loader, from this server rather than a CDN; it imports ./assets/*."""
        return FileResponse(GRADIO_JS, media_type="text/javascript")

    @router.get("/documents/{doc_id}")
    async def document_view(
        doc_id: str, start: int | None = None, end: int | None = None, quote_start: int = 0, quote_end: int = 0
    ) -> HTMLResponse:
        doc = _document(service, doc_id)
        spans = None
        if start is not None and end is not None and 0 <= start <= end <= len(doc.text):
            spans = (start, end, quote_start, quote_end)
        return HTMLResponse(
            document_page(doc.title, doc.source, doc.text, spans), headers={"Content-Security-Policy": strict}
        )

    return router


def _document(service: AnswerService, doc_id: str) -> Document:
    try:
        return service.assistant.store.document(doc_id)
    except KeyError:
        raise HTTPException(404, f"no document {doc_id} in the index") from None


async def _in_thread(events: Iterator[str | Answer], cancel: threading.Event) -> AsyncIterator[str | Answer]:
    """Run a blocking answer stream on its own thread; if our consumer goes away, cancel it."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def put(item: object) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server shutting down)
            cancel.set()

    def work() -> None:
        try:
            for event in events:
                put(event)
        except BaseException as exc:  # handed to the consumer, which reports it
            put(exc)
        finally:
            put(_END)

    threading.Thread(target=work, name="rag-answer", daemon=True).start()
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancel.set()


async def _sse(events: AsyncIterator[str | Answer]) -> AsyncIterator[str]:
    try:
        async for event in events:
            if isinstance(event, Answer):
                yield _sse_event("answer", event.to_dict())
            elif event:
                yield _sse_event("token", {"text": event})
    except Exception as exc:  # the 200 header is sent: the failure can only be told in the stream
        logger.exception("answer failed")
        yield _sse_event("error", {"detail": str(exc) or type(exc).__name__})


def _sse_event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _cancel_on_disconnect(request: Request, cancel: threading.Event) -> None:
    while not cancel.is_set():
        if await request.is_disconnected():
            cancel.set()
            return
        await asyncio.sleep(0.25)


# ---- access --------------------------------------------------------------------------------------


def _api_key_check(settings: Settings) -> Any:
    key = settings.api_key.get_secret_value() if settings.api_key else None

    def check(request: Request) -> None:
        if key is None:
            return
        given = request.headers.get("x-api-key") or ""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = given or token.strip()
        if not secrets.compare_digest(given.encode(), key.encode()):
            raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})

    return check


def _check_admin(settings: Settings, given: str | None) -> None:
    if settings.admin_token is None:
        raise HTTPException(403, "uploads are disabled: no admin_token is configured on the server")
    if not secrets.compare_digest((given or "").encode(), settings.admin_token.get_secret_value().encode()):
        raise HTTPException(401, "missing or wrong admin token (send it in X-Admin-Token)")


def _ui_auth(settings: Settings) -> Any:
    """With an API key set, the UI (and gradio_client) log in with it as the password."""
    if settings.api_key is None:
        return None
    key = settings.api_key.get_secret_value()
    return lambda _user, password: secrets.compare_digest(password.encode(), key.encode())


def _strict_csp(origins: Sequence[str]) -> str:
    """Our own pages run only our own scripts: injected markup could not execute even if it got in."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        f"base-uri 'none'; form-action 'none'; {_frame_ancestors(origins)}"
    )


def _frame_ancestors(origins: Sequence[str]) -> str:
    return "frame-ancestors " + " ".join(["'self'", *origins])


class FrameAncestors:
    """Every response may be framed only by us and the allowlisted origins (unless it sets its own CSP)."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.policy = _frame_ancestors(origins).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", self.policy))
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_policy)


class BodyLimit:
    """Refuse request bodies over the limit with 413 (by Content-Length, or while streaming in).

    Uploads (ours and Gradio's) may be `upload_bytes`; anything else is JSON and small.
    """

    UPLOAD_PATHS = ("/api/documents", "/gradio_api/upload")

    def __init__(self, app: ASGIApp, upload_bytes: int) -> None:
        self.app = app
        self.upload_bytes = upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.upload_bytes if scope["path"].rstrip("/") in self.UPLOAD_PATHS else MAX_JSON_BYTES
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _too_large(limit)(scope, receive, send)
            return
        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer now, and tell the app the client left: frameworks turn exceptions raised
                    # while reading a body into their own 400s.
                    refused = True
                    if not started:
                        await _too_large(limit)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"the request body is over the limit of {limit / 1024 / 1024:.1f} MB"}, 413)


# ---- errors --------------------------------------------------------------------------------------


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal is a 4xx (or 503 when busy) with a `detail` message a person can act on."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"detail": "the request body is not valid JSON"}, 400)
        parts = []
        for e in errors:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return JSONResponse({"detail": "; ".join(parts)}, 422)

    @app.exception_handler(QuestionError)
    async def bad_question(request: Request, exc: QuestionError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 503, headers={"Retry-After": "30"})

    @app.exception_handler(IndexStoreError)
    async def index_unusable(request: Request, exc: IndexStoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 503)


# ---- starting ------------------------------------------------------------------------------------


def prepared_assistant(settings: Settings) -> Assistant:
    """Index the corpus if there is no index yet and load both models, so the first question is fast."""
    assistant = Assistant(settings)
    if not assistant.store.is_built():
        print(f"rag: no index yet; indexing {settings.default_corpus}/ first", file=sys.stderr)
        report = assistant.index(progress=True)
        for error in report.errors:
            print(f"rag: skipped {error}", file=sys.stderr)
    assistant.warm_up()
    return assistant


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="app.py", description="Serve the chat UI, the API and the widget.")
    parser.add_argument("--host", help="address to listen on (setting `host`, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (setting `port`, default 7860)")
    args = parser.parse_args(argv)
    settings = get_settings()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    try:
        assistant = prepared_assistant(settings)
    except (ModelError, IndexStoreError) as exc:
        print(f"rag: error: {exc}", file=sys.stderr)
        return 2
    print(f"rag: serving on http://{settings.host}:{settings.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(create_app(assistant), host=settings.host, port=settings.port, timeout_graceful_shutdown=3)
    return 0
