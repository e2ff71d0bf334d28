"""The local store: documents, chunks, dense vectors (FAISS) and a BM25 index in files, kept in generations.

Each build is written to its own `gen-<n>/` folder and fsynced; only then does the `CURRENT`
pointer move to it (write-temp + os.replace), so a build killed at any point leaves the previous
index loadable. Syncs are incremental by source: unchanged documents keep their stored vectors,
because embedding is the slow part of indexing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import bm25s
import faiss
import numpy as np

from rag.embedding.embedder import Embedder
from rag.store.base import (
    Candidates,
    IndexLockedError,
    IndexMissingError,
    IndexStore,
    IndexStoreError,
    StoreEntry,
    SupportsSplit,
    SyncReport,
    by_source,
    check_compatible,
    embed_entries,
)
from rag.store.bm25 import bm25_scores, build_bm25
from rag.store.dense import build_dense_index, set_nprobe
from rag.types import Chunk, Document

FORMAT_VERSION = 2  # 2: the BM25 parameters are in the manifest
CURRENT = "CURRENT"
LOCK_FILE = ".lock"
GENERATION_PREFIX = "gen-"
MANIFEST = "manifest.json"
DOCUMENTS = "documents.jsonl"
CHUNKS = "chunks.jsonl"
VECTORS = "vectors.npy"
DENSE = "dense.faiss"
BM25_DIR = "bm25"
LOAD_ATTEMPTS = 3


@dataclass(frozen=True)
class ManifestDocument:
    doc_id: str
    source: str
    title: str
    chunks: int


@dataclass(frozen=True)
class Manifest:
    format_version: int
    embedding_model: str
    dimension: int
    chunk_config: dict[str, Any]
    created: str
    documents: tuple[ManifestDocument, ...]
    bm25: dict[str, float] = field(default_factory=dict)  # k1 and b the BM25 index was built with

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["documents"] = tuple(ManifestDocument(**d) for d in data["documents"])
        return cls(**data)


@dataclass(frozen=True)
class IndexSnapshot:
    """One loaded generation, swapped whole so a reader never mixes parts of two builds.

    Chunks are stored grouped by document, in manifest order; row i of `vectors` and of the
    FAISS and BM25 indexes is `chunks[i]`.
    """

    generation: str
    manifest: Manifest
    documents: tuple[Document, ...]
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray
    dense: faiss.Index
    bm25: bm25s.BM25 | None  # None when no chunk has a single indexable term

    def __post_init__(self) -> None:
        counts = [d.chunks for d in self.manifest.documents]
        rows = {sum(counts), len(self.chunks), len(self.vectors), self.dense.ntotal}
        if len(rows) != 1 or len(counts) != len(self.documents):
            raise IndexStoreError(f"index generation {self.generation} is inconsistent; run `rag index --rebuild`")

    @cached_property
    def _owners(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.documents)), [d.chunks for d in self.manifest.documents])

    def document_of(self, row: int) -> Document:
        """The document a chunk row belongs to; by position, since equal texts share a doc_id."""
        return self.documents[int(self._owners[row])]

    def chunk_groups(self) -> Iterator[tuple[Document, list[Chunk], np.ndarray]]:
        """Each document with its own chunks and vectors."""
        start = 0
        for doc, entry in zip(self.documents, self.manifest.documents, strict=True):
            end = start + entry.chunks
            yield doc, list(self.chunks[start:end]), self.vectors[start:end]
            start = end


class LocalStore(IndexStore):
    """Reads the current generation lazily and writes new ones; one writer at a time.

    `bm25_k1` and `bm25_b` (term-frequency saturation and length normalisation) default to bm25s's own;
    from `ivf_min_chunks` chunks on, dense search is approximate (IVF, `ivf_nprobe` lists per query).
    """

    def __init__(
        self,
        index_dir: Path,
        embedder: Embedder,
        bm25_k1: float = 1.5,
        bm25_b: float = 0.75,
        ivf_min_chunks: int = 50_000,
        ivf_nprobe: int = 32,
    ) -> None:
        self.index_dir = Path(index_dir)
        self.embedder = embedder
        self.bm25_params = {"k1": bm25_k1, "b": bm25_b}
        self.ivf_min_chunks = ivf_min_chunks
        self.ivf_nprobe = ivf_nprobe
        self._snapshot: IndexSnapshot | None = None
        self._load_lock = threading.Lock()
        self._write_lock = threading.Lock()

    # ---- reading -------------------------------------------------------------------------

    def is_built(self) -> bool:
        name = self._current_name()
        return name is not None and (self.index_dir / name / MANIFEST).is_file()

    def snapshot(self) -> IndexSnapshot:
        """The loaded index, read from disk on first use; raises if missing or incompatible."""
        snap = self._snapshot
        if snap is None:
            with self._load_lock:
                if self._snapshot is None:
                    self._snapshot = self._load_current()
                snap = self._snapshot
        return snap

    @property
    def manifest(self) -> Manifest:
        return self.snapshot().manifest

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        return self.snapshot().chunks

    def documents(self) -> list[Document]:
        return list(self.snapshot().documents)

    def document(self, doc_id: str) -> Document:
        for doc in self.snapshot().documents:
            if doc.doc_id == doc_id:
                return doc
        raise KeyError(f"no document {doc_id} in the index")

    def chunk_counts(self) -> dict[str, int]:
        return {d.doc_id: d.chunks for d in self.manifest.documents}

    def search(self, queries: list[str], vectors: np.ndarray, k: int) -> Candidates:
        index = self.snapshot()  # taken once, so a concurrent sync cannot mix generations
        if not queries or not index.chunks:
            return Candidates(
                np.zeros(0, dtype=np.int64),
                [],
                [],
                np.zeros((0, len(queries)), dtype=np.float32),
                np.zeros((0, len(queries)), dtype=np.float32),
                np.zeros(len(queries), dtype=np.float32),
            )
        _, dense_rows = index.dense.search(vectors, min(k, index.dense.ntotal))
        lexical = bm25_scores(index.bm25, queries, len(index.chunks))
        candidates = {int(r) for r in dense_rows.ravel() if r >= 0}
        for scores in lexical:
            top = min(k, len(scores))
            candidates.update(int(r) for r in np.argpartition(-scores, top - 1)[:top] if scores[r] > 0)
        rows = np.array(sorted(candidates), dtype=np.int64)
        return Candidates(
            rows=rows,
            chunks=[index.chunks[r] for r in rows],
            documents=[index.document_of(r) for r in rows],
            cosine=index.vectors[rows] @ vectors.T,
            lexical=np.stack([scores[rows] for scores in lexical], axis=1),
            lexical_best=np.array([scores.max() for scores in lexical]),
        )

    def _current_name(self) -> str | None:
        try:
            name = (self.index_dir / CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name or None

    def _load_current(self) -> IndexSnapshot:
        """Retries when a concurrent writer switched generations and removed the one being read."""
        for _ in range(LOAD_ATTEMPTS):
            name = self._current_name()
            if name is None or not (self.index_dir / name / MANIFEST).is_file():
                raise IndexMissingError(f"no index in {self.index_dir}; run `rag index` to build it")
            try:
                return self._read_generation(name)
            except FileNotFoundError:
                if self._current_name() == name:
                    break
        raise IndexStoreError(f"the index in {self.index_dir} is incomplete; run `rag index --rebuild`")

    def _read_manifest(self, name: str) -> Manifest:
        try:
            return Manifest.from_json((self.index_dir / name / MANIFEST).read_text(encoding="utf-8"))
        except (ValueError, TypeError, KeyError) as exc:
            raise IndexStoreError(
                f"the index manifest in {self.index_dir / name} is unreadable ({exc}); run `rag index --rebuild`"
            ) from exc

    def _check_compatible(self, manifest: Manifest) -> None:
        m = manifest
        check_compatible(
            f"the index in {self.index_dir}",
            m.format_version,
            FORMAT_VERSION,
            m.embedding_model,
            m.dimension,
            self.embedder,
        )

    def _read_generation(self, name: str) -> IndexSnapshot:
        path = self.index_dir / name
        manifest = self._read_manifest(name)
        self._check_compatible(manifest)
        bm25 = None
        if (path / BM25_DIR).is_dir():
            bm25 = bm25s.BM25.load(str(path / BM25_DIR), show_progress=False)
        dense = faiss.read_index(str(path / DENSE))
        set_nprobe(dense, self.ivf_nprobe)
        return IndexSnapshot(
            generation=name,
            manifest=manifest,
            documents=tuple(Document(**r) for r in _read_jsonl(path / DOCUMENTS)),
            chunks=tuple(Chunk(**r) for r in _read_jsonl(path / CHUNKS)),
            vectors=np.load(path / VECTORS),
            dense=dense,
            bm25=bm25,
        )

    # ---- writing -------------------------------------------------------------------------

    def sync(
        self,
        documents: list[Document],
        chunker: SupportsSplit,
        chunk_config: dict[str, Any],
        keep_sources: Iterable[str] = (),
        remove_missing: bool = True,
        rebuild: bool = False,
        progress: bool = False,
    ) -> SyncReport:
        """As `IndexStore.sync`, writing a new generation only when something changed.

        `rebuild` ignores the stored vectors and model; new BM25 parameters or a new title rewrite the
        index without re-embedding anything.
        """
        incoming = by_source(documents)
        keep = set(keep_sources)
        report = SyncReport()

        with self._writer():
            self._remove_generations(except_for=self._current_name())
            previous, stored = self._previous_entries(rebuild)
            reusable = stored is not None and stored.chunk_config == chunk_config
            bm25_current = stored is not None and stored.bm25 == self.bm25_params
            entries: dict[str, StoreEntry] = {}
            for source, doc in incoming.items():
                old = previous.get(source)
                if old is None:
                    report.added.append(source)
                elif old.document.doc_id != doc.doc_id:
                    report.changed.append(source)
                elif old.document.title != doc.title:  # same text, better title: nothing to re-embed
                    report.retitled.append(source)
                    entries[source] = StoreEntry(doc, old.chunks, old.vectors)
                    continue
                else:
                    report.unchanged.append(source)
                    entries[source] = old
                    continue
                entries[source] = StoreEntry(doc, [], None)
            for source, old in previous.items():
                if source in incoming:
                    continue
                if remove_missing and source not in keep:
                    report.removed.append(source)
                else:
                    report.unchanged.append(source)
                    entries[source] = old

            if reusable and bm25_current and not (report.added or report.changed or report.retitled or report.removed):
                return report
            if not reusable:
                entries = {s: StoreEntry(e.document, [], None) for s, e in entries.items()}
            report.embedded_chunks = embed_entries(entries.values(), chunker, self.embedder, progress)
            snapshot = self._write_generation([entries[s] for s in sorted(entries)], chunk_config, progress)
            self._snapshot = snapshot
        return report

    def copy_from(
        self, entries: Iterable[tuple[Document, list[Chunk], np.ndarray]], chunk_config: dict[str, Any], total: int
    ) -> int:
        """Replace the index by documents with their chunks and vectors as they are (no embedding).

        `PostgresStore.copy_from`'s counterpart: how `rag bench` fills an index of a million chunks.
        Returns the chunks written.
        """
        with self._writer():
            self._remove_generations(except_for=self._current_name())
            items = sorted((StoreEntry(d, list(c), v) for d, c, v in entries), key=lambda e: e.document.source)
            self._snapshot = self._write_generation(items, chunk_config, progress=total > 1000)
        return len(self._snapshot.chunks)

    @contextmanager
    def _writer(self) -> Iterator[None]:
        """Threads of this process queue up; another process holding the lock is an error, not a wait."""
        with self._write_lock:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            with open(self.index_dir / LOCK_FILE, "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError as exc:
                    raise IndexLockedError(
                        f"another process is updating the index in {self.index_dir}; wait for it to finish"
                    ) from exc
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _previous_entries(self, rebuild: bool) -> tuple[dict[str, StoreEntry], Manifest | None]:
        """Stored documents by source, and the manifest saying how they were indexed (None: not reusable).

        On rebuild the old index may be from another model or corrupt: only its documents are
        wanted (to honour keep_sources), and if they cannot be read there is nothing to keep.
        """
        name = self._current_name()
        if name is None or not self.is_built():
            return {}, None
        if rebuild:
            try:
                docs = [Document(**r) for r in _read_jsonl(self.index_dir / name / DOCUMENTS)]
            except (OSError, ValueError, TypeError):
                return {}, None
            return {d.source: StoreEntry(d, [], None) for d in docs}, None
        snap = self._snapshot if self._snapshot is not None and self._snapshot.generation == name else None
        snap = snap or self._read_generation(name)
        entries = {doc.source: StoreEntry(doc, chunks, vectors) for doc, chunks, vectors in snap.chunk_groups()}
        return entries, snap.manifest

    def _write_generation(
        self, entries: list[StoreEntry], chunk_config: dict[str, Any], progress: bool
    ) -> IndexSnapshot:
        dim = self.embedder.dim
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            embedding_model=self.embedder.model_name,
            dimension=dim,
            chunk_config=dict(chunk_config),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            documents=tuple(
                ManifestDocument(e.document.doc_id, e.document.source, e.document.title, len(e.chunks)) for e in entries
            ),
            bm25=dict(self.bm25_params),
        )
        chunks = [c for e in entries for c in e.chunks]
        vectors = np.concatenate(
            [np.zeros((0, dim), dtype=np.float32)] + [e.vectors for e in entries if e.vectors is not None]
        ).astype(np.float32, copy=False)
        dense = build_dense_index(vectors, self.ivf_min_chunks, self.ivf_nprobe)
        bm25 = build_bm25(chunks, self.bm25_params, progress)

        name = self._next_generation_name()
        path = self.index_dir / name
        path.mkdir()
        try:
            _write_jsonl(path / DOCUMENTS, (asdict(e.document) for e in entries))
            _write_jsonl(path / CHUNKS, (asdict(c) for c in chunks))
            np.save(path / VECTORS, vectors)
            faiss.write_index(dense, str(path / DENSE))
            if bm25 is not None:
                bm25.save(str(path / BM25_DIR), show_progress=False)
            (path / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
            _fsync_tree(path)
            _fsync_dir(self.index_dir)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        self._point_current_to(name)
        self._remove_generations(except_for=name)
        return IndexSnapshot(name, manifest, tuple(e.document for e in entries), tuple(chunks), vectors, dense, bm25)

    def _point_current_to(self, name: str) -> None:
        temp = self.index_dir / f"{CURRENT}.tmp"
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(name + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.index_dir / CURRENT)
        _fsync_dir(self.index_dir)

    def _generation_dirs(self) -> list[Path]:
        return [p for p in self.index_dir.glob(GENERATION_PREFIX + "*") if p.is_dir()]

    def _next_generation_name(self) -> str:
        suffixes = [p.name.removeprefix(GENERATION_PREFIX) for p in self._generation_dirs()]
        numbers = [int(s) for s in suffixes if s.isdigit()]
        return f"{GENERATION_PREFIX}{max(numbers, default=0) + 1:06d}"

    def _remove_generations(self, except_for: str | None) -> None:
        """Old generations after a switch, and partial ones left by a crashed build."""
        for path in self._generation_dirs():
            if path.name != except_for:
                shutil.rmtree(path, ignore_errors=True)
        (self.index_dir / f"{CURRENT}.tmp").unlink(missing_ok=True)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Every file and folder of a generation, including those bm25s and FAISS wrote themselves."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(Path(folder) / name, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(folder))
