from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import SEEDS

import rag.store.local as store_module
from rag.embedding.embedder import Embedder
from rag.store.base import Candidates, IndexLockedError, IndexMismatchError, IndexMissingError
from rag.store.local import CURRENT, FORMAT_VERSION, LocalStore
from rag.types import Chunk, Document, Place

CONFIG = {"chunk_size": 700, "chunk_overlap": 0}


class ParagraphChunker:
    """Packs whole lines up to `chunk_size` characters; stands in for rag.ingestion.chunking in these tests."""

    def __init__(self, chunk_size: int = 700) -> None:
        self.chunk_size = chunk_size

    def split(self, document: Document) -> list[Chunk]:
        spans: list[tuple[int, int]] = []
        for line in re.finditer(r"\S[^\n]*", document.text):
            if spans and line.end() - spans[-1][0] <= self.chunk_size:
                spans[-1] = (spans[-1][0], line.end())
            else:
                spans.append((line.start(), line.end()))
        return [
            Chunk(f"{document.doc_id[:16]}-{i}", document.doc_id, i, document.text[start:end], start, end)
            for i, (start, end) in enumerate(spans)
        ]


def make_document(source: str, text: str) -> Document:
    title = text.strip().splitlines()[0][:80] if text.strip() else Path(source).stem
    return Document(hashlib.sha256(text.encode()).hexdigest(), title, source, text)


def seed_documents() -> list[Document]:
    return [make_document(str(path), path.read_text(encoding="utf-8")) for path in sorted(SEEDS.glob("*.txt"))]


def build(index_dir: Path, embedder: Embedder, documents: list[Document], **kwargs: object) -> LocalStore:
    store = LocalStore(index_dir, embedder)
    store.sync(documents, ParagraphChunker(), CONFIG, **kwargs)
    return store


def current_generation(index_dir: Path) -> str:
    return (index_dir / CURRENT).read_text().strip()


def vectors_by_chunk(store: LocalStore) -> dict[str, np.ndarray]:
    snapshot = store.snapshot()
    return {c.chunk_id: snapshot.vectors[i] for i, c in enumerate(snapshot.chunks)}


def segment_names(index_dir: Path) -> list[str]:
    manifest = json.loads((index_dir / current_generation(index_dir) / "manifest.json").read_text())
    return sorted(s["name"] for s in manifest["segments"])


@pytest.fixture
def seeds() -> list[Document]:
    return seed_documents()


@pytest.fixture(scope="module")
def seed_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """Built once; tests work on copies, since each build embeds the whole corpus."""
    index_dir = tmp_path_factory.mktemp("seed") / "index"
    build(index_dir, embedder, seed_documents())
    return index_dir


@pytest.fixture
def built(tmp_path: Path, embedder: Embedder, seed_index: Path) -> LocalStore:
    shutil.copytree(seed_index, tmp_path / "index")
    return LocalStore(tmp_path / "index", embedder)


def test_build_writes_a_complete_generation(built: LocalStore, seeds: list[Document], embedder: Embedder) -> None:
    chunker = ParagraphChunker()
    fresh = LocalStore(built.index_dir, embedder)
    assert fresh.is_built()
    manifest = fresh.manifest
    assert manifest.embedding_model == embedder.model_name
    assert manifest.dimension == embedder.dim == 384
    assert manifest.chunk_config == CONFIG
    assert fresh.chunk_counts() == {d.doc_id: len(chunker.split(d)) for d in seeds}
    assert sorted(fresh.documents(), key=lambda d: d.source) == sorted(seeds, key=lambda d: d.source)
    assert fresh.document(seeds[2].doc_id).text == seeds[2].text
    assert len(fresh.chunks) == sum(len(chunker.split(d)) for d in seeds)
    for chunk in fresh.chunks:
        assert fresh.document(chunk.doc_id).text[chunk.start : chunk.end] == chunk.text
    generation = built.index_dir / current_generation(built.index_dir)
    assert json.loads((generation / "manifest.json").read_text())["format_version"] == FORMAT_VERSION
    assert [p.name for p in built.index_dir.glob("gen-*")] == [generation.name]


