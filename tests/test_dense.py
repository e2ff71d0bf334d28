"""The dense index: exact for small corpora, IVF for large ones, with recall checked against exact search."""

from __future__ import annotations

import faiss
import numpy as np

from rag.evaluation.bench.retrieval import synthetic_vectors
from rag.store.dense import build_dense_index, ivf_lists, set_nprobe


def test_small_corpora_get_exact_search() -> None:
    vectors = synthetic_vectors(500, 32)
    index = build_dense_index(vectors, ivf_min_rows=1000, nprobe=8)
    assert isinstance(index, faiss.IndexFlatIP)
    assert index.ntotal == 500


def test_large_corpora_get_ivf_with_high_recall() -> None:
    vectors = synthetic_vectors(20_000, 64)
    index = build_dense_index(vectors, ivf_min_rows=10_000, nprobe=8)
    assert isinstance(index, faiss.IndexIVFFlat)
    assert index.nlist == ivf_lists(20_000) and index.nprobe == 8
    exact = faiss.IndexFlatIP(64)
    exact.add(vectors)
    queries = vectors[:50]
    _, want = exact.search(queries, 10)
    _, got = index.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(want, got, strict=True)])
    assert recall >= 0.9


def test_nprobe_is_capped_by_the_lists_and_ignored_by_exact_indexes() -> None:
    vectors = synthetic_vectors(4000, 16)
    ivf = build_dense_index(vectors, ivf_min_rows=1, nprobe=1)
    set_nprobe(ivf, 10_000)
    assert ivf.nprobe == ivf.nlist
    set_nprobe(faiss.IndexFlatIP(16), 5)  # no error


def test_ivf_lists_grow_with_the_corpus() -> None:
    assert ivf_lists(1) == 1
    assert ivf_lists(1_000_000) == 2048
