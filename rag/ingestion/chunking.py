"""Sentence spans and sentence-aligned chunks whose offsets index the document text exactly.

Retrieval quotes chunks and citations point into `Document.text`, so nothing here copies or rewrites
text: every sentence and chunk is a `(start, end)` span, and `chunk.text` is just that slice.
"""

from __future__ import annotations

import re
from itertools import pairwise

from rag.types import Chunk, Document

# A sentence ends at terminal punctuation, then any closing quotes/brackets, then any citation
# markers such as "[1]" or "[2, 3]" (so "... model [1]." and "... model. [1]" keep their marker),
# and only where whitespace follows: "3.5", "e.g.x" and URLs never end a sentence.
_SENTENCE_END = re.compile(
    r"""[.!?\u2026]+["'\u201d\u2019\u00bb)\]]*(?:[ \t]*\[\d+(?:\s*[,\u2013-]\s*\d+)*\])*(?=\s|$)"""
    r"""|[\u3002\uff01\uff1f]+[\u300d\u300f\u201d\u2019\uff09]*"""  # CJK full stops need no space after
)

# Lines that start a block of their own: list items, markdown headings, table rows, fences, rules.
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*+•‣◦▪▫●○■□►▶✓✔\u2013\u2014]|\d{1,3}[.)]|\(\d{1,3}\)|[a-z]\))[ \t]+\S")
_OWN_LINE = re.compile(r"[ \t]{0,3}(?:#{1,6}(?:[ \t]|$)|\||```|~~~|(?:[-*_=][ \t]*){3,}$)")

# Abbreviations that (almost) never end a sentence: titles and "for example"-like words, and,
# when a number follows, reference words ("No. 5", "Fig. 3", "Jan. 5"). Company suffixes (Inc.)
# and "etc." are left out on purpose: they often do end a sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms mx dr prof rev hon gen col capt lt sgt st mt sr jr messrs e.g eg i.e ie cf vs viz al dept".split()  # noqa: SIM905
)
_NUMBER_ABBREVIATIONS = frozenset(
    "no nos fig figs eq eqs vol vols ch sec pp p approx ca est jan feb mar apr jun jul aug sep sept oct nov dec".split()  # noqa: SIM905
)
_DOTTED_ACRONYM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # U.S, e.g, Ph.D

