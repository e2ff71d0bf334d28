from __future__ import annotations

import os
import zipfile
from pathlib import Path

import docx
import pytest
from pypdf import PdfWriter

from rag.evaluation.office_files import text_pdf
from rag.ingestion.loaders import SUPPORTED_EXTENSIONS, load_documents

MB = 1024 * 1024


def make_pdf(path: Path, lines: list[str], title: str | None = None) -> Path:
    path.write_bytes(text_pdf(lines, title))
    return path


def make_docx(path: Path, paragraphs: list[str], title: str = "") -> Path:
    document = docx.Document()
    document.core_properties.title = title
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Cell one"
    table.rows[0].cells[1].text = "Cell two"
    document.save(str(path))
    return path


def load_one(path: Path, max_bytes: int = 20 * MB):
    documents, errors = load_documents([path], max_bytes)
    assert not errors, errors
    assert len(documents) == 1
    return documents[0]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- each format loads -------------------------------------------------------------------------


def test_txt_title_is_first_line_and_text_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"\n\n  Field notes  \r\nLine two.\r\n")
    document = load_one(path)
    assert document.title == "Field notes"
    assert document.text == "\n\n  Field notes  \nLine two.\n"  # only \r\n is normalised
    assert document.source == "notes.txt"
    assert len(document.doc_id) == 16
    int(document.doc_id, 16)


def test_utf8_bom_and_utf16_text(tmp_path: Path) -> None:
    (tmp_path / "bom.txt").write_bytes("\ufeffCafé “quoted” 🚀".encode())
    (tmp_path / "wide.txt").write_bytes("Café wide".encode("utf-16"))
    documents, errors = load_documents([tmp_path], MB)
    assert not errors
    assert [d.text for d in documents] == ["Café “quoted” 🚀", "Café wide"]


def test_markdown_keeps_source_and_uses_first_heading(tmp_path: Path) -> None:
    source = "```\n# not a heading\n```\n\nIntro line.\n\n## Minor\n\n# The *Real* Title #\n\n- item\n"
    for name in ("guide.md", "guide2.markdown"):
        (tmp_path / name).write_text(source, encoding="utf-8")
        document = load_one(tmp_path / name)
        assert document.text == source
        assert document.title == "The *Real* Title"


def test_markdown_without_heading_falls_back_to_stem(tmp_path: Path) -> None:
    (tmp_path / "plain-notes.md").write_text("just text, no heading\n", encoding="utf-8")
    assert load_one(tmp_path / "plain-notes.md").title == "plain-notes"


def test_txt_section_label_over_a_headline_is_not_the_title(tmp_path: Path) -> None:
    labelled = tmp_path / "labelled.txt"
    labelled.write_text("Technology\n\nCity opens its first tram line in 2026\n\nThe mayor said so on Monday.\n")
    assert load_one(labelled).title == "City opens its first tram line in 2026"
    plain = tmp_path / "plain.txt"
    plain.write_text("Field notes\n\nWe walked along the river to the old mill.\n")
    assert load_one(plain).title == "Field notes"


def test_html_uses_title_and_drops_scripts(tmp_path: Path) -> None:
    html = """<!DOCTYPE html><html><head><title> The   Page Title </title>
    <style>body { color: red }</style><script>var secret = "SCRIPT_SECRET";</script></head>
    <body><h1>Heading</h1><p>Visible paragraph text.</p><script>alert("SCRIPT_SECRET2")</script>
    <noscript>NOSCRIPT_NAG</noscript><ul><li>First item</li></ul></body></html>"""
    (tmp_path / "page.html").write_text(html, encoding="utf-8")
    document = load_one(tmp_path / "page.html")
    assert document.title == "The Page Title"
    assert "Visible paragraph text." in document.text
    assert "First item" in document.text
    for hidden in ("SCRIPT_SECRET", "color: red", "NOSCRIPT_NAG", "The Page Title"):
        assert hidden not in document.text


def test_htm_without_title_uses_h1_and_xml_declaration_is_fine(tmp_path: Path) -> None:
    html = '<?xml version="1.0" encoding="UTF-8"?><html><body><h1>Only <b>H1</b></h1><p>Body.</p></body></html>'
    (tmp_path / "x.htm").write_text(html, encoding="utf-8")
    document = load_one(tmp_path / "x.htm")
    assert document.title == "Only H1"
    assert "Body." in document.text


