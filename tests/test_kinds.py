"""Question kinds decide what an answer is written from; a wrong kind sends a fact question down another path."""

from __future__ import annotations

import pytest

from rag.answering.kinds import question_kind
from rag.retrieval.gathering import comparison_sides, side_query
from rag.types import Turn


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("What did LeCun propose in Paris?", "fact"),
        ("Is PyTorch still owned by Meta?", "fact"),
        ("Who edited the article about data sharing?", "fact"),  # names an article, asks a fact in it
        ("Summarize the four articles in one sentence each.", "summary"),
        ("Give me an overview of the report on the budget", "summary"),
        ("What is the Zuckerberg article about?", "summary"),
        ("What is this about?", "summary"),
        ("Compare LeCun's and Altman's views on regulation.", "comparison"),
        ("Where do LeCun and Zuckerberg agree?", "comparison"),
        ("Which people are reported on?", "list"),
        ("List the risks the articles raise.", "list"),
        ("What documents do you have?", "collection"),
        ("How many files are there?", "collection"),
        ("Which articles are in the collection?", "collection"),
        ("List the documents.", "collection"),
    ],
)
def test_question_kind(question: str, kind: str) -> None:
    assert question_kind(question) == kind


def test_a_short_and_follow_up_keeps_the_kind_of_the_question_before() -> None:
    history = [Turn("Summarize the article about data sharing.", "It says ... [1]")]
    assert question_kind("And the Zuckerberg one?", history) == "summary"
    assert question_kind("And the Zuckerberg one?") == "fact"  # nothing to follow
    # a follow-up that asks a question of its own is judged on its own words
    assert question_kind("And what did he propose at the summit in Paris last year?", history) == "fact"


@pytest.mark.parametrize(
    ("question", "sides"),
    [
        ("Compare LeCun's and Altman's views on regulation.", ["LeCun", "Altman"]),
        ("How do Sam Altman and Zuckerberg differ?", ["Sam Altman", "Zuckerberg"]),  # one name, two words
        ("Compare the two positions.", []),
    ],
)
def test_comparison_sides_are_the_names_in_the_question(question: str, sides: list[str]) -> None:
    assert comparison_sides(question) == sides


def test_a_side_is_searched_without_the_other_sides_names() -> None:
    question = "Compare LeCun's and Altman's views on regulation."
    assert side_query(question, "LeCun", ["LeCun", "Altman"]) == "Compare LeCun's and views on regulation."
    assert side_query(question, "Altman", ["LeCun", "Altman"]) == "Compare and Altman's views on regulation."
