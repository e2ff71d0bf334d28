"""Cut each retrieved passage down to the sentences that matter for the question.

On this CPU the prompt's length sets the time to the first token (prefill is compute-bound, about
4 ms per token for the 1.5B model), and a 700-character chunk is mostly context around one or two
useful sentences. Each passage keeps a contiguous run of its sentences around the one closest to
the question, so an excerpt is still a span of its document: citations, highlights and the
"open at this passage" link work on it unchanged, and a pronoun keeps the sentence before it
when the budget allows.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from rag.embedding.embedder import Embedder
from rag.ingestion.chunking import split_sentences
from rag.lexical import content_stems
from rag.types import Chunk, Passage


class PassageTrimmer:
    """Sentences are scored by meaning (cosine to the query) plus shared words; the best one is grown into a window."""

    def __init__(self, embedder: Embedder, max_chars: int) -> None:
        self.embedder = embedder
        self.max_chars = max_chars

    def trim(self, query: str, passages: list[Passage]) -> list[Passage]:
        """`max_chars` of 0 leaves the passages whole."""
        if not self.max_chars or not passages:
            return passages
        spans = [split_sentences(p.chunk.text) or [(0, len(p.chunk.text))] for p in passages]
        sentences = [p.chunk.text[a:b] for p, ss in zip(passages, spans, strict=True) for a, b in ss]
        vectors = self.embedder.encode([query, *sentences])
        cosines = vectors[1:] @ vectors[0]
        query_stems = content_stems(query)
        overlaps = np.array(
            [len(query_stems & content_stems(s)) / len(query_stems) if query_stems else 0.0 for s in sentences]
        )
        scores = (cosines + overlaps).tolist()
        trimmed, offset = [], 0
        for passage, sentence_spans in zip(passages, spans, strict=True):
            own = scores[offset : offset + len(sentence_spans)]
            titled = [_repeats(sentences[offset + i], passage.title) for i in range(len(sentence_spans))]
            offset += len(sentence_spans)
            # The title is shown above every passage: a headline repeating it in the text adds nothing
            # and would win on the question's words, leaving out the sentence that answers.
            own = [-np.inf if is_title else score for score, is_title in zip(own, titled, strict=True)]
            trimmed.append(self._window(passage, sentence_spans, own))
        return trimmed

    def _window(self, passage: Passage, spans: list[tuple[int, int]], scores: list[float]) -> Passage:
        """Grow from the best sentence towards whichever neighbour scores higher, while the window fits."""
        first = last = int(np.argmax(scores))
        while True:
            fitting = [
                i
                for i in (last + 1, first - 1)
                if 0 <= i < len(spans) and spans[max(last, i)][1] - spans[min(first, i)][0] <= self.max_chars
            ]
            if not fitting:
                break
            grow = max(fitting, key=lambda i: scores[i])  # on a tie the sentence after, which usually goes on
            first, last = min(first, grow), max(last, grow)
        if first == 0 and last == len(spans) - 1:
            return passage
        chunk = passage.chunk
        start, end = spans[first][0], spans[last][1]
        excerpt = Chunk(
            chunk.chunk_id, chunk.doc_id, chunk.index, chunk.text[start:end], chunk.start + start, chunk.start + end
        )
        return replace(passage, chunk=excerpt)


def _repeats(sentence: str, title: str) -> bool:
    """Whether `sentence` is the title again (any case, spacing or quote marks)."""
    return _words(sentence) == _words(title) != []


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())
