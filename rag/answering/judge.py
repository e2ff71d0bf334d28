"""The model as a judge of one claim: does this passage state what the answer sentence says?

The citation verifier's support score (word evidence, meaning, names; rag.answering.citations) is cheap
and catches claims about something else, but it refuses a right answer written in other words than its
passage ("It was released in 2019" for "... came out that year"). The model reads the paraphrase;
asked about one claim and its passages alone, it says yes or no. Asked only where the support score
would drop the direct answer, it costs one short prompt on the answers that would otherwise be
refused, and none on the rest. scripts/claim_judge.py measures how well each score separates supported
from unsupported claims: the support score separates better, and the judge leans to yes, so it is off
by default (`claim_judge`; figures in docs/evaluation.md).

`PassageJudge` asks the answer check's question of one passage at a time: which passage answers the
question, for a second attempt (rag.assistant) before an answer is refused.
"""

from __future__ import annotations

from rag.answering.prompts import build_claim_prompt, build_confirm_prompt
from rag.generation.base import GenerationEngine
from rag.types import Passage, Turn


class ClaimJudge:
    def __init__(self, engine: GenerationEngine, min_log_odds: float) -> None:
        self.engine = engine
        self.min_log_odds = min_log_odds

    def log_odds(self, claim: str, passages: list[Passage]) -> float:
        """log P(yes) - log P(no) that the passages (read together) state the claim."""
        return self.engine.yes_log_odds(build_claim_prompt(claim, passages))

    def states(self, claim: str, passages: list[Passage]) -> bool:
        return self.log_odds(claim, passages) >= self.min_log_odds


class PassageJudge:
    """The model asked of each passage on its own: "Does the passage answer this question?".

    The same question the answer check asks of the cited passages together; asked of one passage, it
    says which passage a second attempt should write from.
    """

    def __init__(self, engine: GenerationEngine) -> None:
        self.engine = engine

    def log_odds(self, question: str, passage: Passage, history: list[Turn]) -> float:
        return self.engine.yes_log_odds(build_confirm_prompt(question, [passage], history))

    def ranked(self, question: str, passages: list[Passage], history: list[Turn]) -> list[tuple[Passage, float]]:
        """Each passage with its log-odds, those judged most likely to answer first (ties keep the given order)."""
        odds = [self.log_odds(question, p, history) for p in passages]
        return [(passages[i], odds[i]) for i in sorted(range(len(passages)), key=lambda i: (-odds[i], i))]
