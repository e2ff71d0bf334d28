from __future__ import annotations

import numpy as np
import pytest

from rag.evaluation.metrics import exact_match, normalize_answer, percentile, recall_at_k, reciprocal_rank, token_f1


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Normans", "normans"),
        ("  in the 10th  and 11th centuries. ", "in 10th and 11th centuries"),
        ("Rollo's", "rollos"),
        ("A, an, THE!", ""),
        ("theory", "theory"),  # articles only as whole words
    ],
)
def test_normalize_answer_follows_the_official_squad_script(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


def test_exact_match_takes_the_best_gold() -> None:
    assert exact_match("the 10th century", ["10th century", "in the 10th century"]) == 1.0
    assert exact_match("10th and 11th centuries", ["10th century"]) == 0.0
    assert exact_match("anything", []) == 0.0


def test_token_f1_is_partial_credit_against_the_best_gold() -> None:
    # prediction tokens: in 10th and 11th centuries (5); gold: 10th and 11th centuries (4); overlap 4
    assert token_f1("in the 10th and 11th centuries", ["10th and 11th centuries"]) == pytest.approx(2 * 0.8 / 1.8)
    assert token_f1("France", ["Normandy", "France"]) == 1.0
    assert token_f1("Paris", ["London"]) == 0.0


def test_empty_answers_score_only_against_empty_golds() -> None:
    assert token_f1("", ["Normandy"]) == 0.0
    assert token_f1("", [""]) == 1.0
    assert token_f1("the", ["a"]) == 1.0  # both normalise to nothing


def test_recall_and_reciprocal_rank_count_each_id_once() -> None:
    ranked = ["p3", "p3", "p1", "p3", "p7", "p2"]  # chunks of paragraphs, best first
    assert recall_at_k(ranked, "p1", 1) == 0.0
    assert recall_at_k(ranked, "p1", 2) == 1.0  # the repeated p3 does not push p1 to rank 3
    assert reciprocal_rank(ranked, "p1") == 0.5
    assert reciprocal_rank(ranked, "p2", k=3) == 0.0
    assert reciprocal_rank(ranked, "p2", k=4) == 0.25
    assert reciprocal_rank(ranked, "p9") == 0.0


def test_recall_with_several_relevant_ids() -> None:
    assert recall_at_k(["a", "b", "c"], {"a", "c", "z"}, 2) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="relevant"):
        recall_at_k(["a"], [], 1)


@pytest.mark.parametrize("q", [0, 10, 50, 90, 95, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = [120.0, 5.0, 33.0, 7.5, 64.0, 1.0, 90.0]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_refuses_no_values_and_bad_q() -> None:
    assert percentile([4.0], 95) == 4.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
