"""The local store: documents, chunks, dense vectors (FAISS) and BM25 term frequencies in files.

The index is a list of immutable segments (`seg-<n>/`), each holding the documents one sync or merge
wrote, and a generation (`gen-<n>/manifest.json`) naming the live segments and the documents deleted
from them since. A sync writes only a segment for what is new or changed, then a new generation, and
fsyncs both before the `CURRENT` pointer moves to it (write-temp + os.replace): adding one document
writes that document only (0.27 s at 10k chunks, 0.36 s at 100k, under 3 s at 1M, where listing the
stored documents to compare them dominates), and a build killed at any point leaves the previous index
loadable. Segments are merged in the background of later syncs (`MERGE_FACTOR` of a size make one
larger one, as Lucene's log merge policy does), and a segment mostly deleted is rewritten, so
searches visit few segments. Unchanged documents keep their stored vectors: embedding is the slow part.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import faiss
import numpy as np

import rag.disk as disk
from rag.embedding.embedder import Embedder
from rag.store.base import (
    Candidates,
    IndexLockedError,
    IndexMissingError,
    IndexStore,
    IndexStoreError,
    IndexWriteError,
    StoreEntry,
    SupportsSplit,
    SyncReport,
    by_source,
    check_compatible,
    embed_entries,
)
from rag.store.bm25 import TermFrequencies, bm25_scores
from rag.store.dense import build_dense_index, set_nprobe
from rag.types import Chunk, Document

FORMAT_VERSION = 3  # 3: segments, BM25 scored from term frequencies at query time
CURRENT = "CURRENT"
LOCK_FILE = ".lock"
GENERATION_PREFIX = "gen-"
SEGMENT_PREFIX = "seg-"
MANIFEST = "manifest.json"
SEGMENT_MANIFEST = "segment.json"  # written last: a segment without it is a crashed write
DOCUMENTS = "documents.jsonl"
CHUNKS = "chunks.jsonl"
VECTORS = "vectors.npy"
DENSE = "dense.faiss"
LOAD_ATTEMPTS = 3
MERGE_FACTOR = 10  # this many segments of one size (in powers of ten of live chunks) are merged into one


@dataclass(frozen=True)
class ManifestDocument:
    doc_id: str
    source: str
    title: str
    chunks: int


@dataclass(frozen=True)
class SegmentRef:
    """A segment of a generation, and the positions of its documents deleted since it was written."""

    name: str
    deleted: tuple[int, ...] = ()


@dataclass(frozen=True)
class Manifest:
    format_version: int
    embedding_model: str
    dimension: int
    chunk_config: dict[str, Any]
    created: str
    segments: tuple[SegmentRef, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["segments"] = tuple(SegmentRef(s["name"], tuple(s["deleted"])) for s in data.get("segments", ()))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Segment:
    """Documents written together, in order, with their chunks.

    Row i of `vectors`, `dense` and `lexical` is `chunks[i]`; a segment never changes once written.
    """

    name: str
    documents: tuple[Document, ...]
    counts: tuple[int, ...]  # chunks per document
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray
    dense: faiss.Index
    lexical: TermFrequencies

    def __post_init__(self) -> None:
        rows = {sum(self.counts), len(self.chunks), len(self.vectors), self.dense.ntotal, len(self.lexical.lengths)}
        if len(rows) != 1 or len(self.counts) != len(self.documents):
            raise IndexStoreError(f"index segment {self.name} is inconsistent; run `rag index --rebuild`")

    @cached_property
    def starts(self) -> np.ndarray:
        """Each document's first row."""
        return np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def live(self, deleted: Iterable[int]) -> np.ndarray:
        """Which rows belong to documents not deleted."""
        mask = np.ones(len(self.chunks), dtype=bool)
        for position in deleted:
            mask[self.starts[position] : self.starts[position + 1]] = False
        return mask


