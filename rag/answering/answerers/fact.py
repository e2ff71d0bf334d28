"""A fact: the top passages of a search for the question, in the passage judge's order where it is on; a
yes/no answer revised to what its evidence reads; a second attempt before a refusal where it is on."""

from __future__ import annotations

import dataclasses
import threading

from rag.answering.answerers.base import Draft, Evidence, Finished
from rag.answering.answerers.drafted import DraftedAnswerer
from rag.answering.citations import MARKER, VerifiedAnswer
from rag.answering.judge import PassageJudge
from rag.answering.prompts import build_prompt
from rag.types import AbstainedBy, Passage, Turn


class FactAnswerer(DraftedAnswerer):
    kind = "fact"
    long_answer = False

    def gather(self, question: str, turns: list[Turn]) -> Evidence:
        return Evidence(self.components.gatherer.top(question, turns))

    def order(self, question: str, passages: list[Passage], turns: list[Turn]) -> list[Passage]:
        if not self.components.settings.passage_judge:
            return passages
        return [p for p, _ in PassageJudge(self.components.generator).ranked(question, passages, turns)]

    def revise(
        self, question: str, text: str, verified: VerifiedAnswer, passages: list[Passage], turns: list[Turn]
    ) -> str | None:
        yes_no = self.components.yes_no
        return yes_no.revise(question, text, verified, passages, turns) if yes_no else None

    def finish(
        self, question: str, turns: list[Turn], draft: Draft, text: str, cancel: threading.Event | None
    ) -> Finished:
        finished = self.checked(question, text, draft.passages, turns)
        if finished.refusal and self.components.settings.second_attempt:
            retried = self._second_attempt(question, draft.passages, turns, finished.refusal, cancel)
            if retried is not None:
                return Finished(retried)
        return finished

    def _second_attempt(
        self,
        question: str,
        passages: list[Passage],
        turns: list[Turn],
        refusal: tuple[AbstainedBy, str],
        cancel: threading.Event | None,
    ) -> VerifiedAnswer | None:
        """Before refusing, write once more from the one passage the model judges as answering the question,
        told why the first answer was refused, and check that answer the same way.

        None (refuse after all) when the refusing step is not one to retry, no passage is judged as
        answering (the answer check's own bound), or the second answer is refused too.
        """
        pipeline = self.components
        reason = next((check.reason for check in pipeline.checks if check.name == refusal[0]), "")
        if not reason:
            return None
        best, odds = PassageJudge(pipeline.generator).ranked(question, passages, turns)[0]
        if odds < pipeline.settings.answer_check_min_log_odds:
            return None
        prompt = build_prompt(question, [best], turns, pipeline.settings.answer_style, refused_because=reason)
        pieces = pipeline.generator.stream(dataclasses.replace(prompt, passages=()), cancel)  # read whole
        # cited as [1] in its own prompt: renumbered to where the passage stands among those shown
        text = MARKER.sub(f" [{passages.index(best) + 1}]", "".join(pieces)).strip()
        again = self.checked(question, text, passages, turns)
        return None if again.refusal else again.verified
