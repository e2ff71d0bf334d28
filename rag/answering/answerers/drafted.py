"""The model's answer from numbered passages: what facts, comparisons and lists share.

The passages are cut to the excerpts nearest the question, the prompt is read from passage states where
the engine has every passage's state (else whole, and the missing states are made after the answer),
and the draft's citations are verified before the checks after generation read it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import ClassVar

from rag.answering.answerers.base import Answerer, Draft, Evidence, Finished
from rag.answering.checks import Case, first_refusal
from rag.answering.citations import VerifiedAnswer
from rag.answering.prompts import build_prompt, retrieval_queries
from rag.generation.base import GenerationEngine
from rag.types import Passage, Prompt, Turn


class DraftedAnswerer(Answerer):
    """Written by the model from the passages `gather` finds."""

    # An answer of several lines (comparisons, lists): a longer token budget, every sentence cited, and a stop
    # once greedy decoding starts repeating a line of its list.
    long_answer: ClassVar[bool] = True

    def order(self, question: str, passages: list[Passage], turns: list[Turn]) -> list[Passage]:
        """The passages in the order the model reads them (a search's order, unless an answerer knows better)."""
        return passages

    def revise(
        self, question: str, text: str, verified: VerifiedAnswer, passages: list[Passage], turns: list[Turn]
    ) -> str | None:
        """The draft as the checks after generation should read it, where an answerer revises it; None keeps it."""
        return None

    def write(self, question: str, turns: list[Turn], evidence: Evidence, cancel: threading.Event | None) -> Draft:
        pipeline = self.components
        settings = pipeline.settings
        passages = self.order(question, evidence.passages, turns)
        excerpts = pipeline.trimmer.trim(retrieval_queries(question, turns)[0], passages)
        long_answer = settings.long_answer_tokens if self.long_answer else None
        prompt = build_prompt(question, excerpts, turns, settings.answer_style, self.kind, long_answer, whole=passages)
        generator = pipeline.generator
        lacking = lacking_states(generator, prompt)
        if lacking is not None and generator.passage_states is not None:  # read whole, as without states
            prompt = dataclasses.replace(prompt, passages=())
        return Draft(excerpts, self._stream(prompt, cancel), lacking_states=lacking)

    def _stream(self, prompt: Prompt, cancel: threading.Event | None) -> Iterator[str]:
        pieces: list[str] = []
        stream = self.components.generator.stream(prompt, cancel)
        for piece in stream:
            pieces.append(piece)
            yield piece
            if self.long_answer and "\n" in piece and _repeats_a_line("".join(pieces)):
                stream.close()  # greedy decoding has begun to loop over its list; the rest would be the same
                return

    def finish(
        self, question: str, turns: list[Turn], draft: Draft, text: str, cancel: threading.Event | None
    ) -> Finished:
        return self.checked(question, text, draft.passages, turns)

    def checked(self, question: str, text: str, passages: list[Passage], turns: list[Turn]) -> Finished:
        """The draft's citations verified (revised first, where the answerer revises), and the first step after
        generation that refuses it (none when all let it through)."""
        pipeline = self.components
        verified = pipeline.verifier.verify(text, passages, question, self.long_answer, pipeline.claim_judge)
        if revised := self.revise(question, text, verified, passages, turns):
            text = revised
            verified = pipeline.verifier.verify(text, passages, question, self.long_answer, pipeline.claim_judge)
        case = Case(question, passages, turns, text, verified)
        return Finished(verified, first_refusal(pipeline.checks, case, before_generation=False))


def lacking_states(generator: GenerationEngine, prompt: Prompt) -> Prompt | None:
    """None when the engine has the state of every passage of the prompt (the excerpts are then placed from
    them); else the prompt whose passages' states are to be made.

    A question is read from states only when all of its passages have one, so that its answer does not
    depend on which states happened to be made first.
    """
    if generator.passage_states is None or not prompt.passages:
        return prompt
    return prompt if generator.missing_passage_states(prompt) else None


def _repeats_a_line(text: str) -> bool:
    """The last finished line of a draft is one it already wrote."""
    lines = [line.strip() for line in text.split("\n")[:-1]]
    return len(lines) >= 2 and bool(lines[-1]) and lines[-1] in lines[:-1]
