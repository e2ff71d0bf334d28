"""Check every citation marker against the passage it points to, and repair what the model got wrong.

Small models cite loosely: a wrong number, a marker on a sentence the passage does not support, or no
marker at all. Support is measured per answer sentence as a blend of word evidence (how many of the
sentence's own content words, beyond the question's, occur in the passage) and meaning (the best cosine
between the sentence and any one passage sentence), scaled by how many of the sentence's names and
numbers the passage mentions: "LeCun proposed X" is not supported by a passage where Altman proposed X.
A claim copied word for word from a passage (a short answer such as "three" or "17(3)") is supported
by it outright: word overlap and meaning are weak evidence for a phrase of one or two words.

A sentence citing several passages ("X, while Y [2][3]") is checked against them together. A sentence
that only restates the question adds nothing and supports nothing, except after a yes/no question, where
"Yes, <the question's words>" is the claim. Sentences no passage supports are
removed. If the direct answer (the first sentence that adds to the question) is unsupported, the
answer as a whole is unsupported and the caller abstains.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rag.embedding.embedder import Embedder
from rag.ingestion.chunking import split_sentences
from rag.lexical import content_stems, is_yes_no_question, mentions, salient_terms
from rag.types import Citation, Passage

MARKER = re.compile(r"\s*\[(?:passages?\s*)?(\d+(?:\s*(?:,|and|-)\s*\d+)*)\]", re.IGNORECASE)
_TRAILING_PUNCT = re.compile(r"[.!?:;]+$")


@dataclass(frozen=True)
class VerifiedAnswer:
    text: str
    citations: list[Citation]
    supported: bool


@dataclass
class Claim:
    """One answer sentence: its span in the answer, its text without markers, and the passage numbers it cites."""

    start: int
    end: int
    text: str
    markers: list[int]


def _marker_numbers(group: str) -> list[int]:
    numbers = [int(n) for n in re.findall(r"\d+", group)]
    if "-" in group and len(numbers) == 2 and numbers[0] < numbers[1]:
        return list(range(numbers[0], numbers[1] + 1))
    return numbers


def split_claims(answer: str) -> list[Claim]:
    """Answer sentences with their markers; a sentence of markers alone belongs to the one before."""
    claims: list[Claim] = []
    for start, end in split_sentences(answer):
        raw = answer[start:end]
        markers = [n for m in MARKER.finditer(raw) for n in _marker_numbers(m.group(1))]
        text = MARKER.sub("", raw).strip()
        if not re.search(r"[A-Za-z0-9]", text) and claims:
            claims[-1].markers.extend(markers)
            claims[-1].end = end
            continue
        claims.append(Claim(start, end, text, markers))
    return claims


def _squashed(text: str) -> str:
    return " ".join(text.lower().split())


def _quotes(claim: str, passage: str) -> bool:
    """Whether `claim` appears word for word in `passage` (ignoring case, spacing and end punctuation)."""
    phrase = _squashed(claim).strip(" .,;:!?\"'\u201c\u201d")
    if not re.search(r"[a-z0-9]", phrase):
        return False
    return re.search(rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])", _squashed(passage)) is not None


def _with_markers(text: str, numbers: list[int]) -> str:
    tags = "".join(f"[{n}]" for n in numbers)
    punct = _TRAILING_PUNCT.search(text)
    if punct:
        return f"{text[: punct.start()]} {tags}{punct.group()}"
    return f"{text} {tags}"


def novel_stems(claim: str, question: str) -> set[str]:
    """The claim's content words beyond the question's: what it adds as an answer."""
    return content_stems(claim) - content_stems(question)


def direct_claim(claims: list[Claim], question: str) -> int | None:
    """Which of the answer's sentences is its direct answer: the first that adds to the question (None when
    none does). The answer stands or falls by it."""
    return next((i for i, c in enumerate(claims) if novel_stems(c.text, question)), None)


# Whether passages (read together) state a claim: the model asked (rag.answering.judge.ClaimJudge.states).
ClaimStated = Callable[[str, list[Passage]], bool]


class CitationVerifier:
    def __init__(self, embedder: Embedder, threshold: float) -> None:
        self.embedder = embedder
        self.threshold = threshold

    def verify(
        self,
        answer: str,
        passages: list[Passage],
        question: str = "",
        each_sentence: bool = False,
        judge: ClaimStated | None = None,
    ) -> VerifiedAnswer:
        """The answer with its unsupported sentences dropped and its markers corrected.

        It stands when its direct answer is supported, or with `each_sentence` (a summary, a comparison,
        a list: sentences that each answer a part) when any sentence is. A direct answer the support score
        would drop is put to `judge`, when given, over the passages it cites (else the one that supports it
        best): it stands, with those markers, if the judge finds it stated there.
        """
        if is_yes_no_question(question):
            # "Yes, Meta shares its research" restates the question, and that is the claim to support.
            question = ""
        claims = [
            c
            for c in split_claims(answer)
            if content_stems(c.text) or any(_quotes(c.text, p.chunk.text) for p in passages)
        ]
        if not claims or not passages:
            return VerifiedAnswer(MARKER.sub("", answer).strip(), [], False)

        support, quotes = self._support(claims, passages, question)
        kept: dict[int, list[int]] = {}
        best_for_passage: dict[int, tuple[float, tuple[int, int]]] = {}
        said: set[str] = set()
        for i, claim in enumerate(claims):
            if each_sentence and _squashed(claim.text) in said:
                kept[i] = []  # a list item or sentence the model wrote again (greedy decoding loops)
                continue
            said.add(_squashed(claim.text))
            valid = [n for n in dict.fromkeys(claim.markers) if 1 <= n <= len(passages)]
            numbers = [n for n in valid if support[i, n - 1] >= self.threshold]
            cited_together = [passages[n - 1] for n in valid]
            if not numbers and len(valid) > 1 and self._joint_support(claim, cited_together, question):
                numbers = valid
            if not numbers:
                best = int(np.argmax(support[i]))
                numbers = [best + 1] if support[i, best] >= self.threshold else []
            kept[i] = numbers
            for n in numbers:
                score = float(support[i, n - 1])
                if n not in best_for_passage or score > best_for_passage[n][0]:
                    best_for_passage[n] = (score, quotes[i][n - 1])

        answer_claim = direct_claim(claims, question) or 0
        if not each_sentence and not kept[answer_claim] and judge is not None:
            claim = claims[answer_claim]
            valid = [n for n in dict.fromkeys(claim.markers) if 1 <= n <= len(passages)]
            numbers = valid or [int(np.argmax(support[answer_claim])) + 1]
            if judge(claim.text, [passages[n - 1] for n in numbers]):
                kept[answer_claim] = numbers
                for n in numbers:
                    if n not in best_for_passage:
                        best_for_passage[n] = (float(support[answer_claim, n - 1]), quotes[answer_claim][n - 1])

        text = self._rebuild(answer, claims, kept)
        order = list(dict.fromkeys(n for i in sorted(kept) for n in kept[i]))
        citations = [self._citation(n, passages[n - 1], *best_for_passage[n]) for n in order]
        if each_sentence:
            return VerifiedAnswer(text, citations, any(kept.values()))
        return VerifiedAnswer(text, citations, bool(kept[answer_claim]))

    def support_of(self, claim: str, passage: Passage, question: str = "") -> float:
        """One claim's support score from one passage, as `verify` computes it (for measuring the judge)."""
        support, _ = self._support([Claim(0, len(claim), claim, [])], [passage], question)
        return float(support[0, 0])

    def _joint_support(self, claim: Claim, cited: list[Passage], question: str) -> bool:
        """Word evidence and names over the cited passages together, for a claim that draws on several."""
        novel = novel_stems(claim.text, question)
        if not novel:
            return False
        together = set().union(*(content_stems(p.shown_text) for p in cited))
        named = all(any(mentions(p.shown_text, term) for p in cited) for term in salient_terms(claim.text))
        return len(novel & together) / len(novel) >= self.threshold and named

    def _support(
        self, claims: list[Claim], passages: list[Passage], question: str
    ) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
        """support[claim, passage] in [0, 1], and the best supporting sentence span (chunk-relative)."""
        sentence_spans = [split_sentences(p.chunk.text) or [(0, len(p.chunk.text))] for p in passages]
        sentences = [p.chunk.text[s:e] for p, spans in zip(passages, sentence_spans, strict=True) for s, e in spans]
        vectors = self.embedder.encode([c.text for c in claims] + sentences)
        claim_vecs, sentence_vecs = vectors[: len(claims)], vectors[len(claims) :]
        similarity = claim_vecs @ sentence_vecs.T

        shown = [p.shown_text for p in passages]
        passage_stems = [content_stems(text) for text in shown]
        support = np.zeros((len(claims), len(passages)), dtype=np.float32)
        quotes: list[list[tuple[int, int]]] = []
        for i, claim in enumerate(claims):
            novel = novel_stems(claim.text, question)
            names = salient_terms(claim.text)
            row_quotes = []
            offset = 0
            for p, spans in enumerate(sentence_spans):
                sims = similarity[i, offset : offset + len(spans)]
                offset += len(spans)
                text = passages[p].chunk.text
                quoting = [span for span in spans if _quotes(claim.text, text[span[0] : span[1]])]
                if quoting:
                    support[i, p] = 1.0
                    row_quotes.append(quoting[0])
                    continue
                best = int(np.argmax(sims))
                row_quotes.append(spans[best])
                if not novel:  # it only restates the question
                    continue
                lexical = len(novel & passage_stems[p]) / len(novel)
                named = sum(mentions(shown[p], n) for n in names) / len(names) if names else 1.0
                support[i, p] = (0.5 * lexical + 0.5 * max(float(sims[best]), 0.0)) * named
            quotes.append(row_quotes)
        return support, quotes

    @staticmethod
    def _rebuild(answer: str, claims: list[Claim], kept: dict[int, list[int]]) -> str:
        """Rewrite each sentence in place with its checked markers (dropping unsupported ones), keeping layout.

        A dropped sentence takes the blank space before it along (a dropped list item leaves no empty line).
        """
        pieces: list[str] = []
        cursor = 0
        for i, claim in enumerate(claims):
            before = MARKER.sub("", answer[cursor : claim.start])
            if kept[i]:
                pieces.append(before)
                pieces.append(_with_markers(claim.text, kept[i]))
            elif before.strip():
                pieces.append(before)
            cursor = claim.end
        pieces.append(MARKER.sub("", answer[cursor:]))
        return "".join(pieces).strip()

    @staticmethod
    def _citation(n: int, passage: Passage, score: float, quote: tuple[int, int]) -> Citation:
        chunk = passage.chunk
        return Citation(
            n=n,
            doc_id=chunk.doc_id,
            title=passage.title,
            source=passage.source,
            start=chunk.start,
            end=chunk.end,
            text=chunk.text,
            score=round(score, 3),
            quote_start=chunk.start + quote[0],
            quote_end=chunk.start + quote[1],
            place=passage.place_at(chunk.start + quote[0]),
        )
