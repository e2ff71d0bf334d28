"""Fuzzing (hypothesis) of what reads untrusted input: each loader, the chunker and the lexical helpers,
and hostile files made by hand. Only an IngestError may come out of a bad file, in one line, and no
input may take over 5 s; the batch always goes on.
"""

from __future__ import annotations

import io
import shutil
import struct
import time
import zipfile
import zlib
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import docx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pypdf import PdfWriter
from test_ingest import make_pdf

from rag.evaluation.office_files import write_office_set
from rag.ingestion.chunking import Chunker, split_sentences
from rag.ingestion.loaders import load_documents
from rag.lexical import content_stems, salient_terms, words
from rag.store.bm25 import TermFrequencies, bm25_scores, bm25_tokenize
from rag.types import Document

MB = 1024 * 1024
SLOWEST_S = 5.0
# the office formats mutated too; pictures and scans are OCR'd (a second each), so they get hostile cases only
OFFICE_SEEDS = ("deck.pptx", "budget.xlsx", "directory.csv", "minutes.odt", "guide.epub")
MUTATED_OFFICE = (".pptx", ".xlsx", ".csv", ".odt", ".epub", ".eml", ".msg", ".rtf")
FUZZ = settings(
    max_examples=40,
    deadline=SLOWEST_S * 1000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _docx_bytes(text: str) -> bytes:
    document = docx.Document()
    document.add_heading("Fuzz", 1)
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _seed_files(folder: Path) -> dict[str, bytes]:
    """One valid file per format, the starting points of the mutations."""
    text = "LeCun proposed a shared model of human knowledge. Meta releases Llama openly."
    pdf = make_pdf(folder / "seed.pdf", [text, "Second line."], title="Seed")
    return {
        ".txt": text.encode(),
        ".md": f"# Seed\n\n{text}\n\n- item [link](http://x)\n".encode(),
        ".html": f"<html><head><title>Seed</title></head><body><h1>T</h1><p>{text}</p></body></html>".encode(),
        ".pdf": pdf.read_bytes(),
        ".docx": _docx_bytes(text),
        **{Path(f.file).suffix: (folder / f.file).read_bytes() for f in write_office_set(folder, only=OFFICE_SEEDS)},
        ".eml": f"Subject: Seed\nFrom: a@example.org\n\n{text}\n".encode(),
        ".msg": _msg_bytes(text),
        ".rtf": rf"{{\rtf1\ansi{{\fonttbl{{\f0 Times;}}}}\f0 {text}\par}}".encode(),
    }


def _msg_bytes(text: str) -> bytes:
    from msgforge import Message

    return Message(subject="Seed", text_body=text, to=[("a@example.org", "A")]).as_bytes()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return _seed_files(tmp_path_factory.mktemp("seeds"))


def _loaded_or_refused(path: Path) -> None:
    started = time.perf_counter()
    documents, errors = load_documents([path], MB)
    assert time.perf_counter() - started < SLOWEST_S, path.name
    assert len(documents) + len(errors) == 1
    for error in errors:
        assert error.reason and "\n" not in error.reason and "\n" not in error.path
    for document in documents:
        assert document.text.strip()


@pytest.mark.parametrize("extension", [".txt", ".md", ".html", ".pdf", ".docx", *MUTATED_OFFICE])
@FUZZ
@given(data=st.data())
def test_a_mutated_file_is_loaded_or_refused_in_one_line(
    tmp_path: Path, seeds: dict[str, bytes], extension: str, data: st.DataObject
) -> None:
    blob = bytearray(seeds[extension])
    for _ in range(data.draw(st.integers(0, 8), label="mutations")):
        at = data.draw(st.integers(0, len(blob)), label="at")
        cut = data.draw(st.integers(0, 16), label="cut")
        blob[at : at + cut] = data.draw(st.binary(max_size=16), label="insert")
    blob = blob[: data.draw(st.integers(0, len(blob)), label="truncate to")]
    path = tmp_path / f"fuzzed{extension}"
    path.write_bytes(bytes(blob))
    _loaded_or_refused(path)


@FUZZ
@given(text=st.text(max_size=3000), size=st.integers(20, 800), overlap_share=st.floats(0, 0.9))
def test_chunks_are_exact_spans_of_any_text(text: str, size: int, overlap_share: float) -> None:
    started = time.perf_counter()
    document = Document("fuzz", "Fuzz", "fuzz.txt", text)
    chunks = Chunker(size, int(size * overlap_share)).split(document)
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text and chunk.text.strip()
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    for start, end in split_sentences(text):
        assert 0 <= start < end <= len(text)
    assert time.perf_counter() - started < SLOWEST_S


@FUZZ
@given(texts=st.lists(st.text(max_size=400), min_size=1, max_size=20), query=st.text(max_size=200))
def test_lexical_helpers_take_any_text(texts: list[str], query: str) -> None:
    started = time.perf_counter()
    frequencies = TermFrequencies.of(texts)
    assert len(frequencies.lengths) == len(texts)
    [scores] = bm25_scores([(frequencies, np.ones(len(texts), dtype=bool))], [query], 0.9, 0.4)
    assert scores.shape == (len(texts),) and np.isfinite(scores).all() and (scores >= 0).all()
    assert all(isinstance(t, str) for t in bm25_tokenize([query])[0])
    words(query), content_stems(query), salient_terms(query)
    assert time.perf_counter() - started < SLOWEST_S


def _zip_bomb(path: Path) -> None:
    """A valid .docx whose document.xml unpacks to ~200 MB (it is 0.5 MB on disk)."""
    buffer = io.BytesIO(_docx_bytes("x"))
    with zipfile.ZipFile(buffer) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    paragraph = "<w:p><w:r><w:t>" + "a" * 1000 + "</w:t></w:r></w:p>"
    xml = parts["word/document.xml"].decode().replace("<w:body>", "<w:body>" + paragraph * 200_000, 1)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in parts.items():
            archive.writestr(name, xml if name == "word/document.xml" else content)


def _empty_pages(path: Path) -> None:
    writer = PdfWriter()
    for _ in range(10_000):
        writer.add_blank_page(width=612, height=792)
    with path.open("wb") as handle:
        writer.write(handle)


def _bombed(name: str) -> Callable[[Path], None]:
    """A valid office file (written by its library) with one more member that unpacks to ~200 MB."""

    def write(path: Path) -> None:
        [fact] = write_office_set(path.parent / f"{path.name}-source", only=(name,))
        source = path.parent / f"{path.name}-source" / fact.file
        with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bomb:
            for info in original.infolist():
                bomb.writestr(info, original.read(info.filename))
            bomb.writestr("padding.xml", b"<a>" + b" " * 200 * MB + b"</a>")
        shutil.rmtree(source.parent)

    return write


def _long_sheet(path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Ledger")
    sheet.append(["Entry", "Amount (EUR)", "Account"])
    for n in range(10_000):
        sheet.append([f"Entry {n}", n * 3, f"Account {n % 40}"])
    book.save(path)


def _many_attachments(path: Path) -> None:
    message = EmailMessage()
    message["Subject"] = "Archive export"
    message.set_content("The whole archive, one file per record.")
    for n in range(1_000):
        message.add_attachment(f"Record {n}.".encode(), maintype="text", subtype="plain", filename=f"r{n}.txt")
    path.write_bytes(message.as_bytes())


def _wide_image(path: Path) -> None:
    Image.new("1", (20_000, 4_000), 1).save(path)  # 80 megapixels of white, 1 bit each


def _png_bomb(path: Path) -> None:
    """A 200-byte PNG whose header claims 100,000 x 100,000 pixels (its one row of data is all there is)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 12_501))
        + chunk(b"IEND", b"")
    )


def _sparse(path: Path) -> None:
    with path.open("wb") as handle:
        handle.truncate(1 << 30)  # 1 GB, no blocks on disk


HOSTILE = {
    "bomb.docx": (_zip_bomb, "a zip bomb?"),
    "pages.pdf": (_empty_pages, "no extractable text in 10000 page(s)"),
    "nested.html": (lambda p: p.write_text("<div>" * 100_000 + "deep" + "</div>" * 100_000), "no visible text"),
    "sparse.txt": (_sparse, "over the 20.0 MB limit"),
    "invalid.md": (lambda p: p.write_bytes(b"# Title\n\n\xff\xfe\xfa not utf-8"), "not UTF-8 text"),
    "name\nwith\x07control.txt": (lambda p: p.write_text("Plain text."), None),
    "bomb.pptx": (_bombed("deck.pptx"), "a zip bomb?"),
    "bomb.xlsx": (_bombed("budget.xlsx"), "a zip bomb?"),
    "bomb.odt": (_bombed("minutes.odt"), "a zip bomb?"),
    "bomb.epub": (_bombed("guide.epub"), "a zip bomb?"),
    "ledger.xlsx": (_long_sheet, None),
    "archive.eml": (_many_attachments, "980 of its 1000 attachments not read"),
    "wide.png": (_wide_image, "image is 20,000 x 4,000 px, over the 60 megapixel"),
    "bomb.png": (_png_bomb, "decompression bomb"),
}


def test_hostile_files_each_get_their_one_line_and_the_batch_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    for name, (write, _) in HOSTILE.items():
        write(folder / name)
    (folder / "zz_good.txt").write_text("A good file.")
    started = time.perf_counter()
    documents, errors = load_documents([folder], 20 * MB)
    assert time.perf_counter() - started < SLOWEST_S * len(HOSTILE)
    reasons = {Path(e.path).name: e.reason for e in errors}
    for name, (_, expected) in HOSTILE.items():
        if expected:
            assert expected in reasons[name], (name, reasons.get(name))
    loaded = {Path(d.source).name for d in documents}
    assert loaded - {f"archive.eml > r{n}.txt" for n in range(20)} == {
        "name\\nwith\\x07control.txt",
        "ledger.xlsx",
        "archive.eml",
        "zz_good.txt",
    }
    ledger = next(d for d in documents if d.source.endswith("ledger.xlsx"))
    assert "Entry 9999; Amount (EUR): 29997; Account: Account 39." in ledger.text
    assert all("\n" not in f"{e.path}: {e.reason}" for e in errors)
