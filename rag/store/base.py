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

from rag.types import Chunk, Document


class IndexStoreError(RuntimeError):
    """The index cannot be used as it is; the message says what to run."""


class IndexMissingError(IndexStoreError):
    """Nothing has been indexed yet in this index dir."""


class IndexMismatchError(IndexStoreError):
    """The index was built by another embedding model or format; its vectors are not comparable."""


class IndexLockedError(IndexStoreError):
    """Another process is writing the index; two writers would corrupt it."""


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


class IndexStore(ABC):
    """Documents, their chunks and vectors, kept in step by `sync` and searched by `search`."""

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
