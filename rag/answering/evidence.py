"""What each answer sentence rests on, read for the ways a cited answer can still be wrong.

The citation verifier measures whether a passage is about what a sentence says; it cannot see that the
sentence says the opposite ("Meta still owns PyTorch [1]" citing "Meta no longer owns Pytorch"), that
the words are another person's ("What did Altman propose in Paris?" answered with LeCun's proposal), or
that a yes/no answer's "Yes" is not what its evidence says. These helpers pair each sentence with the
passage sentence it cites and read both with general rules (negation, numbers, who is speaking), so the
checks in `rag.answering.checks` can refuse such answers without word lists tuned to questions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.answering.citations import split_claims
from rag.ingestion.chunking import split_sentences
from rag.lexical import content_stems, mentions, words
from rag.types import Passage

# Words that turn a clause's meaning around. "no longer" counts through "no"; "n't" endings count too.
_NEGATIONS = frozenset({"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "cannot"})
# Clause boundaries: punctuation, and the conjunctions that join clauses of opposite sense.
_CLAUSE_BREAK = re.compile(r"[,;:\u2013\u2014()]|\b(?:but|although|though|while|whereas|however|yet)\b", re.IGNORECASE)
_OPENER = re.compile(r"^\W*(yes|no)\b[\s,.:;!\u2013\u2014-]*", re.IGNORECASE)
# A sentence that starts like this continues the one before: its speaker is named there.
_CONTINUES = re.compile(r"^\W*(?:he|she|they|his|her|their|this|these|it|its)\b", re.IGNORECASE)
# "What did [Sam Altman] say ...", "Why does [Yann LeCun] want ...", "According to [Zuckerberg], ...": the
# capitalised words right after an auxiliary or "according to" are who the question asks about ("has" and
# "have" are left out: "he did not have [Belgian] heritage" is no speaker).
_NAME = r"[A-Z][\w'\u2019\-]*(?:\s+[A-Z][\w'\u2019\-]*)*"
_SPEAKERS = re.compile(rf"\b(?i:did|does|do|would|will|according to)\s+(?P<names>{_NAME}(?:\s+(?:and|or)\s+{_NAME})*)")
# A number standing on its own ("2023", "1.5", "16th"), not the digit of a name ("Detectron2").
_NUMBER = re.compile(r"(?<![A-Za-z0-9])\d[\d,.]*[A-Za-z]*")
CLAUSE_MATCH = 0.6  # share of a claim clause's content words a passage clause must hold to be "the same clause"


@dataclass(frozen=True)
class ClaimEvidence:
    """One answer sentence (its yes/no opener removed), a passage it cites, and the sentence it rests on.

    `window` is that sentence, the one before it, and any before that it continues ("He said ...": who
    "he" is), where articles name who is speaking; `attributed` is False when the window reaches back to
    the chunk's start and still continues an earlier sentence, so the speaker is named in text the
    passage does not hold.
    """

    claim: str
    passage: Passage
    sentence: str
    window: str
    attributed: bool


def claim_evidence(answer: str, passages: list[Passage]) -> list[ClaimEvidence]:
    """Each cited sentence of a checked answer with, per passage it cites, the passage sentence closest to it."""
    found = []
    for claim in split_claims(answer):
        body = _OPENER.sub("", claim.text)
        stems = content_stems(body)
        for n in dict.fromkeys(claim.markers):
            if not stems or not 1 <= n <= len(passages):
                continue
            text = passages[n - 1].chunk.text
            spans = split_sentences(text) or [(0, len(text))]
            overlaps = [len(stems & content_stems(text[s:e])) for s, e in spans]
            if not max(overlaps):
                continue  # no sentence shares a word with it: nothing to read it against
            best = overlaps.index(max(overlaps))
            first = max(best - 1, 0)
            while first > 0 and _CONTINUES.match(text[spans[first][0] : spans[first][1]]):
                first -= 1
            window = text[spans[first][0] : spans[best][1]]
            attributed = not (first == 0 and _CONTINUES.match(window))
            sentence = text[spans[best][0] : spans[best][1]]
            found.append(ClaimEvidence(body, passages[n - 1], sentence, window, attributed))
    return found


def negated(text: str) -> bool:
    """Whether a clause is negated: an odd number of negations ("not never" is a yes)."""
    lowered = [w.lower().replace("\u2019", "'") for w in words(text)]  # "don\u2019t" is "don't"
    count = sum(w in _NEGATIONS or w.endswith("n't") for w in lowered)
    return count % 2 == 1


def clauses(sentence: str) -> list[str]:
    return [c for c in _CLAUSE_BREAK.split(sentence) if c and c.strip()]


def opposite_clause(claim: str, evidence: str) -> str | None:
    """A clause of the claim that restates a clause of the evidence with the opposite sense, if any.

    Only a clause that says nearly the same thing (most of its content words) is compared, so a claim
    that paraphrases with a "not" ("he does not think it is near") is not held against a different clause.
    """
    evidence_clauses = [(c, content_stems(c)) for c in clauses(evidence)]
    for clause in clauses(claim):
        stems = content_stems(clause)
        if len(stems) < 2 or not evidence_clauses:
            continue
        match, match_stems = max(evidence_clauses, key=lambda item: len(stems & item[1]))
        if len(stems & match_stems) / len(stems) >= CLAUSE_MATCH and negated(clause) != negated(match):
            return clause.strip()
    return None


def numbers_missing(claim: str, evidence: str) -> list[str]:
    """Numbers the claim states that the evidence does not (a different year, count or amount)."""
    return [n.rstrip(",.") for n in _NUMBER.findall(claim) if not mentions(evidence, n.rstrip(",."))]


def opening_polarity(answer: str) -> str | None:
    """ "yes" or "no" when the answer opens with that word."""
    opener = _OPENER.match(answer)
    return opener.group(1).lower() if opener else None


def says_yes_and_no(answer: str) -> bool:
    """A sentence opens with "Yes" and another with "No": the answer contradicts itself."""
    said = {opening_polarity(claim.text) for claim in split_claims(answer)}
    return {"yes", "no"} <= said


def question_speakers(question: str) -> list[str]:
    """Who the question asks about as the one who said or did something; empty when it names nobody so.

    Each name is given by its last word ("Sam Altman's" -> "Altman"), the way articles refer back to people.
    """
    speakers: list[str] = []
    for match in _SPEAKERS.finditer(question):
        for name in re.split(r"\s+(?:and|or)\s+", match.group("names")):
            last = words(name)[-1]
            if last not in speakers:
                speakers.append(last)
    return speakers
