"""What every format loader shares: its result (`Loaded`), its interface (`Format`), the one-line refusal
(`Skip`) and the text helpers (decoding, titles) more than one format needs.

A new format is one module in this folder with a `Format` subclass, listed in `formats.FORMATS`.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import ClassVar

from rag.types import IngestErrorKind, Place

MB = 1024 * 1024
TITLE_MAX_CHARS = 120
LABEL_MAX_WORDS = 2  # a first line this short, over a longer headline, is a section label
# An office file of text unpacks to a few times its text (markup around every run); more than this many
# times the size limit is a zip bomb, refused before it is parsed (which would take minutes and gigabytes).
ZIP_EXPANSION = 4


class Skip(Exception):
    """A file-level problem whose message is already the one-line reason shown to the user; `kind` counts it."""

    def __init__(self, reason: str, kind: IngestErrorKind) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class Loaded:
    """A file's text, its title if the format has one, where its pages/slides/sheets start, and the files
    it carries (a mail's attachments) as `(name, bytes)`, for the loader to read as files of their own."""

    text: str
    title: str | None = None
    places: tuple[Place, ...] = ()
    attachments: tuple[tuple[str, bytes], ...] = ()


class Format:
    """One file format: the extensions it is named by, the signature it is recognised by, how it is read.

    `signature` (the file's first bytes) or `zip_member` (a file inside a zip container) make a renamed
    file be read as what it is; formats with neither (plain text) are known by extension only.
    """

    name: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]]
    signatures: ClassVar[tuple[bytes, ...]] = ()
    zip_members: ClassVar[tuple[str, ...]] = ()  # any of these inside a zip container means this format
    zip_mimetype: ClassVar[str] = ""  # OpenDocument and EPUB say what they are in a `mimetype` member
    no_text: ClassVar[str] = "no text: the file holds only whitespace"

    def load(self, path: Path) -> Loaded:
        raise NotImplementedError

    def recognises(self, head: bytes, members: frozenset[str], mimetype: str) -> bool:
        if self.zip_mimetype:
            return mimetype == self.zip_mimetype
        if self.zip_members:
            return any(m in members for m in self.zip_members)
        return any(head.startswith(s) for s in self.signatures)


class Joiner:
    """Builds a document's text from parts (pages, slides, sheets) separated by blank lines, noting where
    each labelled part starts so its chunks can cite "p. 4" or "slide 3"."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.places: list[Place] = []
        self._length = 0

    def add(self, text: str, label: str = "") -> None:
        text = text.strip()
        if not text:
            return
        if self.parts:
            self._length += 2
        if label:
            self.places.append(Place(self._length, label))
        self.parts.append(text)
        self._length += len(text)

    def loaded(self, title: str | None = None, *, title_from_text: bool = True) -> Loaded:
        """`title_from_text=False` where the first line names a part, not the file (a sheet's name)."""
        text = "\n\n".join(self.parts)
        return Loaded(text, title or (first_line(text) if title_from_text else None), tuple(self.places))


def check_expansion(path: Path, max_bytes: int) -> None:
    """Refuse a zip container that unpacks to more than `ZIP_EXPANSION` times the size limit."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        return  # the loader says what is wrong with it
    if unpacked > ZIP_EXPANSION * max_bytes:
        raise Skip(
            f"unpacks to {unpacked / MB:.0f} MB, over {ZIP_EXPANSION} x the {max_bytes / MB:.1f} MB limit "
            "(a zip bomb?)",
            "too_large",
        )


def decode(data: bytes, fallback_encoding: str | None = None) -> str:
    """UTF-8 (with or without BOM), or UTF-16 with a BOM; anything else is reported, not guessed."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise Skip("not valid UTF-16 text despite its byte-order mark", "encoding") from None
    if b"\x00" in data:
        raise Skip("binary content (NUL bytes): not a text file", "encoding")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if fallback_encoding:
            try:
                return data.decode(fallback_encoding)
            except (LookupError, UnicodeDecodeError):
                pass
        raise Skip(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start} does not decode); save it as UTF-8",
            "encoding",
        ) from None