# A unit that ends a sentence (not a heading, a list lead-in or a piece of an over-long sentence).
_FINISHED = re.compile(r"[.!?\u2026\u3002\uff01\uff1f](?:[^\w\s]|\s*\[\d[^\]]*\])*$")
# How close to chunk_size a chunk may stop early to end at a better place.
_NEAR_END = 0.3


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text`, in order, trimmed of surrounding whitespace.

    Blank lines, list items and markdown headings always separate sentences; inside a block, a
    sentence ends at . ! ? or … followed by whitespace and a word that is not lowercase, unless the
    word before the period is a known abbreviation, an initial or a dotted acronym (U.S.).
    The spans cover every non-whitespace character of `text`.
    """
    cuts = [0]
    for block_start, block_end in _blocks(text):
        if block_start > cuts[-1]:
            cuts.append(block_start)
        for match in _SENTENCE_END.finditer(text, block_start, block_end):
            if _ends_sentence(text, match, block_end):
                cuts.append(match.end())
    cuts.append(len(text))
    return [span for a, b in pairwise(cuts) if (span := _trim(text, a, b))]


class Chunker:
    """Packs whole sentences into chunks of at most `chunk_size` characters.

    Sentence-aligned chunks read well when quoted and keep claims intact for citation; the overlap
    (trailing sentences of the previous chunk, at most `chunk_overlap` characters) keeps context that
    straddles a boundary retrievable from either side.
    """

    def __init__(self, chunk_size: int, chunk_overlap: int) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        if not 0 <= chunk_overlap < chunk_size:
            raise ValueError("chunk_overlap must be >= 0 and smaller than chunk_size")
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap

    def split(self, document: Document) -> list[Chunk]:
        text = document.text
        spans = self._span_chunks(text)
        return [
            Chunk(
                chunk_id=f"{document.doc_id}:{index}",
                doc_id=document.doc_id,
                index=index,
                text=text[start:end],
                start=start,
                end=end,
            )
            for index, (start, end) in enumerate(spans)
        ]

    def _span_chunks(self, text: str) -> list[tuple[int, int]]:
        units = [piece for span in split_sentences(text) for piece in self._fit(text, span)]
        size, overlap = self.chunk_size, self.chunk_overlap
        chunks: list[tuple[int, int]] = []
        first = new = 0  # first unit of the chunk (overlap included), first unit not yet in a chunk
        while new < len(units):
            start = units[first][0]
            last = new
            while last + 1 < len(units) and units[last + 1][1] - start <= size:
                last += 1
            if last + 1 < len(units):
                last = self._best_end(text, units, first, new, last)
            chunks.append((start, units[last][1]))
            # Overlap: the trailing sentences that fit in `overlap`, as long as the next chunk can
            # still take the next new unit (else it could only repeat itself).
            new = first_next = last + 1
            while (
                first_next - 1 > first
                and new < len(units)
                and units[last][1] - units[first_next - 1][0] <= overlap
                and units[new][1] - units[first_next - 1][0] <= size
            ):
                first_next -= 1
            first = first_next
        return chunks

    def _best_end(self, text: str, units: list[tuple[int, int]], first: int, new: int, last: int) -> int:
        """Where to end a chunk that could run to unit `last` (never before `new`, the first unit it adds).

        Near the end (the last 30% of chunk_size), prefer a paragraph break after a finished sentence,
        else any finished sentence, so chunks do not end on a heading or a list's lead-in ("... aims
        to:"); otherwise end at `last`.
        """
        floor = units[first][0] + self.chunk_size * (1 - _NEAR_END)
        near = [k for k in range(last, new - 1, -1) if units[k][1] >= floor]
        finished = [k for k in near if _FINISHED.search(text, max(units[k][0], units[k][1] - 40), units[k][1])]
        paragraph = [k for k in finished if text.count("\n", units[k][1], units[k + 1][0]) >= 2]
        return (paragraph or finished or [last])[0]

    def _fit(self, text: str, span: tuple[int, int]) -> list[tuple[int, int]]:
        """Split a sentence longer than chunk_size at line breaks or words (hard cut as last resort)."""
        start, end = span
        pieces: list[tuple[int, int]] = []
        size = self.chunk_size
        while end - start > size:
            window = text[start + 1 : start + size + 1]  # a cut at index i keeps text[start:i]
            newline = window.rfind("\n")
            space = max(window.rfind(" "), window.rfind("\t"), newline)
            if newline >= size // 2:
                cut = start + 1 + newline
            elif space >= 0:
                cut = start + 1 + space
            else:
                cut = start + size
            piece = _trim(text, start, cut)
            if piece:
                pieces.append(piece)
            start = cut
            while start < end and text[start].isspace():
                start += 1
        if start < end:
            pieces.append((start, end))
        return pieces


def _blocks(text: str) -> list[tuple[int, int]]:
    """Spans separated by blank lines, list items, headings and other one-line markdown blocks."""
    starts = [0]
    previous_breaks = False  # the previous line was blank or a one-line block
    pos = 0
    for line in text.splitlines(keepends=True):
        blank = not line.strip()
        own_line = bool(_OWN_LINE.match(line))
        if pos and (blank or previous_breaks or own_line or _LIST_ITEM.match(line)):
            starts.append(pos)
        previous_breaks = blank or own_line
        pos += len(line)
    return list(zip(starts, [*starts[1:], len(text)], strict=True))


def _ends_sentence(text: str, match: re.Match[str], block_end: int) -> bool:
    """Whether a candidate sentence end is a real one (not an abbreviation or mid-sentence '...')."""
    pos = match.end()
    while pos < block_end and text[pos].isspace():
        pos += 1
    if pos >= block_end:
        return True
    if text[pos].islower():
        return False
    if match.group() != ".":
        return True
    word_start = match.start()
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start : match.start()].lstrip("\"'\u201c\u2018([{\u00ab")
    if len(word) == 1 and word.isalpha():
        return False  # an initial: "J. Smith"
    if word.isdigit() and len(word) <= 3 and not text[text.rfind("\n", 0, word_start) + 1 : word_start].strip():
        return False  # a numbered list item: "1. First point"
    word = word.lower()
    if word in _ABBREVIATIONS or (word in _NUMBER_ABBREVIATIONS and text[pos].isdigit()):
        return False
    return not _DOTTED_ACRONYM.fullmatch(word)


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """`(start, end)` narrowed to exclude surrounding whitespace; None when nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None
