"""Every file format the assistant reads, one module each, and the registry that picks one for a file.

A file is read as what its own first bytes say it is (a PDF signature, an OpenDocument `mimetype`, the
parts inside an Office zip), so a .docx renamed .pdf is still read as Word; a file with no signature
(plain text, HTML, CSV, mail) goes by its extension. To add a format: a module here with a `Format`
subclass, and an instance in `FORMATS`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from rag.ingestion.formats.base import Format, Skip
from rag.ingestion.formats.delimited import Delimited
from rag.ingestion.formats.docx import Docx
from rag.ingestion.formats.epub import Epub
from rag.ingestion.formats.html import Html
from rag.ingestion.formats.image import Picture
from rag.ingestion.formats.mail import Eml, Msg
from rag.ingestion.formats.opendocument import Odp, Odt
from rag.ingestion.formats.pdf import Pdf
from rag.ingestion.formats.pptx import Pptx
from rag.ingestion.formats.rtf import Rtf
from rag.ingestion.formats.spreadsheet import Ods, Xlsx
from rag.ingestion.formats.text import Markdown, PlainText

FORMATS: tuple[Format, ...] = (
    PlainText(),
    Markdown(),
    Html(),
    Pdf(),
    Docx(),
    Pptx(),
    Xlsx(),
    Ods(),
    Odt(),
    Odp(),
    Epub(),
    Delimited(),
    Eml(),
    Msg(),
    Rtf(),
    Picture(),
)
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(ext for f in FORMATS for ext in f.extensions)
_BY_EXTENSION = {ext: f for f in FORMATS for ext in f.extensions}
_ZIP = b"PK\x03\x04"


def format_of(path: Path) -> Format:
    """The format `path`'s content is in, else the one its extension names; `Skip` when neither is known."""
    with path.open("rb") as handle:
        head = handle.read(16)
    members: frozenset[str] = frozenset()
    mimetype = ""
    if head.startswith(_ZIP):
        try:
            with zipfile.ZipFile(path) as archive:
                members = frozenset(archive.namelist())
                if "mimetype" in members:
                    mimetype = archive.read("mimetype")[:100].decode("ascii", "replace").strip()
        except (zipfile.BadZipFile, OSError, RuntimeError):  # the named format's loader says what is wrong
            pass
    for candidate in FORMATS:
        if candidate.recognises(head, members, mimetype):
            return candidate
    extension = path.suffix.lower()
    named = _BY_EXTENSION.get(extension)
    if named is None:
        raise Skip(
            f"unsupported file type {extension or '(no extension)'} (supported: {', '.join(SUPPORTED_EXTENSIONS)})",
            "unsupported",
        )
    return named
