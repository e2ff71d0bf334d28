"""Yes/no by the evidence: an answer's Yes or No is the model's reading of the passages, asked alone.

While writing, the model leans on its own first word: a false premise ("Is PyTorch still owned by
Meta?") gets "Yes ..." written from the very sentence that says otherwise, and a right "No, X is not Y"
restates the question in words no passage holds, so the citation check cannot tie it to one. Asked the
question over the passages on their own (the polarity prompt), the model reads the evidence. Where that
reading is clear (log-odds beyond `margin` of `bias`, where its read is even: it leans to yes) and the
draft says the other word, or its claim cannot be tied to a passage, the answer becomes that word and the
passage sentence that shows it, quoted: "No: Although Meta no longer owns PyTorch, ... [1]". The checks
then run on it as on any answer. Where the reading is unclear the draft is left to them.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from rag.answering.citations import VerifiedAnswer, split_claims
from rag.answering.evidence import opening_polarity
from rag.answering.prompts import build_polarity_prompt
from rag.embedding.embedder import Embedder
from rag.generation.base import GenerationEngine
from rag.ingestion.chunking import split_sentences
from rag.lexical import is_yes_no_question
from rag.types import Passage, Turn

READINGS_KEPT = 64  # the polarity step reads the same passages again right after: asked once
MIN_SENTENCE_WORDS = 6


class PolarityReader:
    """The model's yes/no reading of a question over some passages, kept for the last few questions."""

    def __init__(self, engine: GenerationEngine, bias: float, margin: float) -> None:
        self.engine = engine
        self.bias = bias
        self.margin = margin
        self._odds: OrderedDict[tuple[str, ...], float] = OrderedDict()

    def log_odds(self, question: str, passages: list[Passage], history: list[Turn]) -> float:
        prompt = build_polarity_prompt(question, passages, history)
        key = tuple(m["content"] for m in prompt.messages)
        if key not in self._odds:
            self._odds[key] = self.engine.yes_log_odds(prompt)
            while len(self._odds) > READINGS_KEPT:
                self._odds.popitem(last=False)
        return self._odds[key]

    def reading(self, question: str, passages: list[Passage], history: list[Turn]) -> str | None:
        """ "yes" or "no" when the model reads it clearly in the passages, None when it is unsure."""
        odds = self.log_odds(question, passages, history)
        if odds > self.bias + self.margin:
            return "yes"
        if odds < self.bias - self.margin:
            return "no"
        return None


class YesNoByEvidence:
    def __init__(self, reader: PolarityReader, embedder: Embedder) -> None:
        self.reader = reader
        self.embedder = embedder

    def revise(
        self, question: str, draft: str, verified: VerifiedAnswer, passages: list[Passage], history: list[Turn]
    ) -> str | None:
        """The answer the evidence gives, or None to keep the draft (not a yes/no question, the evidence
        unclear, or the draft already saying what the evidence does)."""
        if not is_yes_no_question(question) or not passages:
            return None
        evidence = self._evidence(draft, verified, passages)
        read = self.reader.reading(question, evidence, history)
        said = opening_polarity(verified.text) if verified.supported else None
        if read is None or read == said:
            return None
        n, sentence = self._showing(question, evidence, passages)
        return f"{read.capitalize()}: {sentence} [{n}]"

    @staticmethod
    def _evidence(draft: str, verified: VerifiedAnswer, passages: list[Passage]) -> list[Passage]:
        """The passages the checked answer cites; else those the draft cites; else the first retrieved."""
        numbers = [c.n for c in verified.citations] or [
            n for claim in split_claims(draft) for n in claim.markers if 1 <= n <= len(passages)
        ]
        return [passages[n - 1] for n in dict.fromkeys(numbers)] or passages[:1]

    def _showing(self, question: str, evidence: list[Passage], passages: list[Passage]) -> tuple[int, str]:
        """The evidence sentence closest in meaning to the question, with its passage's number.

        A heading or a label ("Meta's Previous Open Source Initiatives") states nothing: lines of fewer than
        `MIN_SENTENCE_WORDS` words are passed over while the passages hold a longer sentence.
        """
        candidates = [
            (passages.index(p) + 1, p.chunk.text[s:e]) for p in evidence for s, e in split_sentences(p.chunk.text)
        ]
        statements = [c for c in candidates if len(c[1].split()) >= MIN_SENTENCE_WORDS]
        candidates = statements or candidates
        vectors = self.embedder.encode([question] + [text for _, text in candidates])
        best = int(np.argmax(vectors[1:] @ vectors[0]))
        return candidates[best]
