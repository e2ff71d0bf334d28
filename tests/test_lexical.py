"""Names and content words, which abstention and citation checks both rely on."""

from __future__ import annotations

import pytest

from rag.lexical import content_stems, fold_accents, mentions, salient_terms


@pytest.mark.parametrize(
    ("question", "terms"),
    [
        ("What did Macron announce in 2024?", ["Macron", "2024"]),
        ("Who leads FAIR at Meta?", ["FAIR", "Meta"]),
        ("Meta said what?", []),  # a sentence's first word is not taken for a name
        ("LeCun wrote a book. Besides books, what else did he write?", ["LeCun"]),
        ("what did the company say?", []),
    ],
)
def test_salient_terms(question: str, terms: list[str]) -> None:
    assert salient_terms(question) == terms


def test_mentions_match_from_a_word_start() -> None:
    assert mentions("Yann LeCun spoke.", "lecun")
    assert mentions("Meta's chief scientist", "Meta")  # possessives and plurals still count
    assert not mentions("a FAIRly big lab", "AI")


def test_content_stems_meet_across_word_forms() -> None:
    assert content_stems("LeCun proposed") == content_stems("lecun proposes")
    assert content_stems("what is the") == set()


def test_accents_do_not_hide_a_name() -> None:
    passage = "Thomas de Maizière serves as Federal Minister of the Interior."
    assert fold_accents("Maizière, Ångström, café") == "Maiziere, Angstrom, cafe"
    assert mentions(passage, "Maiziere")
    assert mentions(passage, "Maizière")
    assert salient_terms("What role does Thomas de Maiziere have?") == ["Thomas", "Maiziere"]
    assert content_stems("Maizière") == content_stems("Maiziere") == {"maizier"}
