"""A question about the collection itself: what it holds, read from the index, each document's title cited at
its opening; no model, and no checks (nothing is claimed that the index does not say)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from rag.answering.answerers.base import Answerer, Draft, Evidence, Finished
from rag.answering.citations import VerifiedAnswer
from rag.types import Chunk, Citation, Document, Passage, Turn


@dataclass
class CollectionEvidence(Evidence):
    documents: int = 0  # how many the collection holds; `passages` are the openings of those listed


class CollectionAnswerer(Answerer):
    kind = "collection"
    checked_before_generation = False

    def gather(self, question: str, turns: list[Turn]) -> CollectionEvidence:
        documents = self.components.documents()
        shown = documents[: self.components.settings.max_listed_documents]
        return CollectionEvidence([self._opening_passage(d) for d in shown], documents=len(documents))

    def write(self, question: str, turns: list[Turn], evidence: Evidence, cancel: threading.Event | None) -> Draft:
        assert isinstance(evidence, CollectionEvidence)
        passages, count = evidence.passages, evidence.documents
        lines = [f"The collection holds {count} document{'s' * (count != 1)}" + (":" if passages else ".")]
        lines += [f"- {p.title} [{n}]" for n, p in enumerate(passages, start=1)]
        if count > len(passages):
            lines.append(f"- and {count - len(passages)} more")
        text = "\n".join(lines)
        return Draft(passages, iter([text]))

    def finish(
        self, question: str, turns: list[Turn], draft: Draft, text: str, cancel: threading.Event | None
    ) -> Finished:
        citations = [_whole_citation(n, p) for n, p in enumerate(draft.passages, start=1)]
        return Finished(VerifiedAnswer(text, citations, True))

    def _opening_passage(self, document: Document) -> Passage:
        chunk = (
            self.components.chunker.split(document)[0]
            if document.text
            else Chunk(f"{document.doc_id}:0", document.doc_id, 0, "", 0, 0)
        )
        return Passage(chunk, document.title, document.source, 1.0, 1.0, document.places_in(chunk.start, chunk.end))


def _whole_citation(n: int, passage: Passage) -> Citation:
    """A citation of the passage as a whole (a document's opening, named in a listing)."""
    chunk = passage.chunk
    return Citation(
        n, chunk.doc_id, passage.title, passage.source, chunk.start, chunk.end, chunk.text, 1.0, chunk.start, chunk.end
    )
