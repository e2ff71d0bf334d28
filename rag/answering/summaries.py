"""Per-document summaries: written once by the model, kept next to the index, re-made when a document changes.

A summary of the collection cannot be read off the top chunks of a search, and writing one from whole
documents costs the model seconds per document on a CPU; kept summaries make "summarize the articles"
as fast as a lookup the second time. They are keyed by document id (the hash of its text), the
generator model and the summary prompt, so an edited document, another model or another prompt gets a
fresh one, and entries for documents no longer indexed are dropped on the next write. A document longer
than one section is summarised section by section, and the section summaries in turn, until they fit one
section (map-reduce within the model's context).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from rag.answering.prompts import SUMMARY_PROMPT, build_summary_prompt
from rag.generation.base import GenerationEngine
from rag.ingestion.chunking import split_sentences
from rag.lexical import content_stems, words
from rag.types import Document

SUMMARIES_FILE = "summaries.json"
MAX_REDUCE_ROUNDS = 4  # each round shrinks a text about tenfold: four go far beyond any document
# Words of a summary request that say nothing about which document it means.
_REQUEST_STEMS = content_stems(
    "summarize summarise summary summaries overview gist recap main key points sentence sentences give short "
    "brief briefly nutshell article articles document documents file files source sources text texts report "
    "reports paper papers page pages story stories piece collection one each every all"
)
# A summary of several documents ("the four articles", "each document", "all of this"): words, not stems,
# since "article" and "articles" share one.
_SEVERAL = frozenset(
    [
        "all",
        "each",
        "every",
        "both",
        "collection",
        "everything",
        "articles",
        "documents",
        "files",
        "sources",
        "texts",
        "these",
        "reports",
        "papers",
        "stories",
    ]
)


def documents_named(question: str, documents: list[Document]) -> list[Document] | None:
    """The documents a summary request names by title, or all of them; None when it names none of them.

    A title word counts only where it tells documents apart: one in most titles ("AI" over articles on
    AI) names none of them, so "the report on Apple's AI strategy" is not taken for an AI article.
    """
    wanted = content_stems(question) - _REQUEST_STEMS
    titles = {d.doc_id: content_stems(d.title) for d in documents}
    if len(documents) > 1:
        wanted = {w for w in wanted if sum(w in t for t in titles.values()) <= len(documents) / 2}
    overlap = {doc_id: len(wanted & stems) for doc_id, stems in titles.items()}
    best = max(overlap.values(), default=0)
    if best:
        return [d for d in documents if overlap[d.doc_id] == best]
    if _SEVERAL & {w.lower() for w in words(question)} or not content_stems(question) - _REQUEST_STEMS:
        return documents
    return None


def sections(text: str, max_chars: int) -> list[str]:
    """`text` cut at sentence ends into pieces of at most `max_chars`.

    A sentence longer than that (a table or a PDF page without stops) is cut every `max_chars`, so no
    piece outgrows the model's context.
    """
    pieces: list[str] = []
    start = end = 0
    for sentence_start, sentence_end in split_sentences(text):
        if sentence_end - start > max_chars and end > start:
            pieces.append(text[start:end])
            start = sentence_start
        end = sentence_end
    if end > start:
        pieces.append(text[start:end])
    return [piece[i : i + max_chars] for piece in pieces for i in range(0, len(piece), max_chars)]


class SummaryCache:
    """The kept summaries of one index (a JSON file in its folder), written atomically."""

    def __init__(self, index_dir: Path, model: str, section_chars: int) -> None:
        self.path = index_dir / SUMMARIES_FILE
        # a summary is re-made by another model or another wording of the summary prompt
        self.model = f"{model} {hashlib.sha256(SUMMARY_PROMPT.encode()).hexdigest()[:12]}"
        self.section_chars = section_chars
        self._lock = threading.Lock()
        self._loaded: tuple[tuple[int, int], dict[str, dict[str, str]]] | None = None

    def get(self, doc_id: str) -> str | None:
        entry = self._read().get(doc_id)
        return entry["summary"] if entry and entry.get("model") == self.model else None

    def summarize(
        self, document: Document, engine: GenerationEngine, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        """The kept summary at once, or a new one as `engine` writes it (its last pass), kept when complete."""
        kept = self.get(document.doc_id)
        if kept is not None:
            yield kept
            return
        text = document.text
        for _ in range(MAX_REDUCE_ROUNDS):  # each round shrinks the text about tenfold (a section to a summary)
            parts = sections(text, self.section_chars)
            if len(parts) <= 1:
                break
            partial = ["".join(engine.stream(build_summary_prompt(document.title, part), cancel)) for part in parts]
            text = "\n\n".join(p.strip() for p in partial)
        pieces = []
        for piece in engine.stream(build_summary_prompt(document.title, text[: self.section_chars]), cancel):
            pieces.append(piece)
            yield piece
        if cancel is None or not cancel.is_set():
            self._write({document.doc_id: "".join(pieces).strip()})

    def keep_only(self, doc_ids: Iterable[str]) -> None:
        """Drop the summaries of documents no longer indexed (nothing to do, and nothing written, if none kept)."""
        if self.path.exists():
            self._write({}, keep=set(doc_ids))

    def _read(self) -> dict[str, dict[str, str]]:
        """The kept entries (shared: not to be modified), parsed again only when the file changed."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        version = (stat.st_mtime_ns, stat.st_size)
        if self._loaded is None or self._loaded[0] != version:
            try:
                entries = json.loads(self.path.read_text(encoding="utf-8"))
            except (FileNotFoundError, json.JSONDecodeError):
                entries = {}  # a file damaged by hand: summaries are re-made, nothing else is lost
            self._loaded = (version, entries)
        return self._loaded[1]

    def _write(self, new: dict[str, str], keep: set[str] | None = None) -> None:
        with self._lock:
            entries = dict(self._read())
            entries.update({doc_id: {"model": self.model, "summary": text} for doc_id, text in new.items()})
            if keep is not None:
                entries = {doc_id: entry for doc_id, entry in entries.items() if doc_id in keep}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, staging = tempfile.mkstemp(dir=self.path.parent, prefix=".summaries-")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(entries, out, ensure_ascii=False, indent=1)
            os.replace(staging, self.path)