def test_html_inline_markup_is_spaced_as_a_browser_shows_it(tmp_path: Path) -> None:
    html = (
        '<html><body><p>X is the default in <span class="productname">PostgreSQL</span>.  When '
        '<code class="command">SELECT</code> runs, the \u201c<em>directory</em>\u201d format is used.</p>'
        "<ul><li>one</li><li>two</li></ul><table><tr><td>a</td><td>b</td></tr></table></body></html>"
    )
    (tmp_path / "manual.html").write_text(html, encoding="utf-8")
    text = load_one(tmp_path / "manual.html").text
    assert "X is the default in PostgreSQL. When SELECT runs, the \u201cdirectory\u201d format is used." in text
    assert "one" in text and "two" in text and "onetwo" not in text and "ab" not in text.split()


def test_html_in_declared_legacy_charset(tmp_path: Path) -> None:
    html = '<html><head><meta charset="windows-1252"><title>Café</title></head><body>Crème brûlée.</body></html>'
    (tmp_path / "legacy.html").write_bytes(html.encode("cp1252"))
    document = load_one(tmp_path / "legacy.html")
    assert document.title == "Café"
    assert "Crème brûlée." in document.text


def test_pdf_text_and_metadata_title(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "paper.pdf", ["Federated models (draft).", "Second line here."], title="A PDF Title")
    document = load_one(path)
    assert document.title == "A PDF Title"
    assert "Federated models (draft)." in document.text
    assert "Second line here." in document.text


def test_pdf_without_metadata_title_uses_first_line(tmp_path: Path) -> None:
    document = load_one(make_pdf(tmp_path / "untitled.pdf", ["Opening line", "More text."]))
    assert document.title == "Opening line"


def test_pdf_encrypted_without_user_password_loads(tmp_path: Path) -> None:
    plain = make_pdf(tmp_path / "plain.pdf", ["Copy-protected text."])
    writer = PdfWriter(clone_from=plain)
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    writer.write(tmp_path / "protected.pdf")
    assert "Copy-protected text." in load_one(tmp_path / "protected.pdf").text


def test_docx_paragraphs_tables_and_title(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "memo.docx", ["First paragraph.", "", "Second paragraph."], title="Memo Title")
    document = load_one(path)
    assert document.title == "Memo Title"
    assert document.text == "First paragraph.\n\nSecond paragraph.\n\nCell one | Cell two"


def test_docx_without_title_uses_first_paragraph(tmp_path: Path) -> None:
    document = load_one(make_docx(tmp_path / "memo.docx", ["", "  Opening paragraph  ", "Next."]))
    assert document.title == "Opening paragraph"


def test_long_title_is_capped(tmp_path: Path) -> None:
    (tmp_path / "long.txt").write_text("word " * 100 + "\nbody", encoding="utf-8")
    title = load_one(tmp_path / "long.txt").title
    assert len(title) <= 121
    assert title.endswith("…")