@dataclass(frozen=True)
class IndexSnapshot:
    """One loaded generation, swapped whole so a reader never mixes parts of two builds.

    Rows number the segments' chunks end to end, deleted ones included (they never match a search).
    """

    generation: str
    manifest: Manifest
    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        refs = self.manifest.segments
        if [r.name for r in refs] != [s.name for s in self.segments] or any(
            p < 0 or p >= len(s.documents) for r, s in zip(refs, self.segments, strict=True) for p in r.deleted
        ):
            raise IndexStoreError(f"index generation {self.generation} is inconsistent; run `rag index --rebuild`")

    @cached_property
    def live(self) -> list[np.ndarray]:
        return [s.live(r.deleted) for s, r in zip(self.segments, self.manifest.segments, strict=True)]

    @cached_property
    def offsets(self) -> np.ndarray:
        """Each segment's first row."""
        return np.concatenate([[0], np.cumsum([len(s.chunks) for s in self.segments])]).astype(np.int64)

    @cached_property
    def live_documents(self) -> list[tuple[Document, int, int]]:
        """Each live document with its segment and position there, by source."""
        found = [
            (doc, i, p)
            for i, (segment, ref) in enumerate(zip(self.segments, self.manifest.segments, strict=True))
            for p, doc in enumerate(segment.documents)
            if p not in set(ref.deleted)
        ]
        return sorted(found, key=lambda item: item[0].source)

    @property
    def documents(self) -> tuple[Document, ...]:
        return tuple(doc for doc, _, _ in self.live_documents)

    @property
    def live_chunks(self) -> int:
        return sum(int(mask.sum()) for mask in self.live)

    @cached_property
    def chunks(self) -> tuple[Chunk, ...]:
        """The live chunks, in row order (as `vectors`)."""
        pairs = zip(self.segments, self.live, strict=True)
        return tuple(c for s, mask in pairs for c, keep in zip(s.chunks, mask, strict=True) if keep)

    @cached_property
    def vectors(self) -> np.ndarray:
        """The live chunks' vectors, in row order (as `chunks`); a copy, for tests and tools."""
        return np.concatenate(
            [np.zeros((0, self.manifest.dimension), dtype=np.float32)]
            + [s.vectors[mask] for s, mask in zip(self.segments, self.live, strict=True)]
        )

    def chunk_groups(self) -> Iterator[tuple[Document, list[Chunk], np.ndarray]]:
        """Each live document with its own chunks and vectors."""
        for doc, i, p in self.live_documents:
            segment = self.segments[i]
            start, end = segment.starts[p], segment.starts[p + 1]
            yield doc, list(segment.chunks[start:end]), segment.vectors[start:end]

    def chunk_counts(self) -> dict[str, int]:
        return {doc.doc_id: self.segments[i].counts[p] for doc, i, p in self.live_documents}

    def _locate(self, row: int) -> tuple[Segment, int]:
        i = int(np.searchsorted(self.offsets, row, side="right")) - 1
        return self.segments[i], row - int(self.offsets[i])

    def chunk(self, row: int) -> Chunk:
        segment, local = self._locate(row)
        return segment.chunks[local]

    def document_of(self, row: int) -> Document:
        """The document a chunk row belongs to; by position, since equal texts share a doc_id."""
        segment, local = self._locate(row)
        return segment.documents[int(np.searchsorted(segment.starts, local, side="right")) - 1]

    def vector(self, row: int) -> np.ndarray:
        segment, local = self._locate(row)
        return segment.vectors[local]

    def dense_search(self, vectors: np.ndarray, k: int) -> np.ndarray:
        """Each query's `k` nearest live rows over all segments (fewer where fewer are live), as a list per query."""
        scores, rows = [], []
        for segment, mask, offset in zip(self.segments, self.live, self.offsets, strict=False):
            dead = len(mask) - int(mask.sum())
            if dead == len(mask):
                continue
            found_scores, found = segment.dense.search(vectors, min(k + dead, segment.dense.ntotal))
            alive = (found >= 0) & mask[np.maximum(found, 0)]
            scores.append(np.where(alive, found_scores, -np.inf))
            rows.append(np.where(alive, found + offset, -1))
        if not rows:
            return np.full((len(vectors), 0), -1, dtype=np.int64)
        all_scores, all_rows = np.concatenate(scores, axis=1), np.concatenate(rows, axis=1)
        order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(all_rows, order, axis=1)

    def lexical_scores(self, queries: list[str], k1: float, b: float) -> list[np.ndarray]:
        return bm25_scores([(s.lexical, m) for s, m in zip(self.segments, self.live, strict=True)], queries, k1, b)


