"""The index store: where documents, chunks and their vectors live, and how they are searched.

`base.IndexStore` is the interface the pipeline uses (sync, search, documents); each backend is one
module: `local` keeps FAISS and BM25 files in segments named by atomically switched generations;
`postgres` keeps everything in PostgreSQL with pgvector, shared by every app replica.
To add a store, subclass `IndexStore` in a module of its own and construct it in `create_store`.
`dense` chooses the FAISS index (exact or IVF) and `bm25` is the lexical side every store shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.embedding.embedder import Embedder
    from rag.settings import Settings
    from rag.store.base import IndexStore


def create_store(settings: Settings, embedder: Embedder) -> IndexStore:
    """The configured store, not yet loaded (it reads its index on first use)."""
    if settings.store == "postgres":
        from rag.store.postgres import PostgresStore

        assert settings.database_url is not None  # Settings refuses postgres without one
        return PostgresStore(
            settings.database_url.get_secret_value(),
            embedder,
            settings.bm25_k1,
            settings.bm25_b,
            settings.hnsw_ef_search,
            timeout_s=settings.database_timeout_s,
        )
    from rag.store.local import LocalStore

    return LocalStore(
        settings.index_dir,
        embedder,
        settings.bm25_k1,
        settings.bm25_b,
        settings.ivf_min_chunks,
        settings.ivf_nprobe,
    )
