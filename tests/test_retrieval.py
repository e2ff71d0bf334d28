from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_store import CONFIG, ParagraphChunker, make_document, seed_documents

from rag.embedding.embedder import Embedder
from rag.ingestion.chunking import Chunker
from rag.retrieval.hybrid import HybridRetriever
from rag.store.bm25 import bm25_tokenize
from rag.store.local import LocalStore
from rag.types import Document

BM25_WEIGHT = 0.4
CHUNKING = {"chunk_size": 700, "chunk_overlap": 150}
CATS = make_document("notes/cats.txt", "Cats spend most of the afternoon napping in warm, sunny spots by the window.")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> LocalStore:
    store = LocalStore(tmp_path_factory.mktemp("retrieval") / "index", embedder)
    store.sync([*seed_documents(), CATS], Chunker(**CHUNKING), CHUNKING)
    return store


@pytest.fixture(scope="module")
def retriever(store: LocalStore, embedder: Embedder) -> HybridRetriever:
    return HybridRetriever(store, embedder, candidate_k=20, bm25_weight=BM25_WEIGHT)


def is_paris_article(source: str) -> bool:
    return Path(source).name.startswith("003_")


def test_question_finds_the_paris_article_first(retriever: HybridRetriever) -> None:
    passages = retriever.retrieve("What did LeCun propose in Paris?", top_k=4)
    assert len(passages) == 4
    assert is_paris_article(passages[0].source)
    assert "Paris" in passages[0].chunk.text
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)


def test_passage_carries_citation_fields(retriever: HybridRetriever, store: LocalStore) -> None:
    passage = retriever.retrieve("What did LeCun propose in Paris?", top_k=1)[0]
    document = store.document(passage.chunk.doc_id)
    assert (passage.title, passage.source) == (document.title, document.source)
    assert document.text[passage.chunk.start : passage.chunk.end] == passage.chunk.text


def test_fusion_keeps_a_keyword_hit_and_a_paraphrase(store: LocalStore, embedder: Embedder) -> None:
    """With one candidate per retriever, each contributes a chunk the other one did not find."""
    query = "sleepy kittens and Detectron2"
    snapshot = store.snapshot()
    cosine = snapshot.vectors @ embedder.encode([query])[0]
    dense_best = snapshot.chunks[int(np.argmax(cosine))]
    assert dense_best.doc_id == CATS.doc_id
    assert not set(bm25_tokenize([query])[0]) & set(bm25_tokenize([CATS.text])[0])  # invisible to BM25

    narrow = HybridRetriever(store, embedder, candidate_k=1, bm25_weight=BM25_WEIGHT)
    passages = narrow.retrieve(query, top_k=5)
    assert len(passages) == 2
    texts = [p.chunk.text for p in passages]
    assert CATS.text in texts
    assert any("Detectron2" in t for t in texts)
    keyword_hit = next(p for p in passages if "Detectron2" in p.chunk.text)
    assert keyword_hit.score >= BM25_WEIGHT  # it has the query's best BM25 score


def test_relevance_separates_on_topic_from_off_topic(retriever: HybridRetriever, embedder: Embedder) -> None:
    on_topic = retriever.retrieve("What did LeCun propose in Paris?", top_k=4)
    off_topic = retriever.retrieve("How long should I knead bread dough for a sourdough loaf?", top_k=4)
    assert max(p.relevance for p in on_topic) > 0.3
    assert max(p.relevance for p in off_topic) < 0.15
    question_vector = embedder.encode(["What did LeCun propose in Paris?"])[0]
    assert on_topic[0].relevance == pytest.approx(
        float(embedder.encode([on_topic[0].chunk.text])[0] @ question_vector), abs=1e-4
    )


def test_list_of_queries_is_fused_into_one_ranking(retriever: HybridRetriever, embedder: Embedder) -> None:
    follow_up = "What did he propose there?"
    alone = retriever.retrieve(follow_up, top_k=4)
    fused = retriever.retrieve([follow_up, "What did LeCun propose in Paris?"], top_k=4)
    assert is_paris_article(fused[0].source)
    assert not is_paris_article(alone[0].source) or alone[0].score < fused[0].score
    follow_up_vector = embedder.encode([follow_up])[0]
    chunk_vector = embedder.encode([fused[0].chunk.text])[0]
    assert fused[0].relevance == pytest.approx(float(chunk_vector @ follow_up_vector), abs=1e-4)


@pytest.mark.parametrize("query", ["the and of it is", "What is the?", "   "])
def test_queries_without_terms_do_not_crash(retriever: HybridRetriever, query: str) -> None:
    passages = retriever.retrieve(query, top_k=3)
    assert len(passages) == (0 if not query.strip() else 3)


def test_corpus_smaller_than_candidate_k(tmp_path: Path, embedder: Embedder) -> None:
    docs = [
        make_document("a.txt", "Llamas are domesticated camelids from South America."),
        make_document("b.txt", "The pump housing needs a replacement gasket."),
    ]
    store = LocalStore(tmp_path / "index", embedder)
    store.sync(docs, ParagraphChunker(), CONFIG)
    passages = HybridRetriever(store, embedder, candidate_k=50, bm25_weight=BM25_WEIGHT).retrieve("llamas", top_k=10)
    assert [p.source for p in passages] == ["a.txt", "b.txt"]


def test_retriever_sees_a_sync_made_through_its_store(tmp_path: Path, embedder: Embedder) -> None:
    store = LocalStore(tmp_path / "index", embedder)
    store.sync([make_document("a.txt", "Llamas carry loads in the Andes.")], ParagraphChunker(), CONFIG)
    retriever = HybridRetriever(store, embedder, candidate_k=20, bm25_weight=BM25_WEIGHT)
    assert retriever.retrieve("gasket", top_k=1)[0].source == "a.txt"
    upload: Document = make_document("b.txt", "Order a replacement gasket for the pump.")
    store.sync([upload], ParagraphChunker(), CONFIG, remove_missing=False)
    assert retriever.retrieve("gasket", top_k=1)[0].source == "b.txt"


def test_empty_index_returns_nothing(tmp_path: Path, embedder: Embedder) -> None:
    store = LocalStore(tmp_path / "index", embedder)
    store.sync([], ParagraphChunker(), CONFIG)
    assert HybridRetriever(store, embedder, candidate_k=20, bm25_weight=BM25_WEIGHT).retrieve("anything", top_k=4) == []