def test_folder_walk_is_recursive_sorted_and_skips_hidden(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    (root / "b_sub" / "deeper").mkdir(parents=True)
    (root / ".hidden_dir").mkdir()
    (root / "c.txt").write_text("C text", encoding="utf-8")
    (root / "a.md").write_text("# A\nA text", encoding="utf-8")
    (root / "b_sub" / "deeper" / "d.txt").write_text("D text", encoding="utf-8")
    (root / ".secret.txt").write_text("hidden", encoding="utf-8")
    (root / ".hidden_dir" / "e.txt").write_text("hidden too", encoding="utf-8")
    documents, errors = load_documents([root, root / "c.txt"], MB)  # c.txt twice: loaded once
    assert not errors
    assert [d.source for d in documents] == ["corpus/a.md", "corpus/b_sub/deeper/d.txt", "corpus/c.txt"]


def test_source_outside_cwd_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "doc.txt").write_text("text", encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    document = load_one(Path("../doc.txt"))
    assert document.source == (tmp_path / "doc.txt").as_posix()


def test_a_single_str_path_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text("text", encoding="utf-8")
    documents, errors = load_documents("doc.txt", MB)  # type: ignore[arg-type]
    assert [d.source for d in documents] == ["doc.txt"] and not errors


def test_supported_extensions() -> None:
    assert set(SUPPORTED_EXTENSIONS) == {
        *(".txt", ".md", ".markdown", ".html", ".htm", ".xhtml", ".pdf", ".docx", ".pptx", ".xlsx", ".xlsm"),
        *(".ods", ".odt", ".odp", ".epub", ".csv", ".tsv", ".eml", ".msg", ".rtf"),
        *(".png", ".jpg", ".jpeg", ".tif", ".tiff"),
    }


# --- doc_id ------------------------------------------------------------------------------------


def test_doc_id_is_a_stable_content_hash(tmp_path: Path) -> None:
    path = tmp_path / "doc.txt"
    path.write_text("Some content.", encoding="utf-8")
    first = load_one(path).doc_id
    assert load_one(path).doc_id == first
    (tmp_path / "copy_elsewhere.md").write_text("Some content.", encoding="utf-8")
    assert load_one(tmp_path / "copy_elsewhere.md").doc_id == first  # same text, same id
    path.write_text("Some content, edited.", encoding="utf-8")
    assert load_one(path).doc_id != first


def test_crlf_and_lf_give_the_same_doc_id(tmp_path: Path) -> None:
    (tmp_path / "unix.txt").write_bytes(b"one\ntwo\n")
    (tmp_path / "dos.txt").write_bytes(b"one\r\ntwo\r\n")
    assert load_one(tmp_path / "unix.txt").doc_id == load_one(tmp_path / "dos.txt").doc_id


def test_identical_text_in_one_batch_is_reported_once(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Same words.", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Same words.", encoding="utf-8")
    documents, errors = load_documents([tmp_path], MB)
    assert [d.source for d in documents] == ["a.txt"]
    assert [(e.path, "a.txt" in e.reason) for e in errors] == [("b.txt", True)]


# --- bad files: one error each, the rest of the batch still loads ---------------------------


def _corrupt_pdf(path: Path) -> None:
    path.write_bytes(b"%PDF-1.4\nthis is not really a pdf \x00\x01\x02 at all")


def _corrupt_docx(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04 truncated zip, not a real docx")


def _zip_not_docx(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not a word document")


def _scanned_pdf(path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    with path.open("wb") as handle:
        writer.write(handle)


def _password_pdf(path: Path) -> None:
    make_pdf(path.with_suffix(".plain"), ["Hidden text."])
    writer = PdfWriter(clone_from=path.with_suffix(".plain"))
    path.with_suffix(".plain").unlink()
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    writer.write(path)


def _docx_without_text(path: Path) -> None:
    docx.Document().save(str(path))


BAD_FILES = {
    "unsupported": ("image.xyz", lambda p: p.write_bytes(b"data"), "unsupported file type .xyz"),
    "no_extension": ("Makefile", lambda p: p.write_bytes(b"all:"), "unsupported file type (no extension)"),
    "empty": ("empty.txt", lambda p: p.write_bytes(b""), "empty file"),
    "whitespace": ("blank.md", lambda p: p.write_bytes(b"  \n\t\r\n \n"), "only whitespace"),
    "binary": ("binary.txt", lambda p: p.write_bytes(b"text\x00\x01\x02more"), "binary content"),
    "not_utf8": ("latin.txt", lambda p: p.write_bytes("café".encode("latin-1")), "not UTF-8 text"),
    "oversized": ("huge.txt", lambda p: p.write_bytes(b"x" * (MB + 200_000)), "over the 1.0 MB limit"),
    "corrupt_pdf": ("broken.pdf", _corrupt_pdf, "PDF"),
    "scanned_pdf": ("scan.pdf", _scanned_pdf, "no extractable text"),
    "password_pdf": ("locked.pdf", _password_pdf, "encrypted PDF: needs a password"),
    "corrupt_docx": ("broken.docx", _corrupt_docx, "not a valid .docx file"),
    "zip_not_docx": ("archive.docx", _zip_not_docx, "corrupt or unreadable DOCX"),
    "empty_docx": ("nothing.docx", _docx_without_text, "no text in the document"),
    "empty_html": ("blank.html", lambda p: p.write_bytes(b"<html><script>x()</script></html>"), "no visible text"),
}


# the label /metrics counts each under (rag_ingest_errors_total{kind})
ERROR_KINDS = {
    "unsupported": "unsupported",
    "no_extension": "unsupported",
    "empty": "empty",
    "whitespace": "no_text",
    "binary": "encoding",
    "not_utf8": "encoding",
    "oversized": "too_large",
    "corrupt_pdf": "corrupt",
    "scanned_pdf": "no_text",
    "password_pdf": "encrypted",
    "corrupt_docx": "corrupt",
    "zip_not_docx": "corrupt",
    "empty_docx": "no_text",
    "empty_html": "no_text",
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_gives_one_error_and_the_batch_goes_on(tmp_path: Path, kind: str) -> None:
    name, write, expected = BAD_FILES[kind]
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "a_good.txt").write_text("A good file.", encoding="utf-8")
    write(folder / name)
    (folder / "z_good.md").write_text("# Z\n\nAnother good file.", encoding="utf-8")
    documents, errors = load_documents([folder], MB)
    assert [d.source for d in documents] == ["batch/a_good.txt", "batch/z_good.md"]
    assert len(errors) == 1, errors
    assert errors[0].path == f"batch/{name}"
    assert expected.lower() in errors[0].reason.lower()
    assert "\n" not in errors[0].reason
    assert str(errors[0]).startswith(f"batch/{name}: ")
    assert errors[0].kind == ERROR_KINDS[kind]


def test_oversized_reason_names_size_and_limit(tmp_path: Path) -> None:
    (tmp_path / "huge.txt").write_bytes(b"x" * (3 * MB))
    _, errors = load_documents([tmp_path / "huge.txt"], int(2.5 * MB))
    assert errors[0].reason == "file is 3.0 MB, over the 2.5 MB limit (max_file_mb)"


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Good.", encoding="utf-8")
    documents, errors = load_documents([tmp_path / "missing.txt", tmp_path / "good.txt"], MB)
    assert [d.source for d in documents] == ["good.txt"]
    assert [(e.path, e.reason) for e in errors] == [("missing.txt", "no such file or folder")]


def test_broken_symlink_in_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Good.", encoding="utf-8")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "gone.txt")
    documents, errors = load_documents([tmp_path], MB)
    assert [d.source for d in documents] == ["good.txt"]
    assert [e.path for e in errors] == ["dangling.txt"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files regardless of mode")
def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Good.", encoding="utf-8")
    locked = tmp_path / "locked.txt"
    locked.write_text("Secret.", encoding="utf-8")
    locked.chmod(0)
    try:
        documents, errors = load_documents([tmp_path], MB)
    finally:
        locked.chmod(0o644)
    assert [d.source for d in documents] == ["good.txt"]
    assert [(e.path, e.reason) for e in errors] == [("locked.txt", "permission denied")]


def test_unreadable_file_when_reading_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same case without relying on file modes (which root ignores): reading raises."""
    (tmp_path / "good.txt").write_text("Good.", encoding="utf-8")
    (tmp_path / "locked.txt").write_text("Secret.", encoding="utf-8")
    real_read_bytes = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    documents, errors = load_documents([tmp_path], MB)
    assert [d.source for d in documents] == ["good.txt"]
    assert [(e.path, e.reason) for e in errors] == [("locked.txt", "permission denied")]


def test_every_bad_kind_in_one_batch(tmp_path: Path) -> None:
    for name, write, _ in BAD_FILES.values():
        write(tmp_path / name)
    make_pdf(tmp_path / "good.pdf", ["Good PDF text."])
    make_docx(tmp_path / "good.docx", ["Good DOCX text."])
    (tmp_path / "good.html").write_text("<title>T</title><p>Good HTML.</p>", encoding="utf-8")
    documents, errors = load_documents([tmp_path, tmp_path / "missing"], MB)
    assert sorted(d.source for d in documents) == ["good.docx", "good.html", "good.pdf"]
    assert sorted(e.path for e in errors) == sorted([name for name, _, _ in BAD_FILES.values()] + ["missing"])
