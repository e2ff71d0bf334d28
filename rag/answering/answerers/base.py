"""The interface every kind of question is answered through: gather evidence, write, finish.

`rag.assistant` runs the same steps for every kind: the answerer gathers its evidence, the checks before
generation read what it searched, the answerer writes (its passages are shown, its text streamed), then
finishes (citations verified, the checks after generation); the Assistant holds no per-kind branches.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from rag.answering.checks import Check
from rag.answering.citations import CitationVerifier, ClaimStated, VerifiedAnswer
from rag.answering.summaries import SummaryCache
from rag.answering.yes_no import YesNoByEvidence
from rag.generation.base import GenerationEngine
from rag.ingestion.chunking import Chunker
from rag.retrieval.excerpts import PassageTrimmer
from rag.retrieval.gathering import EvidenceGatherer
from rag.settings import Settings
from rag.store.base import IndexStore
from rag.types import AbstainedBy, Document, Passage, Prompt, QuestionKind, Turn


class Components(Protocol):
    """What answerers read and call: the pipeline's parts, which the Assistant makes (the models on first use)."""

    settings: Settings
    store: IndexStore
    chunker: Chunker
    gatherer: EvidenceGatherer
    trimmer: PassageTrimmer
    verifier: CitationVerifier
    summaries: SummaryCache

    @property
    def generator(self) -> GenerationEngine: ...

    @property
    def claim_judge(self) -> ClaimStated | None: ...

    @property
    def yes_no(self) -> YesNoByEvidence | None: ...

    @property
    def checks(self) -> list[Check]: ...

    def documents(self) -> list[Document]: ...

    def retrieve(self, question: str, top_k: int, history: Sequence[Turn] = ()) -> list[Passage]: ...


@dataclass
class Evidence:
    """What an answer is written from (`passages`), and what the steps before generation read (`searched`:
    the passages a search found, which may differ from what is written from; by default the same)."""

    passages: list[Passage]
    searched: list[Passage] | None = None

    @property
    def checked(self) -> list[Passage]:
        return self.passages if self.searched is None else self.searched


@dataclass
class Draft:
    """An answer being written: the passages shown and cited (`Sources`), and its text as it comes."""

    passages: list[Passage]
    pieces: Iterator[str]
    parts: list[str] = field(default_factory=list)  # what an answerer keeps of it for `finish`, if anything
    lacking_states: Prompt | None = None  # a prompt read whole for want of passage states, to make them after


@dataclass
class Finished:
    """The answer as it may be said: its verified text and citations, or the step that refused it and its reply."""

    verified: VerifiedAnswer
    refusal: tuple[AbstainedBy, str] | None = None


class Answerer(ABC):
    """One kind of question. Light to construct: it reaches the models and the index through the pipeline's
    components (the Assistant, which loads the models on first use)."""

    kind: ClassVar[QuestionKind]
    checked_before_generation: ClassVar[bool] = True  # whether the checks before generation read its evidence

    def __init__(self, components: Components) -> None:
        self.components = components

    @abstractmethod
    def gather(self, question: str, turns: list[Turn]) -> Evidence:
        """The evidence an answer is written from."""

    @abstractmethod
    def write(self, question: str, turns: list[Turn], evidence: Evidence, cancel: threading.Event | None) -> Draft:
        """The answer's passages and its text, streamed as it is written."""

    @abstractmethod
    def finish(
        self, question: str, turns: list[Turn], draft: Draft, text: str, cancel: threading.Event | None
    ) -> Finished:
        """The written `text` checked: what may be said of it."""
