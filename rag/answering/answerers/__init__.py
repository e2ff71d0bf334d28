"""Answerers: one per kind of question, each deciding what evidence it reads, how its answer is written and
how that answer is checked; `rag.assistant` picks one by the question's kind and runs them all the same way.

`base` holds the small interface; `drafted` the model's answer from numbered passages, which facts
(`fact`: the passage judge, yes/no answers by their evidence, a second attempt), comparisons (`comparison`:
each side searched) and lists (`lists`: several documents) specialise; `summary` writes from the kept
summaries of the documents a question names; `collection` lists what the index holds without the model.
"""

from __future__ import annotations

from rag.answering.answerers.base import Answerer, Components, Draft, Evidence, Finished
from rag.answering.answerers.collection import CollectionAnswerer
from rag.answering.answerers.comparison import ComparisonAnswerer
from rag.answering.answerers.fact import FactAnswerer
from rag.answering.answerers.lists import ListAnswerer
from rag.answering.answerers.summary import SummaryAnswerer
from rag.types import QuestionKind

KINDS: tuple[type[Answerer], ...] = (
    FactAnswerer,
    ComparisonAnswerer,
    ListAnswerer,
    SummaryAnswerer,
    CollectionAnswerer,
)


def answerers(components: Components) -> dict[QuestionKind, Answerer]:
    """Every kind's answerer, on the pipeline's components."""
    return {kind.kind: kind(components) for kind in KINDS}


__all__ = ["Answerer", "Components", "Draft", "Evidence", "Finished", "answerers"]
