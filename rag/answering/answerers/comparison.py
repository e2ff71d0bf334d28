"""A comparison: each side the question names searched on its own, so both are read (rag.retrieval.gathering)."""

from __future__ import annotations

from rag.answering.answerers.base import Evidence
from rag.answering.answerers.drafted import DraftedAnswerer
from rag.types import Turn


class ComparisonAnswerer(DraftedAnswerer):
    kind = "comparison"

    def gather(self, question: str, turns: list[Turn]) -> Evidence:
        return Evidence(self.components.gatherer.each_side(question, turns))
