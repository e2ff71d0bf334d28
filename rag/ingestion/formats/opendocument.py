"""OpenDocument text and slides (.odt, .odp), as LibreOffice writes them: headings and paragraphs in order;
slides cited as "slide N"."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from rag.ingestion.formats.base import Format, Joiner, Loaded, Skip, first_line, one_line

if TYPE_CHECKING:
    from odf.element import Element
    from odf.opendocument import OpenDocument

_TEXT_NS = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_BLOCKS = {(_TEXT_NS, "h"), (_TEXT_NS, "p")}


class Odt(Format):
    name = "ODT"
    extensions = (".odt",)
    zip_mimetype = "application/vnd.oasis.opendocument.text"
    no_text = "no text in the document"

    def load(self, path: Path) -> Loaded:
        document = _open(path)
        text = "\n\n".join(_blocks(document.text))
        return Loaded(text, _title(document) or first_line(text))


class Odp(Format):
    name = "ODP"
    extensions = (".odp",)
    zip_mimetype = "application/vnd.oasis.opendocument.presentation"
    no_text = "no text on any slide"

    def load(self, path: Path) -> Loaded:
        from odf.draw import Page

        document = _open(path)
        joiner = Joiner()
        for number, slide in enumerate(document.presentation.getElementsByType(Page), start=1):
            joiner.add("\n".join(_blocks(slide)), f"slide {number}")
        return joiner.loaded(_title(document))


def _open(path: Path) -> OpenDocument:
    from odf.opendocument import load

    try:
        return load(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise Skip(f"not a valid OpenDocument file ({one_line(exc)})", "corrupt") from None


def _blocks(root: Element) -> list[str]:
    """Each heading or paragraph's text, depth first (lists, tables and frames hold paragraphs too)."""
    from odf import teletype

    found: list[str] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if getattr(node, "qname", None) in _BLOCKS:
            text = " ".join(teletype.extractText(node).split())
            if text:
                found.append(text)
            continue
        stack.extend(reversed(getattr(node, "childNodes", [])))
    return found


def _title(document: OpenDocument) -> str | None:
    from odf.dc import Title

    titles = [str(t) for t in document.meta.getElementsByType(Title)]
    return titles[0] if titles and titles[0].strip() else None
