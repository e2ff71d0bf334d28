"""The JSON and Server-Sent Events API under /api: thin routes over `AnswerService`.

Each route translates HTTP to a service call and back; retrieval, prompting and citations happen in
the Assistant. The blocking answer stream runs on a thread of its own, and a client that goes away
cancels its generation.
"""

# No `from __future__ import annotations` here: FastAPI reads the request models from the routes'
# annotations, and the models are made per server (its limits), as local names a string would not resolve.
import asyncio
import json
import logging
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse

from rag.dependencies import RETRY_AFTER_S, DependencyUnavailable
from rag.serving.access import api_key_check, check_admin
from rag.serving.schemas import (
    GUARDED,
    POSTED,
    AnswerOut,
    AskRequestBase,
    DocumentOut,
    DocumentSummary,
    UploadOut,
    ask_request_model,
    error_responses,
    event_stream,
)
from rag.serving.service import BUSY_RETRY_AFTER_S, AnswerService, Busy, Upload
from rag.serving.streaming import cancel_on_disconnect, run_in_thread
from rag.serving.telemetry import current_request_id, note_answer
from rag.settings import Settings
from rag.types import Answer, AnswerEvent, Document, Sources, Turn

logger = logging.getLogger(__name__)
MAX_UPLOAD_FILES = 100
STREAM_EVENTS = ("sources", "token", "answer", "error")


def api_router(service: AnswerService, settings: Settings) -> APIRouter:
    router = APIRouter(
        prefix="/api",
        tags=["api"],
        dependencies=[Depends(api_key_check(settings))],
        responses=error_responses(*GUARDED),
    )
    AskRequest = ask_request_model(settings)  # a model class made for this server's limits

    @router.post(
        "/ask",
        summary="Answer a question; the same JSON object as `rag ask --json`",
        response_model=AnswerOut,
        responses=error_responses(*POSTED, 503),
    )
    async def ask(body: AskRequest, request: Request) -> dict[str, Any]:  # type: ignore[valid-type]
        cancel = threading.Event()
        events = service.stream(body.question, _turns(body), cancel)
        watcher = asyncio.create_task(cancel_on_disconnect(request, cancel))
        answer = None
        try:
            async for event in run_in_thread(events, cancel):
                if isinstance(event, Answer):
                    answer = event
        finally:
            watcher.cancel()
        if answer is None:
            raise HTTPException(503, "the answer was cancelled")
        note_answer(answer)
        return answer.to_dict()

    @router.post(
        "/ask/stream",
        summary="Answer a question as Server-Sent Events",
        description='A `sources` event first carries `{"sources": [{n, doc_id, title, source, start, end, text}]}`, '
        "the passages the model reads (numbered as it may cite them), before it writes anything; `token` "
        'events carry `{"text"}` pieces of the draft as it is generated; one final `answer` event carries the '
        "whole answer object (as `/api/ask`), whose text may differ from the draft after citation checks. A "
        'question refused before generation gets no `sources`. An `error` event carries `{"detail"}` if '
        'generation fails, and `{"detail", "status": 503, "retry_after"}` if the question waited '
        "`max_queue_wait_s` for the model without a turn.",
        response_class=StreamingResponse,
        responses={200: event_stream(STREAM_EVENTS, "The answer as Server-Sent Events.")}
        | error_responses(*POSTED, 503),
    )
    async def ask_stream(body: AskRequest) -> StreamingResponse:  # type: ignore[valid-type]
        cancel = threading.Event()
        events = service.stream(body.question, _turns(body), cancel)
        return StreamingResponse(
            _sse(run_in_thread(events, cancel)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/documents", summary="The indexed documents", response_model=list[DocumentSummary])
    async def documents() -> list[dict[str, Any]]:
        return service.documents()

    @router.get(
        "/documents/{doc_id}",
        summary="One indexed document with its text",
        response_model=DocumentOut,
        responses=error_responses(404),
    )
    async def document(doc_id: str) -> dict[str, Any]:
        doc = indexed_document(service, doc_id)
        return {"doc_id": doc.doc_id, "title": doc.title, "source": doc.source, "text": doc.text}

    @router.post(
        "/documents",
        summary="Upload files to index (requires the admin token in X-Admin-Token)",
        description="multipart/form-data with one or more `files` fields. Each file gets a status: "
        "added, changed, unchanged or error (with the reason); the other files are indexed regardless.",
        response_model=UploadOut,
        responses=error_responses(*POSTED, 503, 507),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "files": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                    "minItems": 1,
                                    "maxItems": MAX_UPLOAD_FILES,
                                }
                            },
                            "required": ["files"],
                        }
                    }
                },
            }
        },
    )
    async def upload(request: Request) -> dict[str, Any]:
        check_admin(settings, request.headers.get("x-admin-token"))
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


def _turns(body: AskRequestBase) -> list[Turn]:
    return [Turn(t.question, t.answer) for t in body.history]


def indexed_document(service: AnswerService, doc_id: str) -> Document:
    try:
        return service.assistant.store.document(doc_id)
    except KeyError:
        raise HTTPException(404, f"no document {doc_id} in the index") from None


async def _sse(events: AsyncIterator[AnswerEvent]) -> AsyncIterator[str]:
    try:
        async for event in events:
            if isinstance(event, Answer):
                note_answer(event)
                yield _sse_event("answer", event.to_dict())
            elif isinstance(event, Sources):
                yield _sse_event("sources", event.to_dict())
            elif event:
                yield _sse_event("token", {"text": event})
    except Busy as exc:  # waited max_queue_wait_s: the stream's 503, with its Retry-After
        yield _sse_event("error", _stream_error(str(exc), 503, BUSY_RETRY_AFTER_S))
    except DependencyUnavailable as exc:  # the database or the model server is down: the same 503
        logger.warning("answer failed: %s", exc)
        yield _sse_event("error", _stream_error(str(exc), 503, RETRY_AFTER_S))
    except Exception as exc:  # the 200 header is sent: the failure can only be told in the stream
        logger.exception("answer failed")
        yield _sse_event("error", _stream_error(str(exc) or type(exc).__name__, 500))


def _stream_error(detail: str, status: int, retry_after: int | None = None) -> dict[str, Any]:
    """The stream's error event: what a JSON error response would have said, with its status."""
    event: dict[str, Any] = {"detail": detail, "status": status, "request_id": current_request_id()}
    return event | ({"retry_after": retry_after} if retry_after is not None else {})


def _sse_event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
