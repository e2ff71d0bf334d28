"""Turn files and folders into `Document`s, reporting every file that could not be read.

Ingestion must survive real folders (scanned PDFs, stray binaries, huge exports), so a bad file
becomes an `IngestError` with a one-line reason and the batch goes on; nothing here raises for a
file's content. All parsing is local: no loader touches the network.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from rag.ingestion.formats import SUPPORTED_EXTENSIONS, format_of
from rag.ingestion.formats.base import MB, Format, Loaded, Skip, check_expansion, clean_title, one_line
from rag.ingestion.formats.mail import MAX_ATTACHMENTS
from rag.types import Document, IngestError, IngestErrorKind, Place

__all__ = ["SUPPORTED_EXTENSIONS", "document_id", "load_documents"]


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
                loaded_documents, attachment_errors = _load_file(path, shown, max_bytes)
            except Skip as skip:
                problem, kind = str(skip), skip.kind
            except Exception as exc:  # any failure on a bad file is that file's problem only
                problem, kind = (
                    _os_reason(exc) if isinstance(exc, OSError) else f"unreadable: {one_line(exc)}",
                    "unreadable" if isinstance(exc, OSError) else "corrupt",
                )
            else:
                errors += attachment_errors
                for document in loaded_documents:
                    if document.doc_id in seen_texts:
                        errors.append(
                            IngestError(
                                document.source,
                                f"same text as {seen_texts[document.doc_id]} (duplicate skipped)",
                                "duplicate",
                            )
                        )
                    else:
                        seen_texts[document.doc_id] = document.source
                        documents.append(document)
        if problem is not None:
            errors.append(IngestError(path=shown, reason=problem, kind=kind))
    return documents, errors


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


def _load_file(path: Path, shown: str, max_bytes: int) -> tuple[list[Document], list[IngestError]]:
    """The file as a document, and each attachment it carries (a mail's) as one more, sourced "mail > name",
    with an `IngestError` for each attachment that could not be read."""
    loaded, chosen = _read(path, max_bytes)
    document = _document(loaded, shown, path.stem, chosen.no_text)
    if not loaded.attachments:
        return [document], []
    attached, errors = _attachments(loaded.attachments, shown, max_bytes)
    return [document, *attached], errors


def _read(path: Path, max_bytes: int) -> tuple[Loaded, Format]:
    chosen = format_of(path)
    size = path.stat().st_size
    if size > max_bytes:
        size_mb, limit_mb = _megabytes(size, max_bytes)
        raise Skip(f"file is {size_mb} MB, over the {limit_mb} MB limit (max_file_mb)", "too_large")
    if size == 0:
        raise Skip("empty file", "empty")
    if chosen.zip_members or chosen.zip_mimetype:  # a zip container: refused before anything is inflated
        check_expansion(path, max_bytes)
    try:
        loaded = chosen.load(path)
    except (Skip, OSError):
        raise
    except Exception as exc:  # any library failure on a bad file is that file's problem only
        raise Skip(f"corrupt or unreadable {chosen.name} file: {one_line(exc)}", "corrupt") from None
    if len(loaded.text) > max_bytes:  # a small file can hold far more text (compressed streams): the limit is on both
        raise Skip(
            f"its text is {len(loaded.text) / MB:.1f} MB, over the {max_bytes / MB:.1f} MB limit (max_file_mb)",
            "too_large",
        )
    return loaded, chosen


def _document(loaded: Loaded, source: str, stem: str, no_text: str) -> Document:
    text = loaded.text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise Skip(no_text, "no_text")
    if len(text) != len(loaded.text):  # line ends were folded: each place moves back by the \r before it
        places = tuple(Place(p.start - loaded.text.count("\r\n", 0, p.start), p.label) for p in loaded.places)
    else:
        places = loaded.places
    return Document(document_id(text), clean_title(loaded.title) or stem, source, text, places)


def _attachments(
    attachments: tuple[tuple[str, bytes], ...], shown: str, max_bytes: int
) -> tuple[list[Document], list[IngestError]]:
    """Each attachment read as the file it is (by the same registry), at most `MAX_ATTACHMENTS` a mail."""
    documents: list[Document] = []
    errors: list[IngestError] = []
    if len(attachments) > MAX_ATTACHMENTS:
        errors.append(
            IngestError(
                shown,
                f"{len(attachments) - MAX_ATTACHMENTS} of its {len(attachments)} attachments not read "
                f"(at most {MAX_ATTACHMENTS} a mail)",
                "too_large",
            )
        )
    with tempfile.TemporaryDirectory(prefix="rag-attachment-") as folder:
        for number, (name, data) in enumerate(attachments[:MAX_ATTACHMENTS]):
            safe = Path(name.replace("\\", "/")).name.lstrip(".") or f"attachment-{number}"
            source = f"{shown} > {_printable(safe)}"
            path = Path(folder) / f"{number}-{safe}"
            try:
                path.write_bytes(data)
                loaded, chosen = _read(path, max_bytes)
                documents.append(_document(loaded, source, Path(safe).stem, chosen.no_text))
            except Skip as skip:
                errors.append(IngestError(source, str(skip), skip.kind))
            except Exception as exc:  # as for a file: one attachment's problem is its own
                errors.append(IngestError(source, f"unreadable attachment: {one_line(exc)}", "corrupt"))
    return documents, errors


def document_id(text: str) -> str:
    """A content hash: an edited document gets a new id, so the index knows to re-embed it."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# --- helpers -----------------------------------------------------------------------------------


def _display(path: Path, cwd: Path) -> str:
    """POSIX path relative to the working directory when under it, else absolute; control characters in a
    name are shown escaped (`\\n`), so a listing or an error stays one line."""
    absolute = Path(os.path.abspath(path))
    try:
        shown = absolute.relative_to(cwd).as_posix()
    except ValueError:
        shown = absolute.as_posix()
    return _printable(shown)


def _printable(name: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def _megabytes(size: int, limit: int) -> tuple[str, str]:
    """Both sizes in MB, with enough decimals that they visibly differ (20.04 vs 20.0, not 20.0 vs 20.0)."""
    for decimals in range(1, 7):
        size_mb, limit_mb = f"{size / MB:.{decimals}f}", f"{limit / MB:.{decimals}f}"
        if size_mb != limit_mb:
            break
    return size_mb, limit_mb


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read: {exc.strerror or exc}"
