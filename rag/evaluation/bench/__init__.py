"""`rag bench`: how fast each stage is, every variant measured side by side in one run.

Variants are interleaved (A, B, A, B, ...) so that a machine whose load changes during the run slows
them alike; results are ratios to the baseline plus medians with [min, max]. On a CPU with bf16
instructions the engine, embedding and end-to-end sections run again in a fresh process that emulates a
CPU without them, so one report shows both kinds of machine. One module per section: `machine`,
`generation`, `embedding`, `retrieval`, `stores`, `model_server`, `replicas`, `end_to_end`, `integrations`,
`ingestion`;
`report` holds what they share.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from rag.assistant import Assistant
from rag.evaluation.bench.embedding import embedding
from rag.evaluation.bench.end_to_end import end_to_end
from rag.evaluation.bench.generation import GENERATION_QUESTIONS, generation
from rag.evaluation.bench.ingestion import ingestion
from rag.evaluation.bench.integrations import integrations
from rag.evaluation.bench.machine import machine
from rag.evaluation.bench.model_server import model_server
from rag.evaluation.bench.replicas import LOAD_SECONDS, replicas
from rag.evaluation.bench.report import Report
from rag.evaluation.bench.retrieval import SYNTHETIC_SIZES, retrieval
from rag.evaluation.bench.stores import ADDITION_SIZES, STORE_SIZES, VECTOR_ONLY_SIZES, stores
from rag.settings import Settings

# What `rag bench` runs by default (docs/BENCHMARKS.md): one machine. The team deployment's sections start
# PostgreSQL, a model server and replicas (docs/BENCHMARKS-TEAM.md): `--sections stores model-server replicas`;
# `integrations` asks through every interface a client uses (docs/BENCHMARKS-INTEGRATIONS.md); `ingestion` reads
# the PostgreSQL manual and generated office files, format by format (docs/BENCHMARKS-INGESTION.md).
DEFAULT_SECTIONS = ("machine", "generation", "embedding", "retrieval", "end-to-end")
SECTIONS = (*DEFAULT_SECTIONS, "stores", "model-server", "replicas", "integrations", "ingestion")


def run_bench(
    settings: Settings,
    output: Path | None,
    reps: int = 3,
    sections: tuple[str, ...] = DEFAULT_SECTIONS,
    sizes: tuple[int, ...] = SYNTHETIC_SIZES,
    store_sizes: tuple[int, ...] = STORE_SIZES,
    vector_only_sizes: tuple[int, ...] = VECTOR_ONLY_SIZES,
    addition_sizes: tuple[int, ...] = ADDITION_SIZES,
    load_seconds: float = LOAD_SECONDS,
    generation_questions: tuple[str, ...] = GENERATION_QUESTIONS,
) -> str:
    """Run the chosen sections on the seeds corpus (indexed into a temporary folder) and return the Markdown.

    The machine section always runs: every other figure is read against its bandwidth and GEMM rates.
    """
    import torch

    if settings.threads:  # before the machine section, so its GEMM rate is the one generation gets
        torch.set_num_threads(settings.threads)
    report = Report()
    report.add(
        "# Benchmarks",
        "",
        f"Written by `rag bench` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. Medians with [min, max]; "
        "variants interleaved in one run, ratios against the baseline of the same run.",
        "",
    )
    measured = machine(report)
    emulate = bool(measured.emulated_gflops)
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings.model_copy(update={"index_dir": Path(tmp) / "index"})
        Assistant(settings).index()
        if "generation" in sections:
            generation(report, settings, reps, measured, generation_questions)
        if "embedding" in sections:
            embedding(report, settings, reps, emulate)
        if "model-server" in sections:
            model_server(report, settings, reps)
        if "end-to-end" in sections:
            end_to_end(report, settings, reps, emulate)
        if "integrations" in sections:
            integrations(report, settings, reps)
    if "retrieval" in sections:
        retrieval(report, settings, sizes)
    if "stores" in sections:
        stores(report, settings, store_sizes, vector_only_sizes, addition_sizes)
    if "replicas" in sections:
        replicas(report, settings, load_seconds)
    if "ingestion" in sections:
        ingestion(report, settings)
    text = "\n".join(report.lines).rstrip() + "\n"
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    return text
