"""HTML for answers, sources and documents, built so that nothing from a document or the model runs.

Model output goes through Markdown with raw HTML disabled and then an allowlist sanitizer (nh3);
document text is always escaped. Images are dropped too: an answer must not make the browser
fetch anything, least of all from the internet.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import nh3
from markdown_it import MarkdownIt

from rag.types import Answer, Citation, Sources

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).disable("image")
_TAGS = {"p", "br", "strong", "em", "b", "i", "code", "pre", "ul", "ol", "li", "blockquote", "a", "span", "div"}
_ATTRIBUTES = {"a": {"href", "class"}, "span": {"class"}, "div": {"class"}}
_MARKER = re.compile(r"\[(\d{1,2})\]")


def markdown(text: str) -> str:
    """Untrusted Markdown (model output) as safe HTML."""
    return clean(_MARKDOWN.render(text))


def clean(fragment: str) -> str:
    return nh3.clean(fragment, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes={"http", "https"}, link_rel=None)


def answer_html(answer: Answer, turn: int) -> str:
    """The final answer: citation markers link to their source card; abstentions look like a notice."""
    if answer.abstained:
        return (
            '<div class="rag-abstain"><span class="rag-abstain-label">Not in the documents</span>'
            f"<p>{html.escape(answer.answer)}</p></div>{timings_html(answer)}"
        )
    cited = {c.n for c in answer.citations}

    def link(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n not in cited:
            return match.group(0)
        return f'<a class="rag-cite" href="#rag-src-{turn}-{n}">{n}</a>'

    return clean(_MARKER.sub(link, markdown(answer.answer))) + timings_html(answer)


def timings_html(answer: Answer) -> str:
    t = answer.timings
    parts = [f"{t.retrieve_ms:.0f} ms retrieval"]
    if t.first_token_ms < t.total_ms:  # else it abstained before generating: there was no first token
        parts.append(f"{t.first_token_ms / 1000:.1f} s first token")
    parts.append(f"{t.total_ms / 1000:.1f} s total")
    return f'<div class="rag-timings">{" · ".join(parts)}</div>'


# Context shown either side of a quote: a passage is a few hundred characters, but a summary cites a
# whole document, and its card should show the sentence that supports the claim, not the document.
CARD_CONTEXT = 600


def quote_parts(c: Citation) -> tuple[str, str, str]:
    """The passage split around its supporting quote: before, quote, after (each side cut at a word)."""
    qs = max(0, c.quote_start - c.start)
    qe = max(qs, min(len(c.text), c.quote_end - c.start))
    before, after = c.text[:qs], c.text[qe:]
    if len(before) > CARD_CONTEXT:
        before = "…" + re.sub(r"^\S*\s", "", before[-CARD_CONTEXT:])
    if len(after) > CARD_CONTEXT:
        after = re.sub(r"\s\S*$", "", after[:CARD_CONTEXT]) + "…"
    return before, c.text[qs:qe], after


def document_link(doc_id: str, start: int, end: int, quote_start: int, quote_end: int) -> str:
    query = urlencode({"start": start, "end": end, "quote_start": quote_start, "quote_end": quote_end})
    return f"documents/{doc_id}?{query}#cited"


def sources_html(answers: list[Answer | Sources | None], active: int | None = None) -> str:
    """One group of source cards per answer in the conversation; only the active one is shown.

    Clicking a citation marker (ui.js) shows that answer's group and highlights the card, so
    markers in earlier answers still lead to their own passages. While an answer is being written,
    its group shows the passages the model is reading.
    """
    if not answers:
        return '<div class="rag-sources-empty">Sources for each answer appear here.</div>'
    active = len(answers) - 1 if active is None else active
    groups = []
    for turn, answer in enumerate(answers):
        hidden = "" if turn == active else " hidden"
        groups.append(f'<section class="rag-sources" data-turn="{turn}"{hidden}>{_cards(answer, turn)}</section>')
    return "".join(groups)


def _cards(answer: Answer | Sources | None, turn: int) -> str:
    if answer is None:
        return '<div class="rag-sources-empty">Searching the documents…</div>'
    if isinstance(answer, Sources):
        cards = [
            _card(
                f"rag-read-{turn}-{n}",
                n,
                p.title,
                p.place,
                p.source,
                p.chunk.start,
                p.chunk.end,
                html.escape(p.chunk.text),
                document_link(p.chunk.doc_id, p.chunk.start, p.chunk.end, p.chunk.start, p.chunk.start),
            )
            for n, p in enumerate(answer.passages, start=1)
        ]
        return f'<h3 class="rag-sources-title">{html.escape(answer.describe())}…</h3>' + "".join(cards)
    if answer.abstained or not answer.citations:
        return (
            '<div class="rag-sources-empty">No sources: the indexed documents do not answer '
            f"“{html.escape(answer.question)}”.</div>"
        )
    cards = []
    for c in answer.citations:
        before, quote, after = quote_parts(c)
        cards.append(
            _card(
                f"rag-src-{turn}-{c.n}",
                c.n,
                c.title,
                c.place,
                c.source,
                c.start,
                c.end,
                f"{html.escape(before)}<mark>{html.escape(quote)}</mark>{html.escape(after)}",
                document_link(c.doc_id, c.start, c.end, c.quote_start, c.quote_end),
            )
        )
    return f'<h3 class="rag-sources-title">Sources for “{html.escape(answer.question)}”</h3>' + "".join(cards)


def _card(
    element_id: str, n: int, title: str, place: str, source: str, start: int, end: int, passage: str, link: str
) -> str:
    """One passage card; `passage` is already escaped HTML; `place` ("p. 4") stands beside the title."""
    shown_place = f' <span class="rag-place">{html.escape(place)}</span>' if place else ""
    return (
        f'<article class="rag-source" id="{element_id}">'
        f'<header><span class="rag-n">{n}</span><div><div class="rag-title">{html.escape(title)}{shown_place}</div>'
        f'<div class="rag-meta">{html.escape(source)} · characters {start} to {end}</div></div></header>'
        f'<p class="rag-passage">{passage}</p>'
        f'<a class="rag-open" href="{html.escape(link)}" target="_blank" rel="noopener">'
        "Open the document at this passage ↗</a></article>"
    )


def document_page(title: str, source: str, text: str, spans: tuple[int, int, int, int] | None) -> str:
    """A whole document, escaped, with the cited passage and its quote marked and scrolled into view."""
    if spans:
        start, end, qs, qe = spans
        qs, qe = max(start, min(qs, end)), max(start, min(qe, end))
        body = (
            f"{html.escape(text[:start])}<span class='passage'>{html.escape(text[start:qs])}"
            f"<mark id='cited'>{html.escape(text[qs:qe])}</mark>{html.escape(text[qe:end])}</span>"
            f"{html.escape(text[end:])}"
        )
    else:
        body = html.escape(text)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><link rel='stylesheet' href='../rag-static/document.css'></head>"
        f"<body><header><h1>{html.escape(title)}</h1><p>{html.escape(source)}</p></header>"
        f"<main><div class='text'>{body}</div></main></body></html>"
    )
