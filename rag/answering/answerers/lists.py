"""A list: the passages of several documents, at most a few from each, so its items come from all of them."""

from __future__ import annotations

from rag.answering.answerers.base import Evidence
from rag.answering.answerers.drafted import DraftedAnswerer
from rag.types import Turn


class ListAnswerer(DraftedAnswerer):
    kind = "list"

    def gather(self, question: str, turns: list[Turn]) -> Evidence:
        return Evidence(self.components.gatherer.spread(question, turns))
