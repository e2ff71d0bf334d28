"""The pages beside the UI: health, the widget and its loader, Gradio's web component, and document views."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from rag.dependencies import RETRY_AFTER_S
from rag.serving.access import strict_csp
from rag.serving.api import indexed_document
from rag.serving.render import document_page
from rag.serving.service import AnswerService
from rag.serving.ui import STATIC
from rag.settings import Settings

GRADIO_JS = Path(gr.__file__).parent / "templates" / "frontend" / "gradio.js"


def pages_router(service: AnswerService, settings: Settings) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    strict = strict_csp(settings.allowed_origins)

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers. It reads no dependency, so it is cheap and never fails with one."""
        return {"status": "ok", "waiting": service.waiting}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: 200 while the store and the engine answer, 503 (with each part's state) while one does not."""
        parts = await asyncio.to_thread(service.readiness.check)
        ready = all(p.up for p in parts.values())
        body = {"status": "ready" if ready else "unavailable", "waiting": service.waiting}
        body |= {part: health.to_dict() for part, health in parts.items()}
        headers = {} if ready else {"Retry-After": str(RETRY_AFTER_S)}
        return JSONResponse(body, 200 if ready else 503, headers=headers)

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
        doc = indexed_document(service, doc_id)
        spans = None
        if start is not None and end is not None and 0 <= start <= end <= len(doc.text):
            spans = (start, end, quote_start, quote_end)
        return HTMLResponse(
            document_page(doc.title, doc.source, doc.text, spans), headers={"Content-Security-Policy": strict}
        )

    return router
