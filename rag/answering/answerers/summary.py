"""A summary: one or two checked sentences per document the question names (or the best match of a search
for it), from the summaries kept next to the index (rag.answering.summaries)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from rag.answering.answerers.base import Answerer, Draft, Evidence, Finished
from rag.answering.prompts import ABSTAIN_TEXT
from rag.answering.summaries import documents_named
from rag.ingestion.chunking import split_sentences
from rag.types import Chunk, Document, Passage, Turn

_ONE_SENTENCE = re.compile(r"\b(?:one|a single|1)\s+sentence", re.IGNORECASE)


@dataclass
class SummaryEvidence(Evidence):
    documents: list[Document] = field(default_factory=list)


class SummaryAnswerer(Answerer):
    kind = "summary"

    def gather(self, question: str, turns: list[Turn]) -> SummaryEvidence:
        """Each document as one passage (a summary sentence is checked against all of it). The checks before
        generation read what the search found, where one was made: a summary of what a search finds, if
        anything, and never one about someone or something the documents it would summarise do not name
        ("Summarize what Satya Nadella said about open-source AI" matches the open-source articles by title,
        but none of them names him)."""
        pipeline = self.components
        documents = pipeline.documents()
        named = documents_named(question, documents)
        if named is not None:
            chosen, searched = named[: pipeline.settings.max_summary_documents], None
        else:
            searched = pipeline.retrieve(question, pipeline.settings.top_k, turns)
            chosen = [pipeline.store.document(p.chunk.doc_id) for p in searched[:1]]
        return SummaryEvidence([_document_passage(d) for d in chosen], searched, chosen)

    def write(self, question: str, turns: list[Turn], evidence: Evidence, cancel: threading.Event | None) -> Draft:
        assert isinstance(evidence, SummaryEvidence)
        draft = Draft(evidence.passages, iter(()))
        draft.pieces = self._pieces(question, evidence.documents, draft.parts, cancel)
        return draft

    def _pieces(
        self, question: str, documents: list[Document], parts: list[str], cancel: threading.Event | None
    ) -> Iterator[str]:
        """Each document's summary as it is read or written, under its title when there are several; the cited
        sentences of each go to `parts`."""
        pipeline = self.components
        count = len(documents)
        sentences = 1 if _ONE_SENTENCE.search(question) else 2
        for n, document in enumerate(documents, start=1):
            title = f"- {document.title}: " if count > 1 else ""
            pieces = []
            for piece in pipeline.summaries.summarize(document, pipeline.generator, cancel):
                yield title + piece  # the title with the first words, so the first token is a summary's
                title = ""
                pieces.append(piece)
            if title:
                yield title
            if cancel is not None and cancel.is_set():
                return
            yield "\n"
            cited = " ".join(f"{sentence} [{n}]" for sentence in _sentences("".join(pieces).strip())[:sentences])
            parts.append(f"- {document.title}: {cited}" if count > 1 else cited)

    def finish(
        self, question: str, turns: list[Turn], draft: Draft, text: str, cancel: threading.Event | None
    ) -> Finished:
        verified = self.components.verifier.verify("\n".join(draft.parts), draft.passages, question, each_sentence=True)
        return Finished(verified, None if verified.citations else ("citations", ABSTAIN_TEXT))


def _document_passage(document: Document) -> Passage:
    """A whole document as one passage: a summary sentence is checked against all of it."""
    chunk = Chunk(f"{document.doc_id}:all", document.doc_id, 0, document.text, 0, len(document.text))
    return Passage(chunk, document.title, document.source, 1.0, 1.0, document.places_in(chunk.start, chunk.end))


def _sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]
