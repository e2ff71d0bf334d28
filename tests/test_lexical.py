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


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("a 700 megawatt plant", "700-megawatt"),
        ("on October 16, 1973", "16th"),
        ("eight U.S. presidents", "US"),
        ("the law of the European Union", "EU"),
        ("the American Revolution", "Revolutionary"),
        ("the single market of Europe", "European"),
        ("languages of India", "Indian"),
        ("Huguenot refugees", "Huguenots"),
        ("mayors in the 17th and 18th centuries", "1700s"),
        ("a 17th-century church", "1600s"),
        ("in the 1600s", "1600s"),
        ("in the 18th and 19th centuries", "1700s"),
        ("Huguenot mayors in Ireland", "Irish"),
        ("the Dutch Republic", "Netherlands"),
        ("refugees from Holland", "Dutch"),
        ("three Englishmen and the French", "France"),
        ("two Scots", "Scottish"),
        ("a Kenyan runner", "Kenya"),  # from the gazetteer: no ending rule makes Kenya-n
        ("Malagasy rice farmers", "Madagascar"),
        ("exports from Madagascar", "Malagasy"),
        ("the Welsh coast", "Wales"),
        (
            "the Icelandic sagas",
            "Iceland",
        ),  # an ending on a gazetteer form  # a part of a country, which the gazetteer does not hold
    ],
)
def test_a_name_written_another_way_is_still_mentioned(text: str, term: str) -> None:
    assert mentions(text, term)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("in 160 cases", "16"),  # a number is not the start of a longer one
        ("he told us so", "US"),  # an acronym keeps its case
        ("the Colombian president", "Columbia"),  # a misspelt name is not guessed
        ("Hartmanis wrote it in 1965", "1975"),
        ("in the 16th century", "1600s"),
        ("early in the 21st century", "2000s"),
        ("roast turkey for dinner", "Turkish"),  # a place keeps its capital
        ("the Irish Sea", "England"),  # each place has its own adjective
        ("a Kenyan runner", "Uganda"),
    ],
)
def test_a_different_name_or_number_is_not_mentioned(text: str, term: str) -> None:
    assert not mentions(text, term)
