"""Embedding: chunks per second for float32 and bfloat16, here and as a CPU without bf16, and what `auto` picks.

bf16 embeds ~2.7x faster than float32 on a CPU with bf16 instructions and ~3.5x slower on one without,
with vectors that agree (cosine and top-k overlap, below), so `embedding_dtype = auto` follows the CPU.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from rag.assistant import Assistant
from rag.cpu import cpu_info, fast_dtype
from rag.embedding.embedder import Embedder
from rag.evaluation.bench.generation import GENERATION_QUESTIONS
from rag.evaluation.bench.report import WITHOUT_BF16, Report, Series, in_fresh_process, ratio
from rag.settings import Settings

DTYPES = ("float32", "bfloat16")


def seeds_batch(settings: Settings) -> list[str]:
    """256 chunk texts of the indexed seeds (repeated as needed)."""
    assistant = Assistant(settings)
    texts = [c.text for doc in assistant.documents() for c in assistant.chunker.split(doc)]
    return (texts * (256 // max(len(texts), 1) + 1))[:256]


def measure_embedding(settings_json: str, reps: int) -> dict[str, Any]:
    """Interleaved chunks/s per dtype, and what `auto` resolves to in this process; JSON for a fresh process."""
    settings = Settings.model_validate_json(settings_json)
    batch = seeds_batch(settings)
    embedders = {d: Embedder(settings.embedding_model, settings.embed_batch_size, d) for d in DTYPES}
    for embedder in embedders.values():
        embedder.encode(batch[:8])
    rates: dict[str, list[float]] = {d: [] for d in DTYPES}
    for _ in range(reps):
        for dtype, embedder in embedders.items():
            started = time.perf_counter()
            embedder.encode(batch)
            rates[dtype].append(len(batch) / (time.perf_counter() - started))
    chars = float(np.mean([len(t) for t in batch]))
    return {"rates": rates, "auto": fast_dtype(settings.embedding_dtype), "chars": chars}


def embedding(report: Report, settings: Settings, reps: int, emulate: bool) -> None:
    native = measure_embedding(settings.model_dump_json(), reps)
    worlds = [(cpu_info().describe(), native)]
    if emulate:
        emulated = in_fresh_process(
            "rag.evaluation.bench.embedding:measure_embedding", settings.model_dump_json(), reps, env=WITHOUT_BF16
        )
        worlds.append(("the same, emulating a CPU without bf16", emulated))
    report.add(
        "## Embedding",
        "",
        f"`{settings.embedding_model}` on 256 seeds chunks (mean {native['chars']:.0f} characters), batch "
        f"{settings.embed_batch_size}, {reps} interleaved rounds; `auto` is the shipped `embedding_dtype`.",
        "",
    )
    rows = []
    for where, measured in worlds:
        base = Series(measured["rates"]["float32"]).median
        for dtype in DTYPES:
            rate = Series(measured["rates"][dtype])
            picked = " (auto)" if dtype == measured["auto"] else ""
            rows.append([where, f"{dtype}{picked}", rate.cell(1), ratio(rate.median, base)])
    report.table(["CPU", "dtype", "chunks/s", "vs float32"], rows)
    texts = seeds_batch(settings)
    ref, fast = (Embedder(settings.embedding_model, settings.embed_batch_size, d) for d in DTYPES)
    ref_vectors, fast_vectors = ref.encode(texts), fast.encode(texts)
    cosines = (ref_vectors * fast_vectors).sum(axis=1)
    agree = []
    for question in (*GENERATION_QUESTIONS, "Who is Meta's chief AI scientist?", "What is open source AI?"):
        a, b = ref.encode([question]) @ ref_vectors.T, fast.encode([question]) @ fast_vectors.T
        k = settings.top_k
        agree.append(len(set(np.argsort(-a[0])[:k]) & set(np.argsort(-b[0])[:k])) / k)
    report.add(
        f"Quality: cosine of bfloat16 vectors to float32 ones, min {cosines.min():.4f}, mean {cosines.mean():.4f}; "
        f"dense top-{settings.top_k} overlap with float32 on {len(agree)} questions: {np.mean(agree):.2f}.",
        "",
    )
