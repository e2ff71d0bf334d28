"""The Gradio chat UI: a thin caller of `AnswerService`, rendering with `rag.serving.render`.

The conversation's answers live in per-session state: they are both the history for follow-ups
and the source cards that citation markers link to (static/ui.js links them in the browser).
"""

from __future__ import annotations

import html
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from rag.assistant import QuestionError
from rag.ingestion.loaders import SUPPORTED_EXTENSIONS
from rag.serving.render import answer_html, markdown, sources_html
from rag.serving.service import AnswerService, Busy, Upload, UploadResult
from rag.settings import Settings
from rag.store.base import IndexStoreError
from rag.types import Answer, Sources, Turn

STATIC = Path(__file__).parent / "static"
EXAMPLES = [
    "What did LeCun propose in Paris?",
    "Why is Meta open-sourcing its AI models?",
    "What does Zuckerberg say open source is necessary for?",
]
THEME = gr.themes.Soft(
    primary_hue="indigo",
    neutral_hue="slate",
    font=[gr.themes.LocalFont("IBM Plex Sans"), "ui-sans-serif", "system-ui", "sans-serif"],
)
CSS = (STATIC / "ui.css").read_text(encoding="utf-8")
JS = (STATIC / "ui.js").read_text(encoding="utf-8")  # Gradio's on-load hook: works in the web component too
_PROGRESS = gr.Progress()  # Gradio finds the progress tracker through this default
_THINKING = '<span class="rag-thinking">Searching the documents…</span>'


def build_ui(service: AnswerService, settings: Settings) -> gr.Blocks:
    with gr.Blocks(title="Ask the documents", analytics_enabled=False, fill_width=True) as ui:
        answers = gr.State([])  # per assistant message: its Answer (None, then its Sources, while in progress)
        gr.HTML(
            '<div class="rag-header"><h1>Ask the documents</h1><p>Answers come only from the indexed documents; '
            "every claim links to the passage behind it.</p></div>"
        )
        with gr.Tab("Ask"), gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    elem_id="rag-chat",
                    height=560,
                    show_label=False,
                    examples=[{"text": q} for q in EXAMPLES],
                    placeholder="<h3>Ask a question about your documents</h3>Or start with one of these:",
                    buttons=[],
                    feedback_options=None,
                    sanitize_html=True,
                )
                with gr.Row():
                    question = gr.Textbox(
                        elem_id="rag-question",
                        placeholder="Ask about your documents…",
                        show_label=False,
                        scale=8,
                        autofocus=True,
                        max_length=settings.max_question_chars,
                    )
                    ask = gr.Button("Ask", variant="primary", size="md", scale=1, min_width=90)
                    clear = gr.Button("New chat", size="md", scale=1, min_width=120, elem_id="rag-clear")
            with gr.Column(scale=2, elem_id="rag-sources-panel"):
                sources = gr.HTML(sources_html([]), elem_id="rag-sources")
        with gr.Tab("Documents") as documents_tab:
            table = gr.Dataframe(
                value=lambda: _document_rows(service),
                headers=["Title", "Source", "Chunks", "Characters"],
                datatype=["str", "str", "number", "number"],
                interactive=False,
                wrap=True,
                column_widths=["42%", "40%", "8%", "10%"],
                show_search="search",
                elem_id="rag-documents",
            )
            if settings.admin_token is None:
                gr.Markdown("Uploads are disabled on this server: it has no `admin_token` set.")
            else:
                with gr.Group():
                    token = gr.Textbox(label="Admin token", type="password", elem_id="rag-admin-token")
                    files = gr.File(
                        label=f"Add documents ({' '.join(SUPPORTED_EXTENSIONS)})",
                        file_count="multiple",
                        elem_id="rag-upload",
                    )
                    add = gr.Button("Add to the index", variant="primary")
                report = gr.HTML(elem_id="rag-upload-report")

                def upload(token_value: str, paths: list[str] | None, progress: gr.Progress = _PROGRESS):
                    yield from _upload(service, settings, token_value, paths or [], progress)

                add.click(upload, [token, files], [report, table], api_visibility="private").success(
                    lambda: None, None, files, api_visibility="private"
                )
        documents_tab.select(lambda: _document_rows(service), None, table, api_visibility="private")

        def respond(
            text: str, chat: list[dict[str, Any]], state: list[Answer | Sources | None]
        ) -> Iterator[tuple[Any, ...]]:
            yield from _respond(service, text, chat, state)

        flow = {
            "fn": respond,
            "inputs": [question, chatbot, answers],
            "outputs": [question, chatbot, answers, sources],
            "api_visibility": "private",
        }
        submitted = question.submit(**flow)
        clicked = ask.click(**flow)
        picked = chatbot.example_select(_example, None, question, api_visibility="private").then(**flow)
        for trigger in (clear.click, chatbot.clear):
            trigger(
                lambda: ("", [], [], sources_html([])),
                None,
                [question, chatbot, answers, sources],
                cancels=[submitted, clicked, picked],
                queue=False,
                api_visibility="private",
            )

        def ask_api(question: str) -> dict[str, Any]:
            """Answer a question from the documents: the same JSON object as POST /api/ask."""
            try:
                return service.ask(question).to_dict()
            except (QuestionError, Busy) as exc:
                raise gr.Error(str(exc)) from exc

        gr.api(ask_api, api_name="ask")
    return ui