class LocalStore(IndexStore):
    """Reads the current generation lazily and writes new ones; one writer at a time.

    `bm25_k1` and `bm25_b` (term-frequency saturation and length normalisation) apply at query time;
    from `ivf_min_chunks` chunks on, a segment's dense search is approximate (IVF, `ivf_nprobe` lists per query).
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
        self.k1 = bm25_k1
        self.b = bm25_b
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
        return self.snapshot().chunk_counts()

    def search(self, queries: list[str], vectors: np.ndarray, k: int) -> Candidates:
        index = self.snapshot()  # taken once, so a concurrent sync cannot mix generations
        if not queries or not index.live_chunks:
            return Candidates(
                np.zeros(0, dtype=np.int64),
                [],
                [],
                np.zeros((0, len(queries)), dtype=np.float32),
                np.zeros((0, len(queries)), dtype=np.float32),
                np.zeros(len(queries), dtype=np.float32),
            )
        dense_rows = index.dense_search(vectors, k)
        lexical = index.lexical_scores(queries, self.k1, self.b)
        candidates = {int(r) for r in dense_rows.ravel() if r >= 0}
        for scores in lexical:
            top = min(k, len(scores))
            candidates.update(int(r) for r in np.argpartition(-scores, top - 1)[:top] if scores[r] > 0)
        rows = np.array(sorted(candidates), dtype=np.int64)
        return Candidates(
            rows=rows,
            chunks=[index.chunk(r) for r in rows],
            documents=[index.document_of(r) for r in rows],
            cosine=np.stack([index.vector(r) for r in rows]) @ vectors.T,
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
        """Retries when a concurrent writer switched generations and removed a segment being read."""
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

    def _read_generation(self, name: str, loaded: Iterable[Segment] = ()) -> IndexSnapshot:
        """A generation, reusing the segments already in memory (`loaded`): they never change on disk."""
        manifest = self._read_manifest(name)
        check_compatible(
            f"the index in {self.index_dir}",
            manifest.format_version,
            FORMAT_VERSION,
            manifest.embedding_model,
            manifest.dimension,
            self.embedder,
        )
        cache = {s.name: s for s in loaded}
        segments = tuple(cache.get(r.name) or self._read_segment(r.name) for r in manifest.segments)
        return IndexSnapshot(name, manifest, segments)

    def _read_segment(self, name: str) -> Segment:
        path = self.index_dir / name
        counts = [d["chunks"] for d in json.loads((path / SEGMENT_MANIFEST).read_text(encoding="utf-8"))["documents"]]
        dense = faiss.read_index(str(path / DENSE))
        set_nprobe(dense, self.ivf_nprobe)
        return Segment(
            name=name,
            documents=tuple(Document(**r) for r in _read_jsonl(path / DOCUMENTS)),
            counts=tuple(counts),
            chunks=tuple(Chunk(**r) for r in _read_jsonl(path / CHUNKS)),
            vectors=np.load(path / VECTORS),
            dense=dense,
            lexical=TermFrequencies.load(path),
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
        """As `IndexStore.sync`, writing a segment of the new and changed documents only when something changed.

        `rebuild` ignores the stored vectors and model; a new title is stored without re-embedding.
        """
        incoming = by_source(documents)
        keep = set(keep_sources)
        report = SyncReport()

        with self._writer():
            self._remove_unreferenced(self._current_name())
            base = None if rebuild else self._current_snapshot()
            reusable = base is not None and base.manifest.chunk_config == chunk_config
            previous = self._stored_entries(base) if base is not None else self._stored_documents()
            written: list[StoreEntry] = []  # into the new segment
            deleted: set[tuple[int, int]] = set()  # (segment, position) of replaced and removed documents
            kept: list[StoreEntry] = []
            for source, doc in incoming.items():
                old, where = previous.get(source, (None, None))
                if old is None:
                    report.added.append(source)
                    written.append(StoreEntry(doc, [], None))
                    continue
                if old.document.doc_id != doc.doc_id:
                    report.changed.append(source)
                    written.append(StoreEntry(doc, [], None))
                elif (old.document.title, old.document.places) != (doc.title, doc.places):  # nothing to re-embed
                    report.retitled.append(source)
                    written.append(StoreEntry(doc, old.chunks, old.vectors))
                else:
                    report.unchanged.append(source)
                    kept.append(old)
                    continue
                if where is not None:
                    deleted.add(where)
            for source, (old, where) in previous.items():
                if source in incoming:
                    continue
                if remove_missing and source not in keep:
                    report.removed.append(source)
                    if where is not None:
                        deleted.add(where)
                else:
                    report.unchanged.append(source)
                    kept.append(old)

            if reusable and not (report.added or report.changed or report.retitled or report.removed):
                return report
            if not reusable:  # another chunking or a rebuild: everything is embedded again, into one segment
                base, deleted = None, set()
                written = [StoreEntry(e.document, [], None) for e in [*written, *kept]]
            report.embedded_chunks = embed_entries(written, chunker, self.embedder, progress)
            self._snapshot = self._commit(base, written, deleted, chunk_config, progress)
        return report

    def copy_from(
        self, entries: Iterable[tuple[Document, list[Chunk], np.ndarray]], chunk_config: dict[str, Any], total: int
    ) -> int:
        """Replace the index by documents with their chunks and vectors as they are (no embedding).

        `PostgresStore.copy_from`'s counterpart: how `rag bench` fills an index of a million chunks.
        Returns the chunks written.
        """
        with self._writer():
            self._remove_unreferenced(self._current_name())
            items = sorted((StoreEntry(d, list(c), v) for d, c, v in entries), key=lambda e: e.document.source)
            self._snapshot = self._commit(None, items, set(), chunk_config, progress=total > 1000)
        return self._snapshot.live_chunks

    @contextmanager
    def _writer(self) -> Iterator[None]:
        """Threads of this process queue up; another process holding the lock is an error, not a wait.

        A full or read-only disk becomes an `IndexWriteError` naming it (the commit has cleaned up after itself).
        """
        with self._write_lock:
            try:
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
            except OSError as exc:
                message = disk.describe(exc, self.index_dir, "RAG_INDEX_DIR")
                if message is None:
                    raise
                unchanged = "the previous index is unchanged" if self.is_built() else "nothing was indexed"
                raise IndexWriteError(f"{message}; {unchanged}") from exc

    def _current_snapshot(self) -> IndexSnapshot | None:
        """The committed generation (from memory when it is the loaded one); None when there is none."""
        name = self._current_name()
        if name is None or not self.is_built():
            return None
        snap = self._snapshot
        if snap is not None and snap.generation == name:
            return snap
        return self._read_generation(name, snap.segments if snap is not None else ())

    @staticmethod
    def _stored_entries(snapshot: IndexSnapshot) -> dict[str, tuple[StoreEntry, tuple[int, int] | None]]:
        """Stored documents by source, with their chunks, vectors and place (segment, position)."""
        groups = snapshot.chunk_groups()
        return {
            doc.source: (StoreEntry(doc, chunks, vectors), (i, p))
            for (doc, i, p), (_, chunks, vectors) in zip(snapshot.live_documents, groups, strict=True)
        }

    def _stored_documents(self) -> dict[str, tuple[StoreEntry, tuple[int, int] | None]]:
        """On rebuild the old index may be from another model, format or corrupt: only its documents are
        wanted (to honour keep_sources), and if they cannot be read there is nothing to keep."""
        name = self._current_name()
        if name is None:
            return {}
        try:
            manifest = json.loads((self.index_dir / name / MANIFEST).read_text(encoding="utf-8"))
            files = [self.index_dir / s["name"] / DOCUMENTS for s in manifest.get("segments", ())]
            deleted = [set(s["deleted"]) for s in manifest.get("segments", ())]
            if not files:  # format 2 and before: one folder per generation
                files, deleted = [self.index_dir / name / DOCUMENTS], [set()]
            docs = [
                Document(**r)
                for path, gone in zip(files, deleted, strict=True)
                for p, r in enumerate(_read_jsonl(path))
                if p not in gone
            ]
        except (OSError, ValueError, TypeError, KeyError):
            return {}
        return {d.source: (StoreEntry(d, [], None), None) for d in docs}

    def _commit(
        self,
        base: IndexSnapshot | None,
        written: list[StoreEntry],
        deleted: set[tuple[int, int]],
        chunk_config: dict[str, Any],
        progress: bool,
    ) -> IndexSnapshot:
        """Write the new segment and any merges, then the generation naming them, then switch to it."""
        pairs: list[tuple[Segment, set[int]]] = []
        if base is not None:
            for i, (segment, ref) in enumerate(zip(base.segments, base.manifest.segments, strict=True)):
                pairs.append((segment, set(ref.deleted) | {p for s, p in deleted if s == i}))
        new_segments: list[Segment] = []
        name = ""
        try:
            if written:
                new_segments.append(self._write_segment(written, progress))
                pairs.append((new_segments[-1], set()))
            while merge := _merge_group([(len(s.chunks), int(s.live(d).sum())) for s, d in pairs]):
                entries = [
                    StoreEntry(
                        doc, list(s.chunks[s.starts[p] : s.starts[p + 1]]), s.vectors[s.starts[p] : s.starts[p + 1]]
                    )
                    for s, d in (pairs[i] for i in merge)
                    for p, doc in enumerate(s.documents)
                    if p not in d
                ]
                pairs = [pair for i, pair in enumerate(pairs) if i not in merge]
                if entries:
                    new_segments.append(self._write_segment(entries, progress))
                    pairs.append((new_segments[-1], set()))
            manifest = Manifest(
                format_version=FORMAT_VERSION,
                embedding_model=self.embedder.model_name,
                dimension=self.embedder.dim,
                chunk_config=dict(chunk_config),
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                segments=tuple(SegmentRef(s.name, tuple(sorted(d))) for s, d in pairs),
            )
            name = self._next_name(GENERATION_PREFIX)
            path = self.index_dir / name
            path.mkdir()
            (path / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
            _fsync_tree(path)
            _fsync_dir(self.index_dir)
            self._point_current_to(name)
        except BaseException:
            if not name or self._current_name() != name:  # not switched: what it wrote is garbage, on a full disk
                for folder in [s.name for s in new_segments] + ([name] if name else []):
                    shutil.rmtree(self.index_dir / folder, ignore_errors=True)
                with contextlib.suppress(OSError):
                    (self.index_dir / f"{CURRENT}.tmp").unlink(missing_ok=True)
            raise
        self._remove_unreferenced(name)
        return IndexSnapshot(name, manifest, tuple(s for s, _ in pairs))

    def _write_segment(self, entries: list[StoreEntry], progress: bool) -> Segment:
        dim = self.embedder.dim
        chunks = [c for e in entries for c in e.chunks]
        vectors = np.concatenate(
            [np.zeros((0, dim), dtype=np.float32)] + [e.vectors for e in entries if e.vectors is not None]
        ).astype(np.float32, copy=False)
        segment = Segment(
            name=self._next_name(SEGMENT_PREFIX),
            documents=tuple(e.document for e in entries),
            counts=tuple(len(e.chunks) for e in entries),
            chunks=tuple(chunks),
            vectors=vectors,
            dense=build_dense_index(vectors, self.ivf_min_chunks, self.ivf_nprobe),
            lexical=TermFrequencies.of([c.text for c in chunks]),
        )
        path = self.index_dir / segment.name
        path.mkdir()
        try:
            _write_jsonl(path / DOCUMENTS, (asdict(e.document) for e in entries))
            _write_jsonl(path / CHUNKS, (asdict(c) for c in chunks))
            disk.save_array(path / VECTORS, vectors)
            disk.write_bytes(path / DENSE, faiss.serialize_index(segment.dense))  # faiss.write_index: no errno
            segment.lexical.save(path)
            documents = [
                asdict(ManifestDocument(d.doc_id, d.source, d.title, n))
                for d, n in zip(segment.documents, segment.counts, strict=True)
            ]
            manifest = json.dumps({"documents": documents}, ensure_ascii=False)
            (path / SEGMENT_MANIFEST).write_text(manifest, encoding="utf-8")
            _fsync_tree(path)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # half a segment, on a disk maybe full
            raise
        return segment

    def _point_current_to(self, name: str) -> None:
        temp = self.index_dir / f"{CURRENT}.tmp"
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(name + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.index_dir / CURRENT)
        _fsync_dir(self.index_dir)

    def _next_name(self, prefix: str) -> str:
        suffixes = [p.name.removeprefix(prefix) for p in self.index_dir.glob(prefix + "*")]
        numbers = [int(s) for s in suffixes if s.isdigit()]
        return f"{prefix}{max(numbers, default=0) + 1:06d}"

    def _remove_unreferenced(self, current: str | None) -> None:
        """Generations other than `current` and segments it does not name: replaced ones, and crashed writes.

        When the current generation cannot be read, its segments are unknown and none is removed.
        """
        for path in self.index_dir.glob(GENERATION_PREFIX + "*"):
            if path.is_dir() and path.name != current:
                shutil.rmtree(path, ignore_errors=True)
        (self.index_dir / f"{CURRENT}.tmp").unlink(missing_ok=True)
        try:
            names = {r.name for r in self._read_manifest(current).segments} if current else set()
        except (OSError, IndexStoreError):
            return
        for path in self.index_dir.glob(SEGMENT_PREFIX + "*"):
            if path.is_dir() and path.name not in names:
                shutil.rmtree(path, ignore_errors=True)


def _merge_group(segments: list[tuple[int, int]]) -> list[int]:
    """Which segments (rows, live rows) to merge next: `MERGE_FACTOR` of one size, and any mostly deleted."""
    wasteful = {i for i, (rows, live) in enumerate(segments) if 2 * live < rows}
    levels: dict[int, list[int]] = {}
    for i, (_, live) in enumerate(segments):
        levels.setdefault(int(math.log10(max(live, 1))), []).append(i)
    for group in levels.values():
        if len(group) >= MERGE_FACTOR:
            return sorted(wasteful | set(group))
    return sorted(wasteful)


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
    """Every file and folder under `root`, including those FAISS and scipy wrote themselves."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(Path(folder) / name, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(folder))
