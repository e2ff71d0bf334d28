"""Hybrid retrieval: dense (FAISS) and BM25 rankings fused by reciprocal rank fusion.

Dense search finds paraphrases, BM25 finds exact names and rare terms; RRF combines them by rank
alone, so their incomparable score scales never need calibrating.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from rag.embedding import Embedder
from rag.store import IndexSnapshot, IndexStore, bm25_tokenize
from rag.types import Passage


class HybridRetriever:
    """Searches the indexes the store loaded once; nothing is rebuilt per query."""

    def __init__(self, store: IndexStore, embedder: Embedder, candidate_k: int, rrf_k: int) -> None:
        self.store = store
        self.embedder = embedder
        self.candidate_k = candidate_k
        self.rrf_k = rrf_k

    def retrieve(self, query: str | list[str], top_k: int) -> list[Passage]:
        """Top passages for one query, or for several phrasings of it fused into one ranking.

        `relevance` is measured against the first query only, so pass the phrasing that should
        decide whether the corpus covers the question first.
        """
        queries = [q for q in ([query] if isinstance(query, str) else query) if q.strip()]
        index = self.store.snapshot()  # taken once, so a concurrent sync cannot mix generations
        if not queries or not index.chunks:
            return []
        vectors = self.embedder.encode(queries)
        fused: defaultdict[int, float] = defaultdict(float)
        for ranking in self._dense_rankings(index, vectors) + self._bm25_rankings(index, queries):
            for rank, row in enumerate(ranking, start=1):
                fused[row] += 1.0 / (self.rrf_k + rank)
        rows = np.fromiter(fused, dtype=np.int64, count=len(fused))
        scores = np.array([fused[row] for row in rows])
        relevance = index.vectors[rows] @ vectors[0]
        best = np.lexsort((rows, -relevance, -scores))[:top_k]  # equal fused scores: the closer chunk first
        return [
            Passage(
                chunk=index.chunks[rows[i]],
                title=index.document_of(rows[i]).title,
                source=index.document_of(rows[i]).source,
                score=float(scores[i]),
                relevance=float(relevance[i]),
            )
            for i in best
        ]

    def _dense_rankings(self, index: IndexSnapshot, vectors: np.ndarray) -> list[list[int]]:
        k = min(self.candidate_k, index.dense.ntotal)
        _, rows = index.dense.search(vectors, k)
        return [[int(r) for r in ranked if r >= 0] for ranked in rows]

    def _bm25_rankings(self, index: IndexSnapshot, queries: list[str]) -> list[list[int]]:
        """Only chunks sharing a term with the query are ranked; a query of stopwords ranks none."""
        if index.bm25 is None:
            return []
        rankings = []
        for tokens in bm25_tokenize(queries):
            known = [t for t in tokens if t in index.bm25.vocab_dict]
            if not known:
                continue
            scores = index.bm25.get_scores(known)
            k = min(self.candidate_k, len(scores))
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.lexsort((top, -scores[top]))]
            rankings.append([int(r) for r in top if scores[r] > 0])
        return rankings