def test_unchanged_resync_embeds_nothing_and_writes_no_generation(
    built: LocalStore, seeds: list[Document], embedder: Embedder
) -> None:
    before = current_generation(built.index_dir)
    report = LocalStore(built.index_dir, embedder).sync(seeds, ParagraphChunker(), CONFIG)
    assert report.embedded_chunks == 0
    assert sorted(report.unchanged) == sorted(d.source for d in seeds)
    assert report.added == report.changed == report.removed == []
    assert current_generation(built.index_dir) == before


def test_modified_document_is_the_only_one_embedded(built: LocalStore, seeds: list[Document]) -> None:
    edited = make_document(seeds[1].source, seeds[1].text + "\n\nA new closing paragraph about llamas.")
    docs = [edited if d.source == edited.source else d for d in seeds]
    report = built.sync(docs, ParagraphChunker(), CONFIG)
    assert report.changed == [edited.source]
    assert report.embedded_chunks == len(ParagraphChunker().split(edited))
    assert built.document(edited.doc_id).text.endswith("llamas.")
    with pytest.raises(KeyError):
        built.document(seeds[1].doc_id)


def test_new_title_for_the_same_text_is_stored_without_embedding(built: LocalStore, seeds: list[Document]) -> None:
    before = vectors_by_chunk(built)
    retitled = replace(seeds[0], title="A better title")
    report = built.sync([retitled, *seeds[1:]], ParagraphChunker(), CONFIG)
    assert report.retitled == [retitled.source]
    assert report.embedded_chunks == 0
    assert report.added == report.changed == report.removed == []
    assert built.document(retitled.doc_id).title == "A better title"
    after = vectors_by_chunk(built)
    assert after.keys() == before.keys() and all((after[c] == v).all() for c, v in before.items())


