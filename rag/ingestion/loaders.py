"""Turn files and folders into `Document`s, reporting every file that could not be read.

Ingestion must survive real folders (scanned PDFs, stray binaries, huge exports), so a bad file
becomes an `IngestError` with a one-line reason and the batch goes on; nothing here raises for a
file's content. All parsing is local: no loader touches the network.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from rag.types import Document, IngestError, IngestErrorKind

if TYPE_CHECKING:
    from lxml.html import HtmlElement

_MB = 1024 * 1024  # `max_bytes` is usually int(settings.max_file_mb * _MB)
_TITLE_MAX_CHARS = 120
ZIP_EXPANSION = 4  # a .docx of text unpacks to about 2-3 times its text: markup around every run
_LABEL_MAX_WORDS = 2  # a first line this short, over a longer headline, is a section label


class _Skip(Exception):
    """A file-level problem whose message is already the one-line reason shown to the user; `kind` counts it."""

    def __init__(self, reason: str, kind: IngestErrorKind) -> None:
        super().__init__(reason)
        self.kind = kind


_Loader = Callable[[Path], tuple[str, str | None]]  # a file's text and, if the format has one, its title


def load_documents(paths: Iterable[Path | str], max_bytes: int) -> tuple[list[Document], list[IngestError]]:
    """Load every supported file under `paths` (files or folders, walked recursively in sorted order).

    Returns the documents and one `IngestError` per path that was skipped, with why. Hidden files and
    folders are skipped silently when walking; a file listed twice is loaded once, and a file whose
    text is identical to an earlier one is reported (same `doc_id`, so it would collide in an index).
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    cwd = Path.cwd()
    documents: list[Document] = []
    errors: list[IngestError] = []
    seen_files: set[Path] = set()
    seen_texts: dict[str, str] = {}
    for path, problem in _candidates(paths):
        shown = _display(path, cwd)
        kind: IngestErrorKind = "unreadable"
        if problem is None:
            try:
                real = path.resolve()
                if real in seen_files:
                    continue
                seen_files.add(real)
                document = _load_file(path, shown, max_bytes)
            except _Skip as skip:
                problem, kind = str(skip), skip.kind
            except Exception as exc:  # any library failure on a bad file is that file's problem only
                problem, kind = (
                    _describe(exc, path.suffix.lower()),
                    "unreadable" if isinstance(exc, OSError) else "corrupt",
                )
            else:
                if document.doc_id in seen_texts:
                    problem, kind = f"same text as {seen_texts[document.doc_id]} (duplicate skipped)", "duplicate"
                else:
                    seen_texts[document.doc_id] = shown
                    documents.append(document)
        if problem is not None:
            errors.append(IngestError(path=shown, reason=problem, kind=kind))
    return documents, errors


# --- one loader per format -------------------------------------------------------------------


def _load_txt(path: Path) -> tuple[str, str | None]:
    text = _decode(path.read_bytes())
    return text, _first_line(text)


def _load_markdown(path: Path) -> tuple[str, str | None]:
    """Markdown stays as written: its source is readable text and citation offsets index it."""
    text = _decode(path.read_bytes())
    return text, _markdown_title(text)


def _load_html(path: Path) -> tuple[str, str | None]:
    """Visible text only (inscriptis keeps the layout of lists and tables; scripts/styles are dropped).

    Spaced as a browser shows it (inscriptis' strict CSS profile): its default pads every inline element
    with spaces, so generated manuals' `<span>PostgreSQL</span>.` read "PostgreSQL ." and their
    sentences no longer matched the page's own.
    """
    from inscriptis import Inscriptis
    from inscriptis.css_profiles import CSS_PROFILES
    from inscriptis.model.config import ParserConfig
    from lxml.etree import ParserError
    from lxml.html import document_fromstring

    data = path.read_bytes()
    markup = _decode(data, fallback_encoding=_declared_charset(data))
    markup = re.sub(r"^\s*<\?xml[^>]*\?>", "", markup)  # lxml rejects str input with an XML declaration
    try:
        tree = document_fromstring(markup)
    except ParserError:
        raise _Skip("no visible text in the page", "no_text") from None
    for hidden in tree.xpath("//script | //style | //noscript | //template"):
        hidden.drop_tree()
    title = tree.findtext(".//title") or _element_text(tree.find(".//h1"))
    return Inscriptis(tree, ParserConfig(css=CSS_PROFILES["strict"])).get_text().strip(), title


