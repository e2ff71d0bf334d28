"""The lexical side of search: one BM25 tokenizer for indexing and querying, and bm25s's Lucene BM25.

Every store keeps term frequencies and chunk lengths, not finished scores, and scores at query time
from the collection's own statistics (chunks N, average length, each term's document frequency):
a local index made of several segments, or a database that grows by one document, then ranks
exactly as one index built at once would. bm25s precomputes scores with the statistics of the
chunks it was given, so it supplies the tokenizer and the formula, not the index.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
from scipy import sparse

import rag.disk as disk
from rag.lexical import english_stemmer

BM25_STOPWORDS = "en_plus"  # NLTK's list: unlike the Lucene "en" one, it drops question words (what, did)
TERMS_FILE = "terms.txt"
FREQUENCIES_FILE = "frequencies.npz"
LENGTHS_FILE = "lengths.npy"


def bm25_tokenize(texts: list[str]) -> list[list[str]]:
    """The one tokenizer for indexing and querying, so query terms match indexed terms."""
    return bm25s.tokenize(
        texts, stopwords=BM25_STOPWORDS, stemmer=english_stemmer(), return_ids=False, show_progress=False
    )


def lucene_idf(chunks: int, document_frequency: float) -> float:
    """bm25s's (and Lucene's) idf: never negative, even for a term in every chunk."""
    return float(np.log(1 + (chunks - document_frequency + 0.5) / (document_frequency + 0.5)))


def query_terms(queries: list[str]) -> list[Counter[str]]:
    """Each query's terms with how often it repeats them (a repeated term weighs that many times)."""
    return [Counter(tokens) for tokens in bm25_tokenize(queries)]


@dataclass(frozen=True)
class TermFrequencies:
    """How often each term occurs in each chunk of a segment (chunks x terms, sparse) and each chunk's length.

    Length counts the chunk's indexed tokens (stopwords dropped, repeats counted), as bm25s does.
    """

    terms: dict[str, int]  # term -> column
    frequencies: sparse.csc_matrix  # (chunks, terms) float32
    lengths: np.ndarray  # (chunks,) float32

    @classmethod
    def of(cls, texts: list[str]) -> TermFrequencies:
        """Counted in one sparse sum (repeated (chunk, term) pairs add up), not per chunk: 1M chunks in seconds."""
        tokenized = bm25s.tokenize(
            texts, stopwords=BM25_STOPWORDS, stemmer=english_stemmer(), return_ids=True, show_progress=False
        )
        lengths = np.array([len(ids) for ids in tokenized.ids], dtype=np.int64)
        columns = np.fromiter((i for ids in tokenized.ids for i in ids), dtype=np.int64, count=int(lengths.sum()))
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        matrix = sparse.csc_matrix(
            (np.ones(len(columns), dtype=np.float32), (rows, columns)), shape=(len(texts), len(tokenized.vocab))
        )
        matrix.sum_duplicates()
        return cls(dict(tokenized.vocab), matrix, lengths.astype(np.float32))

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """The rows holding `term` and its frequency in each; empty when the segment lacks it."""
        column = self.terms.get(term)
        if column is None:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        start, end = self.frequencies.indptr[column], self.frequencies.indptr[column + 1]
        return self.frequencies.indices[start:end], self.frequencies.data[start:end]

    def save(self, folder: Path) -> None:
        by_column = sorted(self.terms, key=self.terms.__getitem__)
        (folder / TERMS_FILE).write_text("".join(t + "\n" for t in by_column), encoding="utf-8")
        sparse.save_npz(folder / FREQUENCIES_FILE, self.frequencies, compressed=False)
        disk.save_array(folder / LENGTHS_FILE, self.lengths)

    @classmethod
    def load(cls, folder: Path) -> TermFrequencies:
        terms = (folder / TERMS_FILE).read_text(encoding="utf-8").splitlines()
        matrix = sparse.load_npz(folder / FREQUENCIES_FILE).tocsc()
        return cls({t: i for i, t in enumerate(terms)}, matrix, np.load(folder / LENGTHS_FILE))


def bm25_scores(
    segments: list[tuple[TermFrequencies, np.ndarray]], queries: list[str], k1: float, b: float
) -> list[np.ndarray]:
    """Each query's BM25 score of every row of the segments laid end to end; rows not live score 0.

    `segments` pairs each segment's frequencies with its live-row mask; N, the average length and
    document frequencies count live rows only, so deleted chunks do not sway the ranking.
    """
    live_lengths = [freqs.lengths[live] for freqs, live in segments]
    chunks = sum(len(lengths) for lengths in live_lengths)
    total_rows = sum(len(live) for _, live in segments)
    average = max(float(sum(lengths.sum() for lengths in live_lengths)) / max(chunks, 1), 1e-9)
    norms = [k1 * (1 - b + b * freqs.lengths / average) for freqs, _ in segments]
    offsets = np.cumsum([0] + [len(live) for _, live in segments])
    live_all = np.concatenate([live for _, live in segments]) if segments else np.zeros(0, dtype=bool)
    result = []
    for counts in query_terms(queries):
        scores = np.zeros(total_rows, dtype=np.float32)
        for term, repeats in counts.items():
            postings = [freqs.postings(term) for freqs, _ in segments]
            df = sum(int(live[rows].sum()) for (rows, _), (_, live) in zip(postings, segments, strict=True))
            if df == 0:
                continue
            weight = repeats * lucene_idf(chunks, df)
            for (rows, tf), norm, offset in zip(postings, norms, offsets, strict=False):
                scores[offset + rows] += weight * tf / (tf + norm[rows])
        scores[~live_all] = 0
        result.append(scores)
    return result
