"""The PostgreSQL store: documents, chunks, pgvector vectors (HNSW, cosine) and BM25 postings in one database.

For a team that outgrows one machine: every app replica reads and writes the same collection, and
PostgreSQL's transactions give what the local store gets from switching generation folders. A sync is
one transaction under an advisory lock, so a killed sync leaves the previous state, two writers cannot
interleave, and a reader (one REPEATABLE READ transaction per search) never sees half a document.

Lexical search is the same BM25 as the local store's (bm25s's Lucene variant and tokenizer), computed
in SQL from stored postings (term, chunk, term frequency, chunk length) and per-term document
frequencies, so both stores score alike; PostgreSQL's own full-text ranking (ts_rank) is not BM25 and
would rank differently. k1 and b apply at query time: changing them re-indexes nothing. A term found in
most chunks would make every query read all its postings, so the top k are looked for among each query
term's highest-impact postings (`POOL_PER_TERM`, pooled over the queries), scored exactly: exact wherever
a term has fewer postings than that, as on the seeds and SQuAD (docs/BENCHMARKS-TEAM.md measures it at
100k chunks). Every table's name starts with `rag_`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from tqdm import tqdm

from rag.embedding.embedder import Embedder
from rag.store.base import (
    Candidates,
    DatabaseUnavailable,
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
from rag.store.bm25 import bm25_tokenize, lucene_idf, query_terms
from rag.types import Chunk, Document, places_of

FORMAT_VERSION = 1
# pg_try_advisory_xact_lock key: "rag" in ASCII, the same for every writer of the database
WRITER_LOCK = 0x726167
FROZEN_GRACE_S = 2.0  # past statement_timeout, how long a read waits on a server that answers nothing
COPY_BATCH = 2000  # rows per COPY round while writing, with a progress bar per batch
# BM25 top-k without reading every posting of a common term: each query term's postings with the highest
# impact (its BM25 weight in the chunk, as of writing) are the pool, scored exactly; at least this many
# per term, and 10 per result asked for.
POOL_PER_TERM = 200

_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS rag_manifest (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    format_version int NOT NULL,
    embedding_model text NOT NULL,
    dimension int NOT NULL,
    chunk_config jsonb NOT NULL,
    generation bigint NOT NULL,
    chunks bigint NOT NULL,
    tokens bigint NOT NULL,
    updated timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS rag_documents (
    source text PRIMARY KEY,
    doc_id text NOT NULL,
    title text NOT NULL,
    text text NOT NULL,
    places jsonb NOT NULL DEFAULT '[]'
);
-- an index built before pages and slides were kept: its documents have none until re-read. Altered only when
-- the column is missing: ALTER TABLE locks the table out even when it changes nothing, and a writer holds that
-- lock for its whole transaction, which would stop every reader for as long
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'rag_documents' AND column_name = 'places') THEN
        ALTER TABLE rag_documents ADD COLUMN places jsonb NOT NULL DEFAULT '[]';
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS rag_documents_doc_id ON rag_documents (doc_id);
CREATE TABLE IF NOT EXISTS rag_chunks (
    row bigint PRIMARY KEY,
    source text NOT NULL REFERENCES rag_documents ON DELETE CASCADE,
    chunk_id text NOT NULL,
    index int NOT NULL,
    start int NOT NULL,
    "end" int NOT NULL,
    length int NOT NULL,
    embedding vector({dim}) NOT NULL
);
CREATE INDEX IF NOT EXISTS rag_chunks_source ON rag_chunks (source);
{hnsw_index};
CREATE TABLE IF NOT EXISTS rag_postings (
    term text NOT NULL,
    row bigint NOT NULL REFERENCES rag_chunks ON DELETE CASCADE,
    tf int NOT NULL,
    length int NOT NULL,
    impact real NOT NULL,
    PRIMARY KEY (term, row)
);
CREATE INDEX IF NOT EXISTS rag_postings_row ON rag_postings (row);
CREATE INDEX IF NOT EXISTS rag_postings_impact ON rag_postings (term, impact DESC);
CREATE TABLE IF NOT EXISTS rag_terms (term text PRIMARY KEY, df int NOT NULL);
"""
_HNSW_INDEX = (
    "CREATE INDEX IF NOT EXISTS rag_chunks_embedding ON rag_chunks USING hnsw (embedding vector_cosine_ops) "
    "WITH (m = {hnsw_m}, ef_construction = {hnsw_ef_construction})"
)
# Building the indexes once over loaded rows (the HNSW graph above all) is several times faster than
# growing them row by row (pgvector's advice); the build's memory, per pgvector, should hold the graph.
BULK_BUILD_MEMORY = "1GB"
_TABLES = ("rag_postings", "rag_terms", "rag_chunks", "rag_documents", "rag_manifest")