def _load_pdf(path: Path) -> tuple[str, str | None]:
    """Page texts separated by blank lines; a PDF of scanned images has no text layer and is skipped."""
    from pypdf import PdfReader

    with _quiet_pypdf():
        reader = PdfReader(path)
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")  # many "protected" PDFs only restrict printing/copying
            except Exception as exc:  # e.g. AES without the optional `cryptography` package
                raise _Skip(f"encrypted PDF that cannot be opened ({_one_line(exc)})", "encrypted") from None
            if not unlocked:
                raise _Skip("encrypted PDF: needs a password", "encrypted")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        try:
            title = reader.metadata.title if reader.metadata else None
        except Exception:  # a broken info dictionary only costs us the title
            title = None
    text = "\n\n".join(page for page in pages if page)
    if not text.strip():
        raise _Skip(
            f"no extractable text in {len(pages)} page(s): scanned or image-only PDF? (it would need OCR)", "no_text"
        )
    return text, (title if isinstance(title, str) else None) or _first_line(text)


def _load_docx(path: Path) -> tuple[str, str | None]:
    """Paragraphs and tables in document order; each paragraph (or table) becomes a text paragraph."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(str(path))
    except (zipfile.BadZipFile, PackageNotFoundError):  # python-docx says "package not found" for non-zips
        raise _Skip(
            "not a valid .docx file (not a zip archive; old binary .doc files are not supported)", "corrupt"
        ) from None
    blocks: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            blocks.append(block.text.strip())
        else:
            rows = (_dedupe([cell.text.strip() for cell in row.cells]) for row in block.rows)
            blocks.append("\n".join(" | ".join(cell for cell in row if cell) for row in rows).strip())
    text = "\n\n".join(block for block in blocks if block)
    return text, document.core_properties.title or _first_line(text)


_LOADERS: dict[str, _Loader] = {
    ".txt": _load_txt,
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".html": _load_html,
    ".htm": _load_html,
    ".pdf": _load_pdf,
    ".docx": _load_docx,
}
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_LOADERS)
_KIND = {".txt": "text", ".md": "Markdown", ".markdown": "Markdown", ".html": "HTML", ".htm": "HTML"}
_NO_TEXT = {
    ".html": "no visible text in the page",
    ".htm": "no visible text in the page",
    ".docx": "no text in the document",
}


# --- walking and the per-file pipeline ---------------------------------------------------------


def _candidates(paths: Iterable[Path | str]) -> Iterator[tuple[Path, str | None]]:
    """Each file to load with None, or a path that cannot be loaded with the reason why."""
    visited: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        kind = _kind_of(path)
        if kind == "folder":
            yield from _walk(path, visited)
        else:
            yield path, None if kind == "file" else kind


def _walk(folder: Path, visited: set[Path]) -> Iterator[tuple[Path, str | None]]:
    """Entries in name order, depth first, skipping hidden names; symlink loops are visited once."""
    real = folder.resolve()
    if real in visited:
        return
    visited.add(real)
    try:
        entries = sorted(folder.iterdir(), key=lambda entry: entry.name)
    except OSError as exc:
        yield folder, f"cannot list folder: {_os_reason(exc)}"
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        kind = _kind_of(entry)
        if kind == "folder":
            yield from _walk(entry, visited)
        else:
            yield entry, None if kind == "file" else kind


def _kind_of(path: Path) -> str:
    """ "file", "folder", or why the path is neither."""
    try:
        if path.is_dir():
            return "folder"
        if path.is_file():
            return "file"
        if path.is_symlink():
            return "broken symbolic link"
        return "not a regular file or folder" if path.exists() else "no such file or folder"
    except OSError as exc:
        return _os_reason(exc)


def _load_file(path: Path, shown: str, max_bytes: int) -> Document:
    extension = path.suffix.lower()
    loader = _LOADERS.get(extension)
    if loader is None:
        raise _Skip(
            f"unsupported file type {extension or '(no extension)'} (supported: {', '.join(_LOADERS)})", "unsupported"
        )
    size = path.stat().st_size
    if size > max_bytes:
        size_mb, limit_mb = _megabytes(size, max_bytes)
        raise _Skip(f"file is {size_mb} MB, over the {limit_mb} MB limit (max_file_mb)", "too_large")
    if size == 0:
        raise _Skip("empty file", "empty")
    if extension == ".docx":
        _check_expansion(path, max_bytes)
    text, title = loader(path)
    if len(text) > max_bytes:  # a small file can hold far more text (compressed streams): the limit is on both
        raise _Skip(
            f"its text is {len(text) / _MB:.1f} MB, over the {max_bytes / _MB:.1f} MB limit (max_file_mb)", "too_large"
        )
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise _Skip(_NO_TEXT.get(extension, "no text: the file holds only whitespace"), "no_text")
    return Document(doc_id=document_id(text), title=_clean_title(title) or path.stem, source=shown, text=text)


def _check_expansion(path: Path, max_bytes: int) -> None:
    """A .docx is a zip: refuse one that unpacks to more than `ZIP_EXPANSION` times the size limit (a zip
    bomb) before parsing it, which would take minutes and gigabytes."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        return  # the loader says what is wrong with it
    if unpacked > ZIP_EXPANSION * max_bytes:
        raise _Skip(
            f"unpacks to {unpacked / _MB:.0f} MB, over {ZIP_EXPANSION} x the {max_bytes / _MB:.1f} MB limit "
            "(a zip bomb?)",
            "too_large",
        )


