"""The abstention checks: one ordered list of named steps that may refuse an answer.

The model alone answers from its own knowledge and borrows claims from passages about something else,
and a cited answer that is wrong is worse than a refusal. Each step catches one way of going wrong and
is named by the `AbstainedBy` value an abstaining answer records, so `rag eval` counts what each step
stopped rightly and what it lost; `disabled_checks` switches steps off. Steps before generation read
only the retrieved passages (and refuse without spending the model); steps after it also read the draft
and its checked citations. The `Assistant` runs them in this order and stops at the first refusal.

To add a check: subclass `Check`, give it a new `AbstainedBy` name, and put it in `abstention_checks`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

from rag.answering.citations import VerifiedAnswer
from rag.answering.evidence import (
    ClaimEvidence,
    claim_evidence,
    numbers_missing,
    opening_polarity,
    opposite_clause,
    question_speakers,
    says_yes_and_no,
)
from rag.answering.prompts import ABSTAIN_TEXT, build_confirm_prompt, declines
from rag.answering.yes_no import PolarityReader
from rag.generation.base import GenerationEngine
from rag.lexical import content_stems, is_yes_no_question, mentions, names_anyone, salient_terms
from rag.settings import Settings
from rag.store.base import IndexStore
from rag.types import AbstainedBy, Citation, Passage, Turn


@dataclass(frozen=True)
class Case:
    """What a check reads: the question and its passages, and after generation the draft and its checked form.

    Before generation the draft is empty, and so is its verification (as `CitationVerifier` finds it).
    What several steps read of the checked answer is worked out once, on first use.
    """

    question: str
    passages: list[Passage]
    history: list[Turn]
    draft: str = ""
    verified: VerifiedAnswer = field(default_factory=lambda: VerifiedAnswer("", [], False))

    @property
    def cited_passages(self) -> list[Passage]:
        """The passages the checked answer cites, each once, in the order first cited."""
        return [self.passages[n - 1] for n in dict.fromkeys(c.n for c in self.verified.citations)]

    @cached_property
    def evidence(self) -> list[ClaimEvidence]:
        """Each cited sentence of the checked answer with the passage sentence it rests on."""
        return claim_evidence(self.verified.text, self.passages)


class Check(ABC):
    """One step; `refusal` says what to reply instead of the answer, or None to let it through."""

    name: ClassVar[AbstainedBy]
    before_generation: ClassVar[bool]
    # Why an answer was refused, told to a second attempt (steps after generation); "" for steps not retried.
    reason: ClassVar[str] = ""

    @abstractmethod
    def refusal(self, case: Case) -> str | None: ...


class OffTopic(Check):
    """The passages are not about the question at all (no chunk is close enough to it)."""

    name = "off topic"
    before_generation = True

    def __init__(self, min_relevance: float) -> None:
        self.min_relevance = min_relevance

    def refusal(self, case: Case) -> str | None:
        if not case.passages or max(p.relevance for p in case.passages) < self.min_relevance:
            return ABSTAIN_TEXT
        return None


class NamesMissing(Check):
    """A name or number of the question appears nowhere in the passages, their titles or the conversation.

    Titles count as the later name checks count them; a name written another way, or met by its
    content stems, counts as present. A yes/no question's numbers are not required: they are the claim
    to check, and the answer may be "No, it was ...".
    """

    name = "names missing"
    before_generation = True

    def refusal(self, case: Case) -> str | None:
        evidence = " ".join([p.shown_text for p in case.passages] + [f"{t.question} {t.answer}" for t in case.history])
        evidence_stems = content_stems(evidence)
        # A number in a yes/no question is what it asks to check ("Is it current as of 2025?": no, 2023).
        yes_no = is_yes_no_question(case.question)
        checked = [t for t in salient_terms(case.question) if not (yes_no and _numeric(t))]
        missing = [
            term for term in checked if not mentions(evidence, term) and not content_stems(term) <= evidence_stems
        ]
        return f"The documents don't mention {', '.join(missing)}." if missing else None


def _numeric(term: str) -> bool:
    return any(c.isdigit() for c in term)


class ModelDeclines(Check):
    """The model wrote nothing, or said in its own words that the passages don't hold the answer."""

    name = "model"
    before_generation = False
    reason = "it said the passages do not hold the answer"

    def refusal(self, case: Case) -> str | None:
        return ABSTAIN_TEXT if not case.draft or declines(case.draft) else None


class CitationsUnsupported(Check):
    """No passage supports the draft's direct answer (the citation verifier's verdict)."""

    name = "citations"
    before_generation = False
    reason = "no passage supports what it says"

    def refusal(self, case: Case) -> str | None:
        return None if case.verified.supported else ABSTAIN_TEXT


class Contradiction(Check):
    """A sentence says the opposite of the passage sentence it cites, or states a number the passage does not.

    "Yes, Meta still owns PyTorch [1]" citing "Although Meta no longer owns Pytorch, ..." is about the
    right thing, so word overlap and meaning support it; a clause that restates a cited clause with the
    opposite negation ("still owns" / "no longer owns", "is" / "is not"), a year or count the passage
    never gives, or "Yes" and "No" in one answer, is not support but its reverse.
    """

    name = "contradiction"
    before_generation = False
    reason = "it says the opposite of its passage or a number the passage does not give"

    def refusal(self, case: Case) -> str | None:
        if says_yes_and_no(case.verified.text):
            return ABSTAIN_TEXT
        for evidence in case.evidence:
            if opposite_clause(evidence.claim, evidence.sentence) or numbers_missing(
                evidence.claim, evidence.passage.chunk.text
            ):
                return ABSTAIN_TEXT
        return None


