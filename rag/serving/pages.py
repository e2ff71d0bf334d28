"""The pages beside the UI: health, the widget and its loader, Gradio's web component, and document views."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

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
        return {"status": "ok", "documents": len(service.assistant.documents()), "waiting": service.waiting}

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
