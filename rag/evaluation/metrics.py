"""Evaluation measures shared by the benchmark runners: answer overlap, ranking quality, percentiles.

Answer normalisation and EM/F1 follow the official SQuAD 2.0 evaluation script, so the numbers are
comparable with published ones: lowercase, drop punctuation and the articles a/an/the, collapse spaces.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def exact_match(prediction: str, golds: Iterable[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0."""
    predicted = normalize_answer(prediction)
    return max((float(predicted == normalize_answer(g)) for g in golds), default=0.0)


def _f1(predicted: list[str], gold: list[str]) -> float:
    if not predicted or not gold:
        return float(predicted == gold)  # an empty answer scores only against an empty gold (no-answer)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Iterable[str]) -> float:
    """Bag-of-tokens F1 against the best-matching gold answer (SQuAD gives several per question)."""
    predicted = _tokens(prediction)
    return max((_f1(predicted, _tokens(g)) for g in golds), default=0.0)


def _first_occurrences(ranked: Sequence[Hashable]) -> list[Hashable]:
    """Ranked ids with repeats removed, keeping the first: several chunks of one paragraph count once."""
    return list(dict.fromkeys(ranked))


def recall_at_k(ranked: Sequence[Hashable], relevant: Hashable | Iterable[Hashable], k: int) -> float:
    """Share of the relevant ids found in the first k distinct ids of `ranked`."""
    wanted = _as_set(relevant)
    if not wanted:
        raise ValueError("recall needs at least one relevant id")
    return len(wanted & set(_first_occurrences(ranked)[:k])) / len(wanted)


def reciprocal_rank(ranked: Sequence[Hashable], relevant: Hashable | Iterable[Hashable], k: int | None = None) -> float:
    """1 / rank of the first relevant id among the distinct ids (only the first k when given); 0 if absent."""
    wanted = _as_set(relevant)
    distinct = _first_occurrences(ranked)
    for rank, item in enumerate(distinct[:k] if k is not None else distinct, start=1):
        if item in wanted:
            return 1.0 / rank
    return 0.0


def _as_set(relevant: Hashable | Iterable[Hashable]) -> set[Hashable]:
    """A single id (a string is one id, not its characters) or a collection of them."""
    if isinstance(relevant, str | bytes) or not isinstance(relevant, Iterable):
        return {relevant}
    return set(relevant)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks, like numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
