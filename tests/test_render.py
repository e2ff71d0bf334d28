"""HTML for the UI: model output and document text can never inject markup, and markers link to sources."""

from __future__ import annotations

from dataclasses import replace

from rag.serving.render import CARD_CONTEXT, answer_html, document_page, markdown, quote_parts, sources_html
from rag.types import AbstainedBy, Answer, Citation, Timings

TEXT = "Intro. LeCun proposed <b>shared</b> data centers. The end."
CITATION = Citation(
    n=1,
    doc_id="abc",
    title="Paris <script>alert(1)</script>",
    source="seeds/<img src=x onerror=alert(1)>.txt",
    start=7,
    end=49,
    text=TEXT[7:49],
    score=0.9,
    quote_start=7,
    quote_end=49,
)


def _answer(text: str, abstained_by: AbstainedBy | None = None) -> Answer:
    citations = [] if abstained_by else [CITATION]
    return Answer("What did LeCun propose?", text, citations, Timings(11, 3100, 9900), abstained_by=abstained_by)


def test_model_html_is_escaped_and_markdown_kept() -> None:
    html = markdown("**Yes** <script>alert(1)</script> <img src=x onerror=alert(1)> ![x](http://example.com/a.png)")
    assert "<strong>Yes</strong>" in html
    assert "<script" not in html and "<img" not in html and ' src="' not in html  # nothing is loaded
    assert "&lt;script&gt;" in html


def test_cited_markers_link_to_their_source_card_and_others_stay_text() -> None:
    html = answer_html(_answer("LeCun proposed sharing [1]. See also [7]. <img src=x onerror=alert(1)>"), turn=2)
    assert '<a class="rag-cite" href="#rag-src-2-1">1</a>' in html
    assert "[7]" in html
    assert "<img" not in html
    assert "11 ms retrieval · 3.1 s first token · 9.9 s total" in html


def test_abstention_looks_different() -> None:
    html = answer_html(_answer("The documents don't mention <b>Macron</b>.", abstained_by="names missing"), turn=0)
    assert 'class="rag-abstain"' in html and "Not in the documents" in html
    assert "&lt;b&gt;Macron&lt;/b&gt;" in html
    assert "rag-cite" not in html


def test_source_cards_escape_document_text_and_mark_the_quote() -> None:
    html = sources_html([_answer("LeCun proposed sharing [1]."), None], active=0)
    assert '<section class="rag-sources" data-turn="0">' in html
    assert '<section class="rag-sources" data-turn="1" hidden>' in html
    assert 'id="rag-src-0-1"' in html
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "<mark>LeCun proposed &lt;b&gt;shared&lt;/b&gt; data centers.</mark>" in html
    assert "documents/abc?start=7&amp;end=49&amp;quote_start=7&amp;quote_end=49#cited" in html


def test_document_page_escapes_and_marks_the_passage() -> None:
    page = document_page("T <i>", "s.txt", TEXT, (7, 50, 7, 20))
    assert "<i>" not in page and "&lt;b&gt;" in page
    assert "<span class='passage'><mark id='cited'>LeCun propose</mark>" in page


def test_a_whole_document_citation_shows_its_quote_in_context_not_the_document() -> None:
    document = "word " * 1000 + "The quoted sentence. " + "more " * 1000
    start = document.index("The quoted")
    cited = Citation(1, "d", "T", "s.txt", 0, len(document), document, 0.9, start, start + len("The quoted sentence."))
    before, quote, after = quote_parts(cited)
    assert quote == "The quoted sentence."
    assert before.startswith("…") and after.endswith("…")
    assert len(before) <= CARD_CONTEXT + 1 and len(after) <= CARD_CONTEXT + 1


def test_a_source_card_names_the_page_beside_the_title() -> None:
    paged = replace(CITATION, place="slide <3>")
    cards = sources_html([Answer("Q?", "It [1].", [paged], Timings(1, 2, 3))], 0)
    assert '<span class="rag-place">slide &lt;3&gt;</span>' in cards
    assert "rag-place" not in sources_html([Answer("Q?", "It [1].", [CITATION], Timings(1, 2, 3))], 0)
