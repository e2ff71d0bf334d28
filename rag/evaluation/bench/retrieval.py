"""Dense retrieval at scale: exact FAISS search against the shipped index choice (IVF from `ivf_min_chunks`).

BM25 is loaded once per index generation and never rebuilt per query, so only dense search is timed.
Vectors are synthetic (clustered unit vectors like chunk embeddings): corpora this large are not shipped.
"""

from __future__ import annotations

import time

import numpy as np

from rag.evaluation.bench.report import Report, Series
from rag.settings import Settings
from rag.store.dense import build_dense_index

SYNTHETIC_SIZES = (10_000, 100_000, 1_000_000)


def synthetic_vectors(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors in clusters (topics) of ~100, like chunk embeddings; real corpora this large we do not ship."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(rows // 100, 1), dim), dtype=np.float32)
    vectors = np.empty((rows, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, rows, step):
        end = min(rows, start + step)
        owners = rng.integers(0, len(centers), end - start)
        vectors[start:end] = centers[owners] + 0.8 * rng.standard_normal((end - start, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def retrieval(report: Report, settings: Settings, sizes: tuple[int, ...], queries: int = 200) -> None:
    import faiss

    rows_out = []
    dim = 384
    for rows in sizes:
        vectors = synthetic_vectors(rows, dim)
        rng = np.random.default_rng(1)
        picks = rng.choice(rows, queries, replace=False)
        qs = vectors[picks] + 0.6 * rng.standard_normal((queries, dim), dtype=np.float32) / np.sqrt(dim)
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        exact = faiss.IndexFlatIP(dim)
        exact.add(vectors)
        started = time.perf_counter()
        shipped = build_dense_index(vectors, settings.ivf_min_chunks, settings.ivf_nprobe)
        build_s = time.perf_counter() - started
        if shipped is exact or isinstance(shipped, faiss.IndexFlat):
            shipped_kind = "exact (flat)"
        else:
            shipped_kind = f"IVF{shipped.nlist}, nprobe {shipped.nprobe}"
        latency = {"exact": Series(), "shipped": Series()}
        found = []
        for q in qs:  # one query at a time, as the assistant asks them; interleaved
            for name, index in (("exact", exact), ("shipped", shipped)):
                started = time.perf_counter()
                _, ids = index.search(q[None, :], 10)
                latency[name].values.append((time.perf_counter() - started) * 1000)
                found.append(ids[0])
        recall = np.mean([len(set(found[i]) & set(found[i + 1])) / 10 for i in range(0, len(found), 2)])
        memory = faiss.serialize_index(shipped).nbytes / 2**30
        for name, kind in (("exact", "exact (flat)"), ("shipped", shipped_kind)):
            series = latency[name]
            rows_out.append(
                [
                    f"{rows:,}",
                    f"{name}: {kind}",
                    f"{series.percentile(50):.2f}",
                    f"{series.percentile(95):.2f}",
                    "1.000" if name == "exact" else f"{recall:.3f}",
                    "" if name == "exact" else f"{build_s:.1f}",
                    "" if name == "exact" else f"{memory:.2f}",
                ]
            )
        del vectors, exact, shipped
    report.add(
        "## Retrieval at scale",
        "",
        "Dense search only (BM25 is loaded once per index generation and never rebuilt per query). Vectors are "
        "synthetic: 384-d unit vectors in clusters of ~100 around random centers; queries are perturbed corpus "
        f"vectors; {queries} single-vector queries per size, the two indexes interleaved. Recall@10 is against "
        f"exact search. The shipped index is exact below `ivf_min_chunks={settings.ivf_min_chunks:,}` chunks, "
        "IVF from there.",
        "",
    )
    report.table(["chunks", "index", "p50 (ms)", "p95 (ms)", "recall@10", "build (s)", "index memory (GiB)"], rows_out)
