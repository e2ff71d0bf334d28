"""The OpenAI-compatible chat API under /v1: any OpenAI client or chat front end asks the assistant.

A thin router over `AnswerService`, as /api is: the last user message is the question, the earlier
user/assistant pairs are the conversation (system messages are not ours to follow: the assistant has
its own prompt). The reply's `content` is what a plain chat client can show: the checked answer with
its [n] markers, then a "Sources:" list. Nothing is lost for a client that knows more: the citation
objects and the abstention travel in an extra top-level field, `rag`, of the response and of the last
stream chunk.

Streaming sends the model's draft as deltas. The citation checks run after it; when they change the
answer (a sentence or citation dropped, or an abstention) the last chunk appends a line saying the
checked answer replaces the draft, then the checked answer, and sets `rag.revised`; otherwise it
appends only the Sources list.
"""

# No `from __future__ import annotations` here: FastAPI reads the request models from the routes'
# annotations, and the models are made per server (its limits), as local names a string would not resolve.
import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse

from rag.dependencies import DependencyUnavailable
from rag.serving.access import api_key_check
from rag.serving.schemas import (
    GUARDED,
    POSTED,
    ChatCompletion,
    ModelList,
    chat_request_model,
    error_responses,
    event_stream,
)
from rag.serving.service import AnswerService
from rag.serving.streaming import cancel_on_disconnect, run_in_thread
from rag.serving.telemetry import current_request_id, note_answer
from rag.settings import Settings
from rag.types import Answer, AnswerEvent, Turn

MODEL_ID = "rag"  # one model: the assistant over this server's collection
REVISED_NOTE = "Checked answer (it replaces the draft above):"
SOURCES_HEADING = "Sources:"
logger = logging.getLogger(__name__)


def openai_router(service: AnswerService, settings: Settings) -> APIRouter:
    router = APIRouter(
        prefix="/v1",
        tags=["openai"],
        dependencies=[Depends(api_key_check(settings))],
        responses=error_responses(*GUARDED, openai=True),
    )
    ChatCompletionRequest = chat_request_model(settings)  # a model class made for this server's limits

    @router.get("/models", summary="The models this server answers as (one: the assistant)", response_model=ModelList)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "rag"}]}

    @router.post(
        "/chat/completions",
        summary="Answer the last user message, with citations (OpenAI chat completions)",
        description="The reply's content is the checked answer with [n] markers and a Sources list; the top-level "
        "`rag` field (of the response, or of the last stream chunk) carries `citations` (n, doc_id, title, source, "
        "start, end, text, score, quote_start, quote_end), `abstained`, `abstained_by`, `kind`, `answer` (without "
        "the Sources list), `timings` and, when streaming, `revised` (the checks changed the draft that was "
        "streamed, and the last chunk carries the checked answer after a note saying so). With `stream` true "
        "the reply is Server-Sent Events of `chat.completion.chunk` objects, then `data: [DONE]`.",
        responses={
            200: {
                "model": ChatCompletion,
                "content": event_stream(None, "chunks")["content"],
                "description": "The completion, or its chunks as Server-Sent Events when `stream` is true.",
            }
        }
        | error_responses(404, *POSTED, 503, openai=True),
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:  # type: ignore[valid-type]
        if body.model != MODEL_ID:
            raise HTTPException(404, f"the model {body.model!r} does not exist; this server answers as {MODEL_ID!r}")
        question, pairs = body.question_and_history()
        history = [Turn(asked, _without_sources(reply)) for asked, reply in pairs]
        cancel = threading.Event()
        events = service.stream(question, history, cancel)  # refusals (bad question, busy) raise here
        completion_id = f"chatcmpl-{current_request_id() or int(time.time() * 1000)}"
        if body.stream:
            return StreamingResponse(
                _chunks(run_in_thread(events, cancel), completion_id),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
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
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL_ID,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply_content(answer)},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "rag": rag_fields(answer),
        }

    return router


def reply_content(answer: Answer) -> str:
    """What a plain chat client shows: the answer, then each cited passage's title and source."""
    cited = {c.n: c for c in answer.citations}
    if not cited:
        return answer.answer
    lines = [f"[{n}] {c.title}{f', {c.place}' if c.place else ''} ({c.source})" for n, c in sorted(cited.items())]
    return f"{answer.answer}\n\n{SOURCES_HEADING}\n" + "\n".join(lines)


def rag_fields(answer: Answer, revised: bool | None = None) -> dict[str, Any]:
    """Everything a citation-aware client needs, as `rag ask --json` has it."""
    fields = {
        "answer": answer.answer,
        "citations": [asdict(c) for c in answer.citations],
        "abstained": answer.abstained,
        "abstained_by": answer.abstained_by,
        "kind": answer.kind,
        "timings": {k: round(v, 1) for k, v in asdict(answer.timings).items()},
    }
    return fields if revised is None else fields | {"revised": revised}


async def _chunks(events: AsyncIterator[AnswerEvent], completion_id: str) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "choices": [choice],
            **extra,
        }
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    draft: list[str] = []
    try:
        async for event in events:
            if isinstance(event, Answer):
                note_answer(event)
                streamed = "".join(draft).strip()
                revised = bool(streamed) and (event.abstained or event.answer.strip() != streamed)
                if revised:
                    tail = f"\n\n{REVISED_NOTE}\n\n{reply_content(event)}"
                elif streamed:
                    tail = reply_content(event)[len(event.answer) :]  # the Sources list, if any
                else:  # refused before generation: nothing was streamed
                    tail = reply_content(event)
                yield chunk({"content": tail}, "stop", rag=rag_fields(event, revised))
            elif isinstance(event, str) and event:
                draft.append(event)
                yield chunk({"content": event})
    except Exception as exc:  # the 200 header is sent: the failure can only be told in the stream
        down = isinstance(exc, DependencyUnavailable)  # the database or model server: a 503 in OpenAI's shape
        if down:
            logger.warning("answer failed: %s", exc)
        else:
            logger.exception("answer failed")
        code = "service_unavailable" if down else None
        error = {"message": str(exc) or type(exc).__name__, "type": "server_error", "param": None, "code": code}
        yield f"data: {json.dumps({'error': error | {'request_id': current_request_id()}})}\n\n"
        return
    yield "data: [DONE]\n\n"


def _without_sources(reply: str) -> str:
    """An earlier reply as the conversation saw it: our Sources list (and a replaced draft) taken off."""
    if REVISED_NOTE in reply:
        reply = reply.split(REVISED_NOTE, 1)[1]
    return reply.split(f"\n\n{SOURCES_HEADING}\n", 1)[0].strip()