def test_pages_are_stored_with_the_document_and_new_pages_need_no_embedding(
    built: LocalStore, seeds: list[Document], embedder: Embedder
) -> None:
    paged = replace(seeds[0], places=(Place(0, "p. 1"), Place(len(seeds[0].text) // 2, "p. 2")))
    report = built.sync([paged, *seeds[1:]], ParagraphChunker(), CONFIG)
    assert report.retitled == [paged.source] and report.embedded_chunks == 0
    reopened = LocalStore(built.index_dir, embedder)  # read back from documents.jsonl
    assert reopened.document(paged.doc_id).places == paged.places
    assert reopened.document(paged.doc_id).places_in(len(paged.text) - 1, len(paged.text)) == (paged.places[1],)


def test_unchanged_documents_keep_their_vectors(built: LocalStore, seeds: list[Document]) -> None:
    before = vectors_by_chunk(built)
    built.sync([*seeds, make_document("extra.txt", "Llamas are kept for their wool.")], ParagraphChunker(), CONFIG)
    after = vectors_by_chunk(built)
    for chunk_id, vector in before.items():
        assert (after[chunk_id] == vector).all()


def test_new_bm25_parameters_apply_at_query_time_without_rewriting(
    built: LocalStore, embedder: Embedder, seeds: list[Document]
) -> None:
    before = current_generation(built.index_dir)
    retuned = LocalStore(built.index_dir, embedder, bm25_k1=0.9, bm25_b=0.4)
    query = ["open source models from Meta"]
    vector = embedder.encode(query)
    assert not np.allclose(built.search(query, vector, 5).lexical_best, retuned.search(query, vector, 5).lexical_best)
    assert retuned.sync(seeds, ParagraphChunker(), CONFIG).embedded_chunks == 0
    assert current_generation(built.index_dir) == before


def test_added_document_is_the_only_one_embedded(built: LocalStore, seeds: list[Document]) -> None:
    extra = make_document("notes/llamas.txt", "Llamas\n\nLlamas are domesticated camelids.\n\nThey carry loads.")
    report = built.sync([*seeds, extra], ParagraphChunker(), CONFIG)
    assert report.added == [extra.source]
    assert report.embedded_chunks == len(ParagraphChunker().split(extra)) == 1
    assert len(built.documents()) == 5


def test_missing_document_is_dropped_and_others_untouched(
    built: LocalStore, seeds: list[Document], embedder: Embedder
) -> None:
    chunks_before = {c.chunk_id for c in built.chunks}
    report = built.sync(seeds[1:], ParagraphChunker(), CONFIG)
    assert report.removed == [seeds[0].source]
    assert report.embedded_chunks == 0
    fresh = LocalStore(built.index_dir, embedder)
    assert {d.source for d in fresh.documents()} == {d.source for d in seeds[1:]}
    dropped = {c.chunk_id for c in ParagraphChunker().split(seeds[0])}
    assert {c.chunk_id for c in fresh.chunks} == chunks_before - dropped
    assert len(list(built.index_dir.glob("gen-*"))) == 1


def test_keep_sources_keeps_the_previous_version(built: LocalStore, seeds: list[Document]) -> None:
    report = built.sync(seeds[1:], ParagraphChunker(), CONFIG, keep_sources=[seeds[0].source])
    assert report.removed == []
    assert seeds[0].source in report.unchanged
    assert report.embedded_chunks == 0
    assert built.document(seeds[0].doc_id) == seeds[0]


def test_remove_missing_false_only_adds(built: LocalStore, seeds: list[Document]) -> None:
    upload = make_document("uploads/memo.txt", "Memo\n\nThe office closes early on Friday.")
    report = built.sync([upload], ParagraphChunker(), CONFIG, remove_missing=False)
    assert report.added == [upload.source]
    assert report.removed == []
    assert report.embedded_chunks == 1
    assert len(built.documents()) == len(seeds) + 1


def test_chunk_config_change_reembeds_everything(built: LocalStore, seeds: list[Document]) -> None:
    smaller = ParagraphChunker(chunk_size=300)
    report = built.sync(seeds, smaller, {"chunk_size": 300, "chunk_overlap": 0})
    assert report.embedded_chunks == sum(len(smaller.split(d)) for d in seeds)
    assert report.embedded_chunks > sum(len(ParagraphChunker().split(d)) for d in seeds)
    assert built.manifest.chunk_config == {"chunk_size": 300, "chunk_overlap": 0}


def test_rebuild_reembeds_everything(built: LocalStore, seeds: list[Document]) -> None:
    report = built.sync(seeds, ParagraphChunker(), CONFIG, rebuild=True)
    assert report.embedded_chunks == len(built.chunks)
    assert sorted(report.unchanged) == sorted(d.source for d in seeds)


def test_pointer_switch_failure_leaves_previous_index(
    built: LocalStore, seeds: list[Document], embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = current_generation(built.index_dir)

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before the pointer switch")

    monkeypatch.setattr(store_module.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        built.sync(seeds[:1], ParagraphChunker(), CONFIG)
    monkeypatch.undo()

    assert current_generation(built.index_dir) == before
    # what the failed commit wrote is removed at once (on a full disk it would hold the space)
    assert [p.name for p in built.index_dir.glob("gen-*")] == [before]
    assert not (built.index_dir / "CURRENT.tmp").exists()
    fresh = LocalStore(built.index_dir, embedder)
    assert len(fresh.documents()) == len(seeds)

    report = fresh.sync(seeds, ParagraphChunker(), CONFIG)
    assert report.embedded_chunks == 0
    assert [p.name for p in built.index_dir.glob("gen-*")] == [before]


def test_embedder_failure_leaves_previous_index(
    built: LocalStore, seeds: list[Document], embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(texts: list[str], progress: bool = False) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(embedder, "encode", fail)
    with pytest.raises(RuntimeError, match="out of memory"):
        built.sync([make_document("new.txt", "New text.")], ParagraphChunker(), CONFIG)
    monkeypatch.undo()
    assert len(LocalStore(built.index_dir, embedder).documents()) == len(seeds)


def test_process_killed_mid_write_leaves_previous_index(
    built: LocalStore, seeds: list[Document], embedder: Embedder
) -> None:
    """A hard kill runs no cleanup code at all: the half-written generation must simply be ignored."""
    before = current_generation(built.index_dir)
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import rag.store.local
        from rag.embedding.embedder import Embedder
        from test_store import CONFIG, ParagraphChunker, make_document, seed_documents

        def die(index):
            os._exit(9)  # killed after documents, chunks and vectors are on disk, before the FAISS index

        rag.store.local.faiss.serialize_index = die
        store = rag.store.local.LocalStore({str(built.index_dir)!r}, Embedder({embedder.model_name!r}))
        store.sync([make_document("late.txt", "Late arrival.")], ParagraphChunker(), CONFIG)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 9, result.stderr
    assert [p.name for p in built.index_dir.glob("gen-*")] == [before]
    partial = [p for p in built.index_dir.glob("seg-*") if p.name not in segment_names(built.index_dir)]
    assert partial and (partial[0] / "vectors.npy").exists() and not (partial[0] / "segment.json").exists()

    fresh = LocalStore(built.index_dir, embedder)
    assert {d.source for d in fresh.documents()} == {d.source for d in seeds}
    report = fresh.sync(seeds, ParagraphChunker(), CONFIG)
    assert report.embedded_chunks == 0
    assert [p.name for p in built.index_dir.glob("gen-*")] == [before]
    assert sorted(p.name for p in built.index_dir.glob("seg-*")) == segment_names(built.index_dir)


def test_other_embedding_model_is_refused(built: LocalStore, embedder: Embedder, seeds: list[Document]) -> None:
    manifest_path = built.index_dir / current_generation(built.index_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["embedding_model"] = "bge-large-en"
    manifest["dimension"] = 1024
    manifest_path.write_text(json.dumps(manifest))

    store = LocalStore(built.index_dir, embedder)
    with pytest.raises(IndexMismatchError) as excinfo:
        store.documents()
    message = str(excinfo.value)
    assert "bge-large-en" in message and embedder.model_name in message
    assert "rag index --rebuild" in message
    with pytest.raises(IndexMismatchError):
        store.sync(seeds, ParagraphChunker(), CONFIG)

    report = store.sync(seeds, ParagraphChunker(), CONFIG, rebuild=True)
    assert report.embedded_chunks == len(store.chunks)
    assert store.manifest.embedding_model == embedder.model_name


def test_missing_index_says_to_run_rag_index(tmp_path: Path, embedder: Embedder) -> None:
    store = LocalStore(tmp_path / "nowhere", embedder)
    assert not store.is_built()
    with pytest.raises(IndexMissingError, match="rag index"):
        store.documents()


def test_second_writer_is_refused(built: LocalStore, seeds: list[Document]) -> None:
    with open(built.index_dir / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(IndexLockedError, match="another process"):
            built.sync(seeds[:1], ParagraphChunker(), CONFIG)
    assert built.sync(seeds, ParagraphChunker(), CONFIG).embedded_chunks == 0


def test_chunker_breaking_spans_is_rejected(tmp_path: Path, embedder: Embedder, seeds: list[Document]) -> None:
    class Sloppy(ParagraphChunker):
        def split(self, document: Document) -> list[Chunk]:
            return [replace(c, text=c.text.strip() + " ") for c in super().split(document)]

    with pytest.raises(ValueError, match="does not match"):
        LocalStore(tmp_path / "index", embedder).sync(seeds, Sloppy(), CONFIG)
    assert not LocalStore(tmp_path / "index", embedder).is_built()


def test_empty_corpus_builds_an_empty_index(tmp_path: Path, embedder: Embedder) -> None:
    store = build(tmp_path / "index", embedder, [])
    assert store.is_built()
    assert store.documents() == []
    assert store.chunks == ()


def by_chunk(candidates: Candidates) -> dict[str, tuple[float, ...]]:
    """A search's candidates as chunk id -> cosine and BM25 scores, which do not depend on row numbers."""
    return {
        c.chunk_id: (*candidates.cosine[i].round(5), *candidates.lexical[i].round(4))
        for i, c in enumerate(candidates.chunks)
    }


QUERIES = ["What did LeCun propose in Paris?", "open weights licence", "Llama downloads", "the the"]


def test_an_added_document_is_written_alone_and_ranks_as_one_build_would(
    tmp_path: Path, embedder: Embedder, seeds: list[Document]
) -> None:
    """Segments written one sync at a time, with a document replaced and one removed, search like one index."""
    grown = build(tmp_path / "grown", embedder, seeds[:2])
    first = segment_names(grown.index_dir)
    first_files = {p: p.stat().st_mtime_ns for p in (grown.index_dir / first[0]).iterdir()}
    extra = make_document("notes/llamas.txt", "Llamas\n\nLlamas are domesticated camelids from Paris.")
    grown.sync([seeds[2], extra], ParagraphChunker(), CONFIG, remove_missing=False)
    assert len(segment_names(grown.index_dir)) == 2  # the first segment is not rewritten
    assert {p: p.stat().st_mtime_ns for p in (grown.index_dir / first[0]).iterdir()} == first_files
    edited = make_document(seeds[1].source, seeds[1].text + "\n\nA closing paragraph on LeCun in Paris.")
    grown.sync([edited, seeds[2], seeds[3]], ParagraphChunker(), CONFIG)  # seeds[0] and extra removed

    final = [edited, seeds[2], seeds[3]]
    at_once = build(tmp_path / "at-once", embedder, final)
    for store in (grown, LocalStore(grown.index_dir, embedder)):  # in memory and read back
        assert sorted(store.documents(), key=lambda d: d.source) == sorted(final, key=lambda d: d.source)
        assert store.chunk_counts() == at_once.chunk_counts()
        vectors = embedder.encode(QUERIES)
        found, expected = store.search(QUERIES, vectors, 50), at_once.search(QUERIES, vectors, 50)
        assert by_chunk(found) == by_chunk(expected)
        assert np.allclose(found.lexical_best, expected.lexical_best, atol=1e-4)
        for row, chunk, document in zip(found.rows, found.chunks, found.documents, strict=True):
            assert document.text[chunk.start : chunk.end] == chunk.text
            assert store.snapshot().chunk(int(row)) == chunk


def test_segments_are_merged_and_deleted_ones_dropped(
    tmp_path: Path, embedder: Embedder, seeds: list[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MERGE_FACTOR", 3)
    store = build(tmp_path / "index", embedder, seeds)
    notes = [make_document(f"notes/{i}.txt", f"Note {i}\n\nLlama note number {i} about Paris.") for i in range(7)]
    counts = []
    for i in range(len(notes)):
        store.sync(notes[: i + 1], ParagraphChunker(), CONFIG, remove_missing=False)
        counts.append(len(segment_names(store.index_dir)))
    assert max(counts) <= 1 + 2 * (store_module.MERGE_FACTOR - 1)  # never MERGE_FACTOR segments of one size
    assert counts[2] < 4  # the third one-chunk segment merged the three
    assert len(store.documents()) == len(seeds) + len(notes)
    vectors = embedder.encode(QUERIES)
    at_once = build(tmp_path / "at-once", embedder, [*seeds, *notes])
    assert by_chunk(store.search(QUERIES, vectors, 50)) == by_chunk(at_once.search(QUERIES, vectors, 50))

    store.sync(notes, ParagraphChunker(), CONFIG)  # the seeds removed: their segment, all deleted, is dropped
    assert sorted(d.source for d in store.documents()) == sorted(d.source for d in notes)
    on_disk = sorted(p.name for p in store.index_dir.glob("seg-*"))
    assert on_disk == segment_names(store.index_dir)
    seed_sources = {d.source for d in seeds}
    for name in on_disk:
        written = json.loads((store.index_dir / name / "segment.json").read_text())["documents"]
        assert not {d["source"] for d in written} & seed_sources
