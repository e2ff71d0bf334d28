"""Ingestion: how fast each format is read, chunked and embedded, and what it costs in memory and disk.

On a real document set nobody here wrote (the PostgreSQL 15 manual's HTML, Debian's `postgresql-doc-15`)
and on generated office files (rag.evaluation.office_files, written by each format's own library). Each
format runs alone in a fresh process, so its peak RSS is its own.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rag.evaluation.bench.report import Report, in_fresh_process, process_high_water_gib
from rag.evaluation.office_files import WRITERS, write_office_set
from rag.settings import Settings

MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")
OFFICE_SETS = 40  # of each generated format: 8 formats x 40 = 320 files


def ingestion(
    report: Report,
    settings: Settings,
    office_sets: int = OFFICE_SETS,
    manual: Path | None = MANUAL,
    kinds: tuple[str, ...] = tuple(WRITERS),
) -> None:
    report.add(
        "## Ingestion",
        "",
        "Each row in a fresh process: read (load_documents, OCR included), then chunked, embedded and written to "
        "a new local index. files/s and chunks/s are over the whole run (read + index); peak RSS is the process's "
        f"VmHWM. The office files are {office_sets} of each kind, written by the format's own library "
        "(rag/evaluation/office_files.py).",
        "",
    )
    with tempfile.TemporaryDirectory() as tmp:
        folders: dict[str, Path] = {}
        if manual is not None and manual.is_dir():
            folders["HTML: PostgreSQL 15 manual"] = manual
        elif manual is not None:
            report.add(
                f"(The PostgreSQL 15 manual is not installed at {manual}: apt-get install postgresql-doc-15.)", ""
            )
        for name in kinds:
            folder = Path(tmp) / "office" / Path(name).suffix.lstrip(".")
            for n in range(1, office_sets + 1):
                write_office_set(folder, n, only=(name,))
            folders[name] = folder
        rows = []
        for label, folder in folders.items():
            index_dir = Path(tmp) / "index" / label.replace(" ", "-").replace(":", "")
            m = in_fresh_process(
                "rag.evaluation.bench.ingestion:measure", settings.model_dump(mode="json"), str(folder), str(index_dir)
            )
            total_s = m["read_s"] + m["index_s"]
            rows.append(
                [
                    label,
                    str(m["files"]),
                    str(m["errors"]),
                    str(m["chunks"]),
                    f"{m['files'] / m['read_s']:.1f}",
                    f"{m['files'] / total_s:.1f}",
                    f"{m['chunks'] / total_s:.1f}",
                    f"{m['peak_rss_gib'] * 1024:.0f}",
                    f"{m['index_mib']:.2f}",
                ]
            )
    report.table(
        ["format", "files", "skipped", "chunks", "read files/s", "files/s", "chunks/s", "peak RSS MiB", "index MiB"],
        rows,
    )


def measure(settings: dict[str, object], folder: str, index_dir: str) -> dict[str, float]:
    """In a fresh process: read every file under `folder`, then index it into `index_dir` (with `settings`)."""
    import os

    from rag.assistant import Assistant
    from rag.ingestion.loaders import load_documents

    chosen = Settings(**{**settings, "index_dir": index_dir, "default_corpus": folder})
    files = sum(1 for path in Path(folder).rglob("*") if path.is_file() and not path.name.startswith("."))
    started = time.perf_counter()
    documents, errors = load_documents([Path(folder)], int(chosen.max_file_mb * 1024 * 1024))
    read_s = time.perf_counter() - started
    assistant = Assistant(chosen)
    assistant.embedder.encode(["the model loaded before the clock starts"])
    started = time.perf_counter()
    indexed = assistant.index_documents(documents)
    index_s = time.perf_counter() - started
    size = sum(path.stat().st_size for path in Path(index_dir).rglob("*") if path.is_file())
    return {
        "files": files,
        "errors": len(errors),
        "chunks": indexed.sync.embedded_chunks,
        "read_s": read_s,
        "index_s": index_s,
        "peak_rss_gib": process_high_water_gib(os.getpid()),
        "index_mib": size / 2**20,
    }