def _example(event: gr.SelectData) -> str:
    return event.value["text"]


def _respond(
    service: AnswerService, text: str, chat: list[dict[str, Any]], state: list[Answer | Sources | None]
) -> Iterator[tuple[Any, ...]]:
    """Show the passages being read, stream the draft into the last message, then the checked, linked answer."""
    if not (text or "").strip():
        return
    history = [Turn(a.question, a.answer) for a in state if isinstance(a, Answer)]
    cancel = threading.Event()
    try:
        events = service.stream(text, history, cancel)
    except (QuestionError, Busy) as exc:
        raise gr.Error(str(exc)) from exc
    turn = len(state)
    chat = [*chat, {"role": "user", "content": html.escape(text)}]
    state = [*state, None]
    yield "", [*chat, {"role": "assistant", "content": _THINKING}], state, sources_html(state)
    draft = ""
    try:
        for event in events:
            if isinstance(event, Answer):
                state = [*state[:-1], event]
                reply = answer_html(event, turn)
                yield "", [*chat, {"role": "assistant", "content": reply}], state, sources_html(state)
            elif isinstance(event, Sources):
                state = [*state[:-1], event]
                reply = f'<span class="rag-thinking">{html.escape(event.describe())}…</span>'
                yield "", [*chat, {"role": "assistant", "content": reply}], state, sources_html(state)
            else:
                draft += event
                reply = f'<div class="rag-draft">{markdown(draft)}</div>'
                yield "", [*chat, {"role": "assistant", "content": reply}], state, sources_html(state)
    finally:
        cancel.set()  # the user cleared the chat or left: stop generating


def _document_rows(service: AnswerService) -> list[list[Any]]:
    return [[d["title"], d["source"], d["chunks"], d["chars"]] for d in service.documents()]


def _upload(
    service: AnswerService, settings: Settings, token: str, paths: list[str], progress: gr.Progress
) -> Iterator[tuple[str, Any]]:
    """Index the files one by one, so each shows its result as soon as it is known."""
    expected = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not expected or not secrets.compare_digest((token or "").encode(), expected.encode()):
        raise gr.Error("Wrong or missing admin token.")
    if not paths:
        raise gr.Error("Choose one or more files first.")
    results: list[UploadResult] = []
    for i, path in enumerate(paths):
        name = Path(path).name
        progress((i, len(paths)), desc=f"Indexing {name}")
        try:
            results += service.add_documents([Upload(name, Path(path))])
        except (IndexStoreError, Busy) as exc:  # a full or read-only disk, another writer, a long line
            raise gr.Error(str(exc)) from exc
        yield _report_html(results, len(paths)), gr.skip()
    yield _report_html(results, len(paths)), _document_rows(service)


def _report_html(results: list[UploadResult], total: int) -> str:
    rows = []
    for r in results:
        label = {"added": "Added", "changed": "Updated", "unchanged": "Already indexed"}.get(r.status, "Skipped")
        detail = f" — {html.escape(r.detail)}" if r.detail else ""
        rows.append(f'<li class="rag-upload-{r.status}"><b>{label}</b> {html.escape(r.name)}{detail}</li>')
    done = f"{len(results)} of {total} files processed" if len(results) < total else f"{total} files processed"
    return f'<div class="rag-upload-report"><p>{done}</p><ul>{"".join(rows)}</ul></div>'