def one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


# --- titles ------------------------------------------------------------------------------------

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (
    rf"(?:\d{{4}}-\d{{1,2}}-\d{{1,2}}|\d{{1,2}}[./]\d{{1,2}}[./]\d{{2,4}}|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{4}}|{_MONTH}\s+\d{{4}})"
)
# Metadata that leads a page's text but names no article: a date (with its label), a byline.
_LEADING_METADATA = re.compile(
    rf"^\s*(?:(?:(?:date|published|posted|updated|last updated)(?:\s+on)?\s*:?\s*)?{_DATE}(?:[\s,|·•-]+|$)"
    r"|by\s+[A-Z][\w.'-]*(?:\s+(?:[A-Z][\w.'-]*|de|van|von|der|la))*\s*(?:[,|·•-]\s*|$))",
    re.IGNORECASE,
)


def first_line(text: str) -> str | None:
    """The title a text's own first lines give: the first line that is not metadata (a date, a byline) or a
    section label over a headline ("Technology", then the headline), with a leading date or byline cut
    off; a first line that is a whole paragraph gives its first sentence.

    The title is shown with every passage and citation: a date or a label says nothing about which
    article it is.
    """
    head = text[: 40 * TITLE_MAX_CHARS]  # the first lines are all it reads: not a whole book's lines split
    lines = (line.strip() for line in head.splitlines() if line.strip())
    candidates = [rest for line in islice(lines, 6) if (rest := _without_metadata(line))]
    if not candidates:
        return None
    if len(candidates) >= 2 and len(candidates[0].split()) <= LABEL_MAX_WORDS and is_headline(candidates[1]):
        return candidates[1]
    line = candidates[0]
    if len(line) > TITLE_MAX_CHARS:
        from rag.ingestion.chunking import split_sentences

        start, end = split_sentences(line)[0]
        line = line[start:end]
    return line


def _without_metadata(line: str) -> str:
    while match := _LEADING_METADATA.match(line):
        if not match.end():
            break
        line = line[match.end() :].strip()
    return line


def is_headline(line: str) -> bool:
    return len(line.split()) > LABEL_MAX_WORDS and len(line) <= TITLE_MAX_CHARS and not line.endswith(".")


def clean_title(title: str | None) -> str | None:
    """One line, trimmed, at most ~120 characters (cut at a word, with an ellipsis)."""
    title = " ".join((title or "").split())
    if len(title) > TITLE_MAX_CHARS:
        cut = title.rfind(" ", 0, TITLE_MAX_CHARS)
        title = title[: cut if cut > TITLE_MAX_CHARS // 2 else TITLE_MAX_CHARS].rstrip(" ,;:-") + "…"
    return title or None


def row_lines(header: list[str], rows: list[list[str]]) -> list[str]:
    """Table rows as records that read like sentences: "Orion; Budget (EUR): 870000; Owner: Dana Whitfield."

    Each cell follows its header; the row's first cell names the row and stands alone, unless it has no
    letters (a week number, a date: "Week: 2; On call: Omar Haddad.", not "2; …", which no question would
    find). Chosen on the office set's table facts with llama.cpp's Q4_K_M model (docs/formats.md): rows as
    "Week 2 | On call Omar Haddad" had it name week 1's person for week 2, and a header repeated on every
    row ("Room: Atlas; …") made a room list look like the answer to "Which room issues parking permits?".
    Empty cells are left out, so a sparse sheet stays short.
    """
    lines = []
    for row in rows:
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if not header:
            lines.append("; ".join(c for c in cells if c) + ".")
            continue
        named, first = [], cells[0]
        if first and (any(c.isalpha() for c in first) or not header[0].strip()):
            named.append(first)
        elif first:
            named.append(f"{header[0].strip()}: {first}")
        pairs = zip(header[1:], cells[1:], strict=False)  # a row may be shorter or longer than its header
        named += [f"{name.strip()}: {cell}" if name.strip() else cell for name, cell in pairs if cell]
        named += [c for c in cells[len(header) :] if c]
        lines.append("; ".join(named) + ".")
    return lines
