"""The lexical side of search: one BM25 tokenizer for indexing and querying, and scoring with bm25s."""

from __future__ import annotations

import bm25s
import numpy as np

from rag.lexical import english_stemmer
from rag.types import Chunk

BM25_STOPWORDS = "en_plus"  # NLTK's list: unlike the Lucene "en" one, it drops question words (what, did)


def bm25_tokenize(texts: list[str]) -> list[list[str]]:
    """The one tokenizer for indexing and querying, so query terms match indexed terms."""
    return bm25s.tokenize(
        texts, stopwords=BM25_STOPWORDS, stemmer=english_stemmer(), return_ids=False, show_progress=False
    )


def build_bm25(chunks: list[Chunk], params: dict[str, float], progress: bool) -> bm25s.BM25 | None:
    """A BM25 index over the chunks with `k1` and `b` from `params`; None when no chunk has an indexable term."""
    tokens = bm25_tokenize([c.text for c in chunks])
    if not any(tokens):
        return None
    bm25 = bm25s.BM25(k1=params["k1"], b=params["b"])
    bm25.index(tokens, show_progress=progress)
    return bm25


def bm25_scores(bm25: bm25s.BM25 | None, queries: list[str], chunks: int) -> list[np.ndarray]:
    """One score per chunk and query; all zero for a query with no indexed term (e.g. only stopwords)."""
    if bm25 is None:
        return [np.zeros(chunks, dtype=np.float32) for _ in queries]
    result = []
    for tokens in bm25_tokenize(queries):
        known = [t for t in tokens if t in bm25.vocab_dict]
        result.append(bm25.get_scores(known) if known else np.zeros(chunks, dtype=np.float32))
    return result
