"""The FAISS index for the chunk vectors, exact or inverted-file depending on how many there are.

Exact inner-product search reads every vector per query: ~1.5 GB at 1M chunks of 384 floats,
~100 ms on this class of CPU, so above `ivf_min_rows` an IVF index searches only the `nprobe`
nearest of ~sqrt-sized lists instead (recall@10 against exact search is measured by `rag bench`).
IVF rather than HNSW because it builds in seconds, not tens of minutes, on two cores, and keeps
only the vectors and their list ids in memory.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

TRAIN_POINTS_PER_LIST = 64  # faiss warns below 39; more only slows training


def ivf_lists(rows: int) -> int:
    """About 1 list per 1000 vectors, at least 1: 1024 lists at 1M."""
    return max(1, 2 ** round(math.log2(max(rows, 1) / 1000)))


def build_dense_index(vectors: np.ndarray, ivf_min_rows: int, nprobe: int) -> faiss.Index:
    """Exact search for small corpora, IVF (inner product over the normalized vectors) for large ones."""
    dim = vectors.shape[1]
    if len(vectors) < ivf_min_rows:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index
    lists = ivf_lists(len(vectors))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors), TRAIN_POINTS_PER_LIST * lists), False)
    index.train(vectors[np.sort(sample)])
    index.add(vectors)
    set_nprobe(index, nprobe)
    return index


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    """How many lists an IVF query visits; exact indexes have none to set."""
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = min(nprobe, index.nlist)
