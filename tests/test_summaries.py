"""Which documents a summary request means, and how a long document is cut for the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.answering.summaries import SummaryCache, documents_named, sections
from rag.types import Document

TITLES = (
    "Scoop: Meta to Open Source Versions of Its Next AI Models",
    "Mark Zuckerberg claims open-source is necessary for a positive AI future",
    "Meta's Leading AI Expert Advocates for Global Data Sharing in Open-Source AI",
    "City council approves tram line",
)
DOCUMENTS = [Document(str(i), title, f"{i}.txt", "text") for i, title in enumerate(TITLES)]


@pytest.mark.parametrize(
    ("question", "named"),
    [
        ("What is the Zuckerberg article about?", ["1"]),
        ("Give me a short summary of the scoop about Meta's next AI models.", ["0"]),
        ("Summarize the piece on the tram.", ["3"]),
        ("Summarize the four articles in one sentence each.", ["0", "1", "2", "3"]),
        ("What is this about?", ["0", "1", "2", "3"]),
        ("Summarize each document.", ["0", "1", "2", "3"]),
        # a title word most titles share names no document; "article" (one) is not "articles" (all)
        ("Give me an overview of the report on Apple's AI strategy.", None),
        ("Summarize the article about the Roman empire.", None),
    ],
)
def test_documents_named(question: str, named: list[str] | None) -> None:
    found = documents_named(question, DOCUMENTS)
    assert (None if found is None else [d.doc_id for d in found]) == named


def test_sections_cut_at_sentence_ends_and_cover_the_text() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    parts = sections(text, 500)
    assert len(parts) > 1 and all(len(p) <= 500 for p in parts)
    assert all(p.endswith(".") for p in parts)
    assert " ".join(parts) == text
    # a sentence longer than a section (a table, a page without stops) is cut, so none outgrows the context
    long = "A sentence far longer than the limit of ten characters."
    assert sections(long, 10) == [long[i : i + 10] for i in range(0, len(long), 10)]


def test_cache_sees_what_another_process_wrote(tmp_path: Path) -> None:
    first, second = SummaryCache(tmp_path, "m", 6000), SummaryCache(tmp_path, "m", 6000)
    assert first.get("doc") is None
    second._write({"doc": "A summary."})
    assert first.get("doc") == "A summary."
    first.keep_only([])
    assert second.get("doc") is None