class WrongSpeaker(Check):
    """The question asks what someone said or did, and the cited sentences are about someone else.

    The cited-names step reads whole documents, so an article quoting both LeCun and Altman lets
    "Why does LeCun want an international agency?" be answered with Altman's proposal. Here each cited
    sentence, with the sentence before it and those it continues ("He said ..."), must name a person
    asked about, unless it names nobody at all (background such as "Open-source refers to software that
    ...", which is no one's claim); and when the question asks about several, each must be named by one
    of them.
    """

    name = "wrong speaker"
    before_generation = False
    reason = "it gives someone else's words"

    def refusal(self, case: Case) -> str | None:
        speakers = question_speakers(case.question)
        if not speakers:
            return None
        evidence = case.evidence
        for item in evidence:
            if (
                item.attributed
                and not any(mentions(item.window, speaker) for speaker in speakers)
                and names_anyone(item.window, item.passage.chunk.text)
            ):
                return f"The documents don't say that {speakers[0]} said that."
        if len(speakers) > 1 and evidence:  # "How do LeCun's and Macron's views differ?"
            for speaker in speakers:
                if not any(mentions(item.window, speaker) for item in evidence):
                    return f"The documents don't say what {speaker} said about that."
        return None


class CitedNames(Check):
    """Every name in the question appears in a document the answer cites.

    The names-missing step checks names over all passages; this catches an answer that borrows a claim
    from a document about someone or something else ("What did Zuckerberg propose in Paris?" answered
    with his views from an article that never mentions Paris).
    """

    name = "cited names"
    before_generation = False
    reason = "the passage it cites is about someone or something else"

    def __init__(self, store: IndexStore) -> None:
        self.store = store

    def refusal(self, case: Case) -> str | None:
        return None if self.covers(case.question, case.verified.citations) else ABSTAIN_TEXT

    def covers(self, question: str, citations: list[Citation]) -> bool:
        cited = [self.store.document(doc_id) for doc_id in dict.fromkeys(c.doc_id for c in citations)]
        text = " ".join(f"{d.title} {d.text}" for d in cited)
        return all(mentions(text, term) for term in salient_terms(question))


class AnswerCheck(Check):
    """The model, asked on its own, agrees that the passages the answer cites answer the question.

    Small models answer questions whose premise the passages do not support ("Why did Meta sell PyTorch
    to Google?") from passages on the same topic, yet judge "does this passage answer it?" well.

    A yes/no question is answered by passages that settle it: when the model, asked the question over the
    cited passages alone, reads a clear Yes or No (`PolarityReader`) and the answer opens with that word,
    the check lets it stand without asking. "Does this passage answer it?" is the wrong question there: a
    passage that denies the premise ("Is PyTorch still owned by Meta?" over "Meta no longer owns PyTorch")
    answers No, yet the model, asked, leans to "it does not answer it".
    """

    name = "answer check"
    before_generation = False
    reason = "the passages it cites do not answer the question"

    def __init__(self, engine: GenerationEngine, min_log_odds: float, reader: PolarityReader | None = None) -> None:
        self.engine = engine
        self.min_log_odds = min_log_odds
        self.reader = reader

    def refusal(self, case: Case) -> str | None:
        said = opening_polarity(case.verified.text)
        if (
            self.reader is not None
            and said is not None
            and is_yes_no_question(case.question)
            and self.reader.reading(case.question, case.cited_passages, case.history) == said
        ):
            return None  # the passages settle the question, the way the answer does
        odds = self.engine.yes_log_odds(build_confirm_prompt(case.question, case.cited_passages, case.history))
        return None if odds >= self.min_log_odds else ABSTAIN_TEXT


class PolarityDisagrees(Check):
    """A yes/no answer's "Yes" or "No" is not what the model reads in the cited passages when asked alone.

    While writing, the model leans on its own first words; asked the question over the cited passages
    only, it reads the evidence (`PolarityReader`: clear beyond a margin of where its read is even). The
    answer stands when the two agree or the model is unsure. Answers are first revised by that reading
    (rag.answering.yes_no), so this refuses only where the revision is switched off.
    """

    name = "polarity"
    before_generation = False

    def __init__(self, reader: PolarityReader) -> None:
        self.reader = reader

    def refusal(self, case: Case) -> str | None:
        said = opening_polarity(case.verified.text)
        if said is None or not is_yes_no_question(case.question):
            return None
        read = self.reader.reading(case.question, case.cited_passages, case.history)
        return ABSTAIN_TEXT if read is not None and read != said else None


def abstention_checks(
    settings: Settings, store: IndexStore, engine: GenerationEngine, reader: PolarityReader
) -> list[Check]:
    """The steps in the order they run, without those `disabled_checks` names."""
    steps: list[Check] = [
        OffTopic(settings.min_relevance),
        NamesMissing(),
        ModelDeclines(),
        CitationsUnsupported(),
        Contradiction(),
        WrongSpeaker(),
        CitedNames(store),
        AnswerCheck(engine, settings.answer_check_min_log_odds, reader),
        PolarityDisagrees(reader),
    ]
    return [step for step in steps if step.name not in settings.disabled_checks]


def first_refusal(checks: list[Check], case: Case, before_generation: bool) -> tuple[AbstainedBy, str] | None:
    """The first step of the given phase that refuses, with its reply; None when all let the answer through."""
    for check in checks:
        if check.before_generation == before_generation and (reply := check.refusal(case)) is not None:
            return check.name, reply
    return None