def document_id(text: str) -> str:
    """A content hash: an edited document gets a new id, so the index knows to re-embed it."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# --- helpers -----------------------------------------------------------------------------------


def _decode(data: bytes, fallback_encoding: str | None = None) -> str:
    """UTF-8 (with or without BOM), or UTF-16 with a BOM; anything else is reported, not guessed."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise _Skip("not valid UTF-16 text despite its byte-order mark", "encoding") from None
    if b"\x00" in data:
        raise _Skip("binary content (NUL bytes): not a text file", "encoding")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if fallback_encoding:
            try:
                return data.decode(fallback_encoding)
            except (LookupError, UnicodeDecodeError):
                pass
        raise _Skip(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start} does not decode); save it as UTF-8",
            "encoding",
        ) from None


def _declared_charset(data: bytes) -> str | None:
    match = re.search(rb"""charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", data[:4096], re.IGNORECASE)
    return match.group(1).decode("ascii") if match else None


def _markdown_title(text: str) -> str | None:
    """The first level-1 heading (ATX or setext), else the first heading of any level; code is skipped."""
    prose = re.sub(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", "", text, flags=re.MULTILINE | re.DOTALL)
    level_one = re.search(
        r"^ {0,3}(?:#[ \t]+(.+?)(?:[ \t]+#+)?|(\S.*?)[ \t]*\r?\n {0,3}=+)[ \t]*$", prose, re.MULTILINE
    )
    if level_one:
        return level_one.group(1) or level_one.group(2)
    any_level = re.search(r"^ {0,3}#{2,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", prose, re.MULTILINE)
    return any_level.group(1) if any_level else None


def _first_line(text: str) -> str | None:
    """The first line, unless it is a section label over a headline ("Technology", then the headline).

    The title is shown with every passage and citation: a label says nothing about which article it is.
    """
    lines = list(islice((line.strip() for line in text.splitlines() if line.strip()), 2))
    if len(lines) >= 2 and len(lines[0].split()) <= _LABEL_MAX_WORDS and _is_headline(lines[1]):
        return lines[1]
    return lines[0] if lines else None


def _is_headline(line: str) -> bool:
    return len(line.split()) > _LABEL_MAX_WORDS and len(line) <= _TITLE_MAX_CHARS and not line.endswith(".")


def _element_text(element: HtmlElement | None) -> str | None:
    return element.text_content() if element is not None else None


def _clean_title(title: str | None) -> str | None:
    """One line, trimmed, at most ~120 characters (cut at a word, with an ellipsis)."""
    title = " ".join((title or "").split())
    if len(title) > _TITLE_MAX_CHARS:
        cut = title.rfind(" ", 0, _TITLE_MAX_CHARS)
        title = title[: cut if cut > _TITLE_MAX_CHARS // 2 else _TITLE_MAX_CHARS].rstrip(" ,;:-") + "…"
    return title or None


def _dedupe(cells: list[str]) -> list[str]:
    """Merged table cells repeat their text in every grid cell they span; keep it once."""
    return [cell for i, cell in enumerate(cells) if i == 0 or cell != cells[i - 1]]


def _display(path: Path, cwd: Path) -> str:
    """POSIX path relative to the working directory when under it, else absolute; control characters in a
    name are shown escaped (`\\n`), so a listing or an error stays one line."""
    absolute = Path(os.path.abspath(path))
    try:
        shown = absolute.relative_to(cwd).as_posix()
    except ValueError:
        shown = absolute.as_posix()
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)


def _megabytes(size: int, limit: int) -> tuple[str, str]:
    """Both sizes in MB, with enough decimals that they visibly differ (20.04 vs 20.0, not 20.0 vs 20.0)."""
    for decimals in range(1, 7):
        size_mb, limit_mb = f"{size / _MB:.{decimals}f}", f"{limit / _MB:.{decimals}f}"
        if size_mb != limit_mb:
            break
    return size_mb, limit_mb


def _describe(exc: Exception, extension: str) -> str:
    if isinstance(exc, OSError):
        return _os_reason(exc)
    kind = _KIND.get(extension, extension.lstrip(".").upper())
    return f"corrupt or unreadable {kind} file: {_one_line(exc)}"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read: {exc.strerror or exc}"


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """pypdf logs a warning per quirk of a damaged PDF; the outcome is reported once, as an IngestError."""
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
