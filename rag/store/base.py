"""What every index store offers the pipeline: keep the documents' chunks and vectors, and search them.

A store owns persistence and the two searches (dense by vector, lexical by BM25); fusing them into one
ranking is retrieval's job (`rag.retrieval.hybrid`), so every store ranks alike. A store is cheap to
construct and reads its index on first use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rag.dependencies import DependencyUnavailable
from rag.embedding.embedder import Embedder
from rag.types import Chunk, Document


class IndexStoreError(RuntimeError):
    """The index cannot be used as it is; the message says what to run."""


class DatabaseUnavailable(DependencyUnavailable, IndexStoreError):
    """PostgreSQL is unreachable, restarting, out of connections, or did not answer within its timeout."""

    part = "database"


class IndexMissingError(IndexStoreError):
    """Nothing has been indexed yet in this index dir."""


class IndexMismatchError(IndexStoreError):
    """The index was built by another embedding model or format; its vectors are not comparable."""


class IndexLockedError(IndexStoreError):
    """Another process is writing the index; two writers would corrupt it."""


class IndexWriteError(IndexStoreError):
    """The index could not be written (its disk is full or read-only); the previous index is unchanged."""


class SupportsSplit(Protocol):
    """Any chunker: the store only needs spans of a document, not a particular splitting strategy."""

    def split(self, document: Document) -> list[Chunk]: ...


@dataclass
class SyncReport:
    """Sources by what happened to them; `embedded_chunks` counts the texts actually sent to the embedder.

    Sources kept without being passed in (`keep_sources`, `remove_missing=False`) count as unchanged.
    """

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retitled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    embedded_chunks: int = 0


@dataclass(frozen=True)
class Candidates:
    """The chunks either search found for any of the queries, each scored against every query.

    Fusion needs a candidate's scores for all queries, not only the one that found it, and each
    query's best lexical score over the whole index (to scale BM25 against cosine). `rows` are the
    store's own chunk numbers, ascending: rankings break ties on them.
    """

    rows: np.ndarray  # (n,) int64
    chunks: list[Chunk]
    documents: list[Document]  # the document each chunk belongs to
    cosine: np.ndarray  # (n, queries)
    lexical: np.ndarray  # (n, queries) BM25 scores; 0 where no query term occurs
    lexical_best: np.ndarray  # (queries,) each query's highest BM25 score over the whole index

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class StoreEntry:
    """One document on its way into a store, with its chunks and their vectors (None: to be chunked and embedded)."""

    document: Document
    chunks: list[Chunk]
    vectors: np.ndarray | None


def by_source(documents: Iterable[Document]) -> dict[str, Document]:
    """The documents of a sync by source; two with one source would overwrite each other, so they are refused."""
    incoming: dict[str, Document] = {}
    for doc in documents:
        if doc.source in incoming:
            raise ValueError(f"two documents have the same source {doc.source!r}")
        incoming[doc.source] = doc
    return incoming


def embed_entries(entries: Iterable[StoreEntry], chunker: SupportsSplit, embedder: Embedder, progress: bool) -> int:
    """Chunk and embed every entry lacking vectors, in one batch; returns how many chunks were embedded.

    Citations show `text[start:end]` of the stored document, so a chunker that breaks this is refused.
    """
    pending = [e for e in entries if e.vectors is None]
    for entry in pending:
        entry.chunks = chunker.split(entry.document)
        for chunk in entry.chunks:
            if chunk.doc_id != entry.document.doc_id or entry.document.text[chunk.start : chunk.end] != chunk.text:
                raise ValueError(f"chunk {chunk.chunk_id} of {entry.document.source} does not match its document span")
    texts = [c.text for e in pending for c in e.chunks]
    vectors = embedder.encode(texts, progress=progress)
    start = 0
    for entry in pending:
        entry.vectors = vectors[start : start + len(entry.chunks)]
        start += len(entry.chunks)
    return len(texts)


def check_compatible(
    index: str, format_version: int, current_version: int, model: str, dim: int, embedder: Embedder
) -> None:
    """Refuse an index of another format or embedding model (its vectors are not comparable), saying what to run."""
    if format_version != current_version:
        raise IndexMismatchError(
            f"{index} has format version {format_version}, this version of rag reads version {current_version}; "
            "run `rag index --rebuild` to rebuild it"
        )
    if model != embedder.model_name or dim != embedder.dim:
        raise IndexMismatchError(
            f"{index} was built with embedding model {model!r} ({dim}-d) but the configured embedding model is "
            f"{embedder.model_name!r} ({embedder.dim}-d); run `rag index --rebuild` to re-embed the documents with "
            f"{embedder.model_name!r}"
        )


class IndexStore(ABC):
    """Documents, their chunks and vectors, kept in step by `sync` and searched by `search`."""

    def ping(self) -> None:
        """Raise `DependencyUnavailable` if the store cannot be read now (`/readyz`); files on this machine can."""
        return None

    @abstractmethod
    def is_built(self) -> bool:
        """Whether an index exists to answer from (it may still be empty)."""

    @abstractmethod
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
        """Bring the index in line with `documents`, embedding only what is new or changed.

        Sources absent from `documents` are dropped when `remove_missing`, except `keep_sources`
        (files that failed to read this time keep their previous version). `rebuild` re-embeds
        every document, e.g. after changing the model. Readers never see half a sync.
        """

    @abstractmethod
    def search(self, queries: list[str], vectors: np.ndarray, k: int) -> Candidates:
        """The `k` nearest chunks by vector and the `k` best by BM25, for each query, from one consistent index."""

    @abstractmethod
    def documents(self) -> list[Document]:
        """Every indexed document, in the store's order."""

    @abstractmethod
    def document(self, doc_id: str) -> Document:
        """One document by id; raises KeyError when it is not indexed."""

    @abstractmethod
    def chunk_counts(self) -> dict[str, int]:
        """How many chunks each document (by id) was split into."""
