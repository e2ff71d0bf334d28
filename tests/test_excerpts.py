"""Passage excerpts: spans of their documents, within the budget, around the sentence that matters."""

from __future__ import annotations

import pytest
from conftest import SEEDS

from rag.embedding.embedder import Embedder
from rag.ingestion.chunking import Chunker
from rag.ingestion.loaders import load_documents
from rag.retrieval.excerpts import PassageTrimmer
from rag.types import Document, Passage

PARIS = "003_242d03d61eec7c62.txt"


@pytest.fixture(scope="module")
def paris() -> Document:
    docs, _ = load_documents([SEEDS], max_bytes=10**7)
    return next(d for d in docs if d.source.endswith(PARIS))


def _passages(document: Document) -> list[Passage]:
    return [
        Passage(chunk=c, title=document.title, source=document.source, score=1.0, relevance=0.5)
        for c in Chunker(700, 150).split(document)
    ]


def test_excerpts_are_document_spans_within_budget(embedder: Embedder, paris: Document) -> None:
    passages = _passages(paris)
    trimmed = PassageTrimmer(embedder, 320).trim("What did LeCun propose in Paris?", passages)
    assert len(trimmed) == len(passages)
    for whole, cut in zip(passages, trimmed, strict=True):
        assert cut.chunk.text == paris.text[cut.chunk.start : cut.chunk.end]
        assert whole.chunk.start <= cut.chunk.start <= cut.chunk.end <= whole.chunk.end
        assert cut.chunk.chunk_id == whole.chunk.chunk_id and cut.title == whole.title
        assert len(cut.chunk.text) <= 320 or cut.chunk.text.count(". ") == 0  # one long sentence may exceed it
    assert sum(len(p.chunk.text) for p in trimmed) < sum(len(p.chunk.text) for p in passages) / 2


def test_excerpt_keeps_the_matching_sentence_and_what_follows(embedder: Embedder, paris: Document) -> None:
    passage = next(p for p in _passages(paris) if "AI Action Summit" in p.chunk.text)
    [cut] = PassageTrimmer(embedder, 320).trim("Which summit in Paris did LeCun speak at?", [passage])
    assert "AI Action Summit" in cut.chunk.text
    assert cut.chunk.text != passage.chunk.text


def test_zero_budget_keeps_passages_whole(embedder: Embedder, paris: Document) -> None:
    passages = _passages(paris)
    assert PassageTrimmer(embedder, 0).trim("What did LeCun propose in Paris?", passages) == passages


def test_a_headline_repeating_the_title_does_not_crowd_out_the_answer(embedder: Embedder) -> None:
    title = "Mayor says the new tram line is needed"
    text = (
        f"{title}\n\n{title.upper()}\n\n"
        "The council met on Monday to discuss the budget for next year. "
        "Several members asked about the costs of road repairs in the old town. "
        "Ana Ruiz, the mayor since 2019, said the tram line is needed to cut traffic. "
        "The vote is expected in the spring."
    )
    document = Document("d", title, "tram.txt", text)
    passage = Passage(
        chunk=Chunker(700, 0).split(document)[0], title=title, source="tram.txt", score=1.0, relevance=0.5
    )
    [cut] = PassageTrimmer(embedder, 160).trim("Who is the mayor who says the new tram line is needed?", [passage])
    assert "Ana Ruiz" in cut.chunk.text
    assert cut.chunk.text == text[cut.chunk.start : cut.chunk.end]
