"""Running the blocking answer stream for async routes: on a thread of its own, cancelled when nobody listens.

Every HTTP path (the JSON/SSE API, the OpenAI-compatible API, MCP over HTTP) reads answers through these,
so a client that goes away stops its generation the same way everywhere.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

from fastapi import Request

from rag.types import AnswerEvent

_END = object()


async def run_in_thread(events: Iterator[AnswerEvent], cancel: threading.Event) -> AsyncIterator[AnswerEvent]:
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


async def cancel_on_disconnect(request: Request, cancel: threading.Event) -> None:
    """For a response sent whole at the end: set `cancel` when the client disconnects before it."""
    while not cancel.is_set():
        if await request.is_disconnected():
            cancel.set()
            return
        await asyncio.sleep(0.25)
