"""What an answer is read from, by question kind: a comparison needs each side, a list needs every document.

A fact is answered from the top passages of one search. "Compare LeCun's and Altman's views" searched
as one query fills every slot from whichever article matches best, so each side is searched on its own
(the question with the other sides' names taken out) and contributes its best passages in turn. A list
("Which people are reported on?") reads twice as many passages, at most two per document, so items
spread over several documents are all in front of the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rag.lexical import mentions, salient_terms
from rag.types import Passage, Turn

# retrieve(query, k, history): the assistant's search, with follow-ups expanded by the conversation.
Search = Callable[[str, int, Sequence[Turn]], list[Passage]]
PER_DOCUMENT_IN_LISTS = 2
LIST_PASSAGES_PER_TOP_K = 2  # a list reads twice the passages of a fact


def comparison_sides(question: str) -> list[str]:
    """The names a comparison sets side by side ("LeCun's and Sam Altman's views" -> LeCun, Sam Altman).

    Adjacent name words are one name. Fewer than two names ("compare the two positions") leaves the
    sides to the search.
    """
    sides: list[str] = []
    cursor = 0
    for term in salient_terms(question):
        found = re.compile(rf"\b{re.escape(term)}").search(question, cursor)
        if found is None:
            continue
        if sides and not question[cursor : found.start()].strip():
            sides[-1] = f"{sides[-1]} {term}"
        else:
            sides.append(term)
        cursor = found.end()
    return list(dict.fromkeys(sides))


def side_query(question: str, side: str, sides: Sequence[str]) -> str:
    """The question asked of one side: the other sides' names taken out, so the search finds this one's words."""
    others = [re.escape(s) for s in sides if s != side]
    if not others:
        return question
    return " ".join(re.sub(rf"\b(?:{'|'.join(others)})(?:['\u2019]s)?\b", " ", question).split())


class EvidenceGatherer:
    def __init__(self, search: Search, top_k: int, candidate_k: int) -> None:
        self.search = search
        self.top_k = top_k
        self.candidate_k = candidate_k

    def top(self, question: str, history: Sequence[Turn] = ()) -> list[Passage]:
        """A fact's passages: the top of one search."""
        return self.search(question, self.top_k, history)

    def each_side(self, question: str, history: Sequence[Turn] = ()) -> list[Passage]:
        """A comparison's passages: each side's own search, where the question names two sides or more."""
        sides = self.separating_sides(question, history)
        return self._each_side(question, sides, history) if len(sides) >= 2 else self.top(question, history)

    def spread(self, question: str, history: Sequence[Turn] = ()) -> list[Passage]:
        """A list's passages: several documents, at most a few passages of each."""
        return self._spread(self.search(question, self.candidate_k, history))

    def separating_sides(self, question: str, history: Sequence[Turn] = ()) -> list[str]:
        """The question's names that tell its sides apart: one every candidate document names ("AI") does not."""
        sides = comparison_sides(question)
        by_document: dict[str, str] = {}
        for passage in self.search(question, self.candidate_k, history):
            doc_id = passage.chunk.doc_id
            by_document[doc_id] = by_document.get(doc_id, passage.title) + " " + passage.chunk.text
        if len(by_document) < 2:
            return sides
        return [side for side in sides if not all(mentions(text, side) for text in by_document.values())]

    def _each_side(self, question: str, sides: list[str], history: Sequence[Turn]) -> list[Passage]:
        per_side = max(1, self.top_k // len(sides))
        chosen: dict[str, Passage] = {}
        for side in sides:
            found = self.search(side_query(question, side, sides), self.candidate_k, history)
            naming = [p for p in found if mentions(p.shown_text, side)] or found
            for passage in [p for p in naming if p.chunk.chunk_id not in chosen][:per_side]:
                chosen[passage.chunk.chunk_id] = passage
        return list(chosen.values())

    def _spread(self, passages: list[Passage]) -> list[Passage]:
        per_document: dict[str, int] = {}
        spread = []
        for passage in passages:
            seen = per_document.get(passage.chunk.doc_id, 0)
            if seen < PER_DOCUMENT_IN_LISTS:
                per_document[passage.chunk.doc_id] = seen + 1
                spread.append(passage)
        return spread[: LIST_PASSAGES_PER_TOP_K * self.top_k]