@dataclass(frozen=True)
class DatabaseManifest:
    """How the stored vectors were made, and the collection's size (BM25's N and average length)."""

    format_version: int
    embedding_model: str
    dimension: int
    chunk_config: dict[str, Any]
    generation: int  # +1 per committed sync: how replicas notice a newer index state
    chunks: int
    tokens: int


class PostgresStore(IndexStore):
    """One connection per thread, opened on first use; nothing cached but the document list of one generation.

    `hnsw_ef_search` is the HNSW candidate list per query (recall against speed, never below k);
    `hnsw_m` and `hnsw_ef_construction` shape the graph when the tables are first created.
    """

    def __init__(
        self,
        database_url: str,
        embedder: Embedder,
        bm25_k1: float = 1.5,
        bm25_b: float = 0.75,
        hnsw_ef_search: int = 400,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        timeout_s: float = 10.0,
    ) -> None:
        self.database_url = database_url
        self.timeout_s = timeout_s
        self.embedder = embedder
        self.k1 = bm25_k1
        self.b = bm25_b
        self.hnsw_ef_search = hnsw_ef_search
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construction = hnsw_ef_construction
        self._local = threading.local()
        self._documents: tuple[int, list[Document]] | None = None

    # ---- connections ---------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        """This thread's connection; a broken one (the database restarted) is replaced, so a replica recovers
        on the first request after the database is back."""
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            try:
                conn = psycopg.connect(
                    self.database_url, autocommit=True, connect_timeout=max(2, round(self.timeout_s))
                )
            except psycopg.OperationalError as exc:
                raise DatabaseUnavailable(
                    f"cannot reach the database ({_first_line(exc)}); check database_url"
                ) from exc
            except psycopg.Error as exc:  # a malformed URL: no retry will help
                raise IndexStoreError(f"database_url is not a usable PostgreSQL URL: {_first_line(exc)}") from exc
            with _unavailable_as_503():
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                register_vector(conn)
            self._local.conn = conn
        return conn

    @contextmanager
    def _reading(self) -> Iterator[psycopg.Cursor]:
        """One consistent snapshot of the database for everything read inside, within `timeout_s`."""
        conn = self._connection()
        # statement_timeout is the server's own bound; a server that answers nothing at all (frozen, its host
        # paused) is cut off from this side a little later, so that no question waits on it for ever
        watchdog = threading.Timer(self.timeout_s + FROZEN_GRACE_S, _cut_off, (conn,))
        watchdog.daemon = True
        watchdog.start()
        try:
            with _unavailable_as_503(), conn.transaction(), conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cur.execute(f"SET LOCAL statement_timeout = {int(self.timeout_s * 1000)}")
                yield cur
        finally:
            watchdog.cancel()

    def ping(self) -> None:
        with self._reading() as cur:
            cur.execute("SELECT 1")

    # ---- reading -------------------------------------------------------------------------

    def is_built(self) -> bool:
        with self._reading() as cur:
            return self._manifest(cur) is not None

    def generation(self) -> int:
        """The committed index state: it changes with every sync, through any replica."""
        with self._reading() as cur:
            return self._checked_manifest(cur).generation

    def documents(self) -> list[Document]:
        with self._reading() as cur:
            generation = self._checked_manifest(cur).generation
            cached = self._documents
            if cached is None or cached[0] != generation:
                cur.execute("SELECT doc_id, title, source, text, places FROM rag_documents ORDER BY source")
                cached = (generation, [Document(*row) for row in cur.fetchall()])
                self._documents = cached
        return list(cached[1])

    def document(self, doc_id: str) -> Document:
        with self._reading() as cur:
            cur.execute(
                "SELECT doc_id, title, source, text, places FROM rag_documents WHERE doc_id = %s LIMIT 1", (doc_id,)
            )
            row = cur.fetchone()
        if row is None:
            raise KeyError(f"no document {doc_id} in the index")
        return Document(*row)

    def chunk_counts(self) -> dict[str, int]:
        with self._reading() as cur:
            cur.execute(
                "SELECT d.doc_id, count(c.row) FROM rag_documents d LEFT JOIN rag_chunks c USING (source) "
                "GROUP BY d.doc_id"
            )
            return {doc_id: int(n) for doc_id, n in cur.fetchall()}

    def search(self, queries: list[str], vectors: np.ndarray, k: int) -> Candidates:
        with self._reading() as cur:
            manifest = self._checked_manifest(cur)
            if not queries or not manifest.chunks:
                return _no_candidates(len(queries))
            cur.execute(f"SET LOCAL hnsw.ef_search = {max(self.hnsw_ef_search, k)}")
            found: set[int] = set()
            for vector in vectors:
                cur.execute("SELECT row FROM rag_chunks ORDER BY embedding <=> %s LIMIT %s", (vector, k))
                found.update(r for (r,) in cur.fetchall())
            weights = self._query_weights(cur, queries, manifest)
            pool: set[int] = set(found)
            for terms, _ in weights:
                if terms:
                    cur.execute(
                        "SELECT DISTINCT p.row FROM unnest(%s::text[]) AS t(term) CROSS JOIN LATERAL "
                        "(SELECT row FROM rag_postings WHERE term = t.term ORDER BY impact DESC LIMIT %s) p",
                        (terms, max(POOL_PER_TERM, 10 * k)),
                    )
                    pool.update(r for (r,) in cur.fetchall())
            # every pooled row scored exactly for every query, once: the lexical top k come from these scores
            # and so do the candidates' lexical columns
            pooled = np.array(sorted(pool), dtype=np.int64)
            scores = np.zeros((len(pooled), len(queries)), dtype=np.float32)
            position = {int(r): i for i, r in enumerate(pooled)}
            for q, (terms, term_weights) in enumerate(weights):
                if terms:
                    params = self._bm25_params(terms, term_weights, manifest) | {"rows": list(position)}
                    cur.execute(self._bm25_sql("", "WHERE p.row = ANY(%(rows)s)"), params)
                    for r, score in cur.fetchall():
                        scores[position[r], q] = score
            lexical_best = scores.max(axis=0) if len(pooled) else np.zeros(len(queries), dtype=np.float32)
            for q in range(len(queries)):
                top = min(k, len(pooled))
                found.update(int(pooled[i]) for i in np.argpartition(-scores[:, q], top - 1)[:top] if scores[i, q] > 0)
            rows = np.array(sorted(found), dtype=np.int64)
            lexical = scores[[position[int(r)] for r in rows]]
            cur.execute(
                'SELECT c.row, c.chunk_id, d.doc_id, c.index, c.start, c."end", c.embedding, d.source '
                "FROM rag_chunks c JOIN rag_documents d USING (source) WHERE c.row = ANY(%s) ORDER BY c.row",
                (rows.tolist(),),
            )
            fetched = cur.fetchall()
            sources = sorted({row[7] for row in fetched})
            cur.execute(
                "SELECT source, doc_id, title, text, places FROM rag_documents WHERE source = ANY(%s)", (sources,)
            )
            by_source = {
                source: Document(doc_id, title, source, text, places)
                for source, doc_id, title, text, places in cur.fetchall()
            }
        documents = [by_source[row[7]] for row in fetched]
        chunks = [
            Chunk(chunk_id, doc_id, index, doc.text[start:end], start, end)
            for (_, chunk_id, doc_id, index, start, end, _, _), doc in zip(fetched, documents, strict=True)
        ]
        embeddings = np.stack([row[6].to_numpy().astype(np.float32, copy=False) for row in fetched])
        return Candidates(
            rows=rows,
            chunks=chunks,
            documents=documents,
            cosine=embeddings @ np.asarray(vectors, dtype=np.float32).T,
            lexical=lexical,
            lexical_best=lexical_best,
        )

    def _query_weights(
        self, cur: psycopg.Cursor, queries: list[str], manifest: DatabaseManifest
    ) -> list[tuple[list[str], list[float]]]:
        """Each query's indexed terms with their weights: Lucene's idf times how often the query repeats the term."""
        tokenized = query_terms(queries)
        wanted = sorted({t for counts in tokenized for t in counts})
        cur.execute("SELECT term, df FROM rag_terms WHERE term = ANY(%s)", (wanted,))
        df = dict(cur.fetchall())
        result = []
        for counts in tokenized:
            terms = [t for t in counts if t in df]
            result.append((terms, [counts[t] * lucene_idf(manifest.chunks, df[t]) for t in terms]))
        return result

    def _bm25_params(self, terms: list[str], weights: list[float], manifest: DatabaseManifest) -> dict[str, Any]:
        average = manifest.tokens / manifest.chunks if manifest.chunks else 1.0
        return {"terms": terms, "weights": weights, "k1": self.k1, "b": self.b, "avgdl": max(average, 1e-9)}

    @staticmethod
    def _bm25_sql(order: str, where: str = "") -> str:
        """bm25s's Lucene BM25: idf * tf / (tf + k1 * (1 - b + b * length / average length)), summed over terms."""
        return (
            "SELECT p.row, sum(q.weight * p.tf / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.length / %(avgdl)s)))::real "
            "AS score FROM rag_postings p JOIN unnest(%(terms)s::text[], %(weights)s::float8[]) AS q(term, weight) "
            f"USING (term) {where} GROUP BY p.row {order}"
        )

    def _manifest(self, cur: psycopg.Cursor) -> DatabaseManifest | None:
        cur.execute("SELECT to_regclass('rag_manifest')")
        if cur.fetchone()[0] is None:
            return None
        cur.execute(
            "SELECT format_version, embedding_model, dimension, chunk_config, generation, chunks, tokens "
            "FROM rag_manifest"
        )
        row = cur.fetchone()
        return DatabaseManifest(*row) if row else None

    def _checked_manifest(self, cur: psycopg.Cursor) -> DatabaseManifest:
        manifest = self._manifest(cur)
        if manifest is None:
            raise IndexMissingError('no index in the database yet; run `rag index` (with store = "postgres")')
        self._check_compatible(manifest)
        return manifest

    def _check_compatible(self, manifest: DatabaseManifest) -> None:
        m = manifest
        check_compatible(
            "the database index", m.format_version, FORMAT_VERSION, m.embedding_model, m.dimension, self.embedder
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
        """As `IndexStore.sync`, in one transaction: only new and changed documents are chunked and embedded."""
        incoming = by_source(documents)
        keep = set(keep_sources)
        report = SyncReport()
        with self._writing(rebuild) as (cur, manifest):
            reusable = manifest is not None and not rebuild and manifest.chunk_config == chunk_config
            cur.execute("SELECT source, doc_id, title, places FROM rag_documents")
            stored = {source: (doc_id, title, places_of(places)) for source, doc_id, title, places in cur.fetchall()}
            pending: list[StoreEntry] = []
            for source, doc in incoming.items():
                old = stored.get(source)
                if old is None:
                    report.added.append(source)
                elif old[0] != doc.doc_id or not reusable:
                    report.changed.append(source)
                elif (old[1], old[2]) != (doc.title, doc.places):  # same text, new title or pages: no re-embedding
                    report.retitled.append(source)
                    cur.execute(
                        "UPDATE rag_documents SET title = %s, places = %s WHERE source = %s",
                        (doc.title, _places_json(doc), source),
                    )
                    continue
                else:
                    report.unchanged.append(source)
                    continue
                pending.append(StoreEntry(doc, [], None))
            for source in stored.keys() - incoming.keys():
                if remove_missing and source not in keep:
                    report.removed.append(source)
                else:
                    report.unchanged.append(source)
            if not reusable and manifest is not None:
                # another chunking: every kept document is re-chunked and embedded too
                kept = [s for s in report.unchanged if s not in incoming]
                cur.execute(
                    "SELECT doc_id, title, source, text, places FROM rag_documents WHERE source = ANY(%s)", (kept,)
                )
                pending += [StoreEntry(Document(*row), [], None) for row in cur.fetchall()]
                report.changed += kept
                report.unchanged = [s for s in report.unchanged if s not in set(kept)]
            if not (pending or report.removed or report.retitled) and manifest is not None:
                return report
            self._delete(cur, report.removed + [e.document.source for e in pending if e.document.source in stored])
            report.embedded_chunks = embed_entries(pending, chunker, self.embedder, progress)
            self._insert(cur, pending, progress)
            self._write_manifest(cur, chunk_config, manifest)
        return report

    def copy_from(
        self, entries: Iterable[tuple[Document, list[Chunk], np.ndarray]], chunk_config: dict[str, Any], total: int
    ) -> int:
        """Replace the database index by documents with their chunks and vectors as they are (no embedding).

        This is `rag migrate`: a local index moved into the database keeps its vectors. Returns the chunks written.
        """
        with self._writing(rebuild=True) as (cur, manifest):
            # readers wait for the commit (TRUNCATE locks the tables), then see the new index whole
            cur.execute("TRUNCATE rag_postings, rag_chunks, rag_documents, rag_terms")
            cur.execute("DROP INDEX rag_chunks_embedding, rag_postings_row, rag_postings_impact")
            written = 0
            batch: list[StoreEntry] = []
            with tqdm(total=total, unit="doc", desc="copying documents") as bar:
                for document, chunks, vectors in entries:
                    batch.append(StoreEntry(document, chunks, vectors))
                    if sum(len(e.chunks) for e in batch) >= COPY_BATCH:
                        written += self._insert(cur, batch, progress=False)
                        bar.update(len(batch))
                        batch = []
                written += self._insert(cur, batch, progress=False)
                bar.update(len(batch))
            print(f"building the HNSW index over {written:,} vectors ...", file=sys.stderr)
            cur.execute(f"SET LOCAL maintenance_work_mem = '{BULK_BUILD_MEMORY}'")
            cur.execute(_SCHEMA.format(dim=self.embedder.dim, hnsw_index=self._hnsw_index()))  # the indexes dropped
            self._write_manifest(cur, chunk_config, manifest)
        return written

    @contextmanager
    def _writing(self, rebuild: bool) -> Iterator[tuple[psycopg.Cursor, DatabaseManifest | None]]:
        """A transaction holding the writer lock, with the tables made (or remade for a new dimension)."""
        conn = self._connection()
        try:
            with _unavailable_as_503(), conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (WRITER_LOCK,))
                if not cur.fetchone()[0]:
                    raise IndexLockedError("another process is updating the database index; wait for it to finish")
                manifest = self._manifest(cur)
                if manifest is not None and not rebuild:
                    self._check_compatible(manifest)
                if manifest is not None and rebuild and manifest.dimension != self.embedder.dim:
                    cur.execute("DROP TABLE IF EXISTS " + ", ".join(_TABLES))
                    manifest = None
                cur.execute(_SCHEMA.format(dim=self.embedder.dim, hnsw_index=self._hnsw_index()))
                yield cur, manifest
        except (psycopg.errors.DiskFull, psycopg.errors.ReadOnlySqlTransaction) as exc:
            raise IndexWriteError(
                f"the database cannot store the index: {exc.diag.message_primary}; the transaction was rolled back, "
                "the previous index is unchanged"
            ) from exc

    def _hnsw_index(self) -> str:
        return _HNSW_INDEX.format(hnsw_m=self.hnsw_m, hnsw_ef_construction=self.hnsw_ef_construction)

    def _delete(self, cur: psycopg.Cursor, sources: list[str]) -> None:
        """Drop documents (their chunks and postings cascade), taking their terms out of the frequencies."""
        if not sources:
            return
        cur.execute(
            "WITH gone AS (SELECT p.term, count(*) AS n FROM rag_postings p JOIN rag_chunks c USING (row) "
            "WHERE c.source = ANY(%s) GROUP BY p.term) "
            "UPDATE rag_terms t SET df = t.df - gone.n FROM gone WHERE t.term = gone.term",
            (sources,),
        )
        cur.execute("DELETE FROM rag_terms WHERE df <= 0")
        cur.execute("DELETE FROM rag_documents WHERE source = ANY(%s)", (sources,))

    def _insert(self, cur: psycopg.Cursor, entries: list[StoreEntry], progress: bool) -> int:
        """Documents, chunks with vectors, postings and term frequencies, by COPY; returns the chunks written."""
        if not entries:
            return 0
        cur.execute("SELECT coalesce(max(row), 0), count(*), coalesce(sum(length), 0) FROM rag_chunks")
        last_row, stored_chunks, stored_tokens = cur.fetchone()
        next_row = last_row + 1
        with cur.copy("COPY rag_documents (source, doc_id, title, text, places) FROM STDIN") as copy:
            for e in entries:
                d = e.document
                copy.write_row((d.source, d.doc_id, d.title, d.text, _places_json(d)))
        chunks = [(e.document.source, c, v) for e in entries for c, v in zip(e.chunks, e.vectors, strict=True)]
        tokens = bm25_tokenize([c.text for _, c, _ in chunks])
        average = (stored_tokens + sum(map(len, tokens))) / max(stored_chunks + len(chunks), 1) or 1.0
        document_frequency: Counter[str] = Counter()
        bar = tqdm(total=len(chunks), unit="chunk", desc="writing chunks", disable=not progress)
        for start in range(0, len(chunks), COPY_BATCH):
            batch = range(start, min(start + COPY_BATCH, len(chunks)))
            with cur.copy(
                'COPY rag_chunks (row, source, chunk_id, index, start, "end", length, embedding) FROM STDIN'
            ) as copy:
                for i in batch:
                    source, chunk, vector = chunks[i]
                    copy.write_row(
                        (
                            next_row + i,
                            source,
                            chunk.chunk_id,
                            chunk.index,
                            chunk.start,
                            chunk.end,
                            len(tokens[i]),
                            vector,
                        )
                    )
            with cur.copy("COPY rag_postings (term, row, tf, length, impact) FROM STDIN") as copy:
                for i in batch:
                    counts = Counter(tokens[i])
                    document_frequency.update(counts.keys())
                    norm = self.k1 * (1 - self.b + self.b * len(tokens[i]) / average)
                    for term, tf in counts.items():
                        copy.write_row((term, next_row + i, tf, len(tokens[i]), tf / (tf + norm)))
            bar.update(len(batch))
        bar.close()
        terms = sorted(document_frequency)
        cur.execute(
            "INSERT INTO rag_terms (term, df) SELECT * FROM unnest(%s::text[], %s::int[]) "
            "ON CONFLICT (term) DO UPDATE SET df = rag_terms.df + EXCLUDED.df",
            (terms, [document_frequency[t] for t in terms]),
        )
        return len(chunks)

    def _write_manifest(self, cur: psycopg.Cursor, chunk_config: dict[str, Any], old: DatabaseManifest | None) -> None:
        cur.execute("SELECT count(*), coalesce(sum(length), 0) FROM rag_chunks")
        chunks, tokens = cur.fetchone()
        cur.execute(
            "INSERT INTO rag_manifest (format_version, embedding_model, dimension, chunk_config, generation, chunks, "
            "tokens) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
            "format_version = EXCLUDED.format_version, embedding_model = EXCLUDED.embedding_model, "
            "dimension = EXCLUDED.dimension, chunk_config = EXCLUDED.chunk_config, generation = EXCLUDED.generation, "
            "chunks = EXCLUDED.chunks, tokens = EXCLUDED.tokens, updated = now()",
            (
                FORMAT_VERSION,
                self.embedder.model_name,
                self.embedder.dim,
                json.dumps(chunk_config),
                (old.generation if old else 0) + 1,
                chunks,
                tokens,
            ),
        )


def _no_candidates(queries: int) -> Candidates:
    return Candidates(
        np.zeros(0, dtype=np.int64),
        [],
        [],
        np.zeros((0, queries), dtype=np.float32),
        np.zeros((0, queries), dtype=np.float32),
        np.zeros(queries, dtype=np.float32),
    )


@contextmanager
def _unavailable_as_503() -> Iterator[None]:
    """A connection lost, refused or timed out inside: `DatabaseUnavailable`, which callers answer with 503.

    The transaction it happened in is rolled back by the server; the broken connection is replaced on next use.
    """
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        if isinstance(exc, psycopg.errors.DiskFull):
            raise
        raise DatabaseUnavailable(f"the database did not answer ({_first_line(exc)})") from exc


def _places_json(document: Document) -> str:
    return json.dumps([[p.start, p.label] for p in document.places], ensure_ascii=False)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _cut_off(conn: psycopg.Connection) -> None:
    """Shut the connection's socket down under a read blocked on it: the read fails (and the connection is
    broken, so it is replaced) instead of waiting for a server that does not answer."""
    with contextlib.suppress(OSError, psycopg.Error), socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
        sock.shutdown(socket.SHUT_RDWR)
