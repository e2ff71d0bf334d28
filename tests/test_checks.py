"""The abstention steps that read what each cited sentence rests on: contradiction and who said it.

The passages are real sentences of the seeds articles; the answers are the wrong ones a small model
writes over them (the issue's "Meta still owns PyTorch", another person's proposal), and the right ones.
"""

from __future__ import annotations

import pytest
from conftest import SEEDS

from rag.answering.checks import Case, Contradiction, PolarityDisagrees, WrongSpeaker, abstention_checks
from rag.answering.citations import VerifiedAnswer
from rag.answering.evidence import (
    claim_evidence,
    numbers_missing,
    opposite_clause,
    question_speakers,
    says_yes_and_no,
)
from rag.answering.prompts import build_prompt
from rag.answering.yes_no import PolarityReader
from rag.lexical import is_yes_no_question, names_anyone
from rag.settings import Settings
from rag.types import Chunk, Passage

PYTORCH = (
    "Meta\u2019s Fundamental AI Research group (FAIR) developed Pytorch, a crucial coding infrastructure widely used "
    "in modern AI. Although Meta no longer owns Pytorch, having passed it on to an external foundation, their "
    "open-sourcing strategy has a deeper purpose."
)
PARIS = (
    "The AI Action Summit held this year in Paris brought these questions to the forefront, particularly during "
    "a thought-provoking presentation by Meta\u2019s chief AI scientist, Yann LeCun. He articulated an ambitious "
    "vision: a world where open-source platforms are trained collaboratively, with data centers strategically "
    "distributed across the globe."
)
ALTMAN = (
    "Altman proposed that these advanced systems should be overseen by \u201can international agency looking at "
    "the most powerful systems,\u201d charged with ensuring adequate safety testing."
)
CONTINUED = (
    "He maintains a trust in world institutions to safeguard the development and application of AI, even "
    "highlighting the potential benefits of autonomous weapons in certain contexts."
)

OPEN_SOURCE = (
    "During a virtual conference, Zuckerberg boldly claimed that open-source technology is necessary to harness "
    "the potential benefits of AI while minimizing the risks. Open-source refers to software that is freely "
    "available for anyone to use, modify, and distribute. It encourages collaboration and transparency amongst "
    "developers, allowing for the collective improvement of technology."
)


def _passage(text: str, title: str = "An article") -> Passage:
    return Passage(Chunk("c", "d", 0, text, 0, len(text)), title, "seeds/x.txt", 1.0, 0.5)


def _case(question: str, answer: str, *texts: str) -> Case:
    return Case(question, [_passage(t) for t in texts], [], answer, VerifiedAnswer(answer, [], True))


def test_the_passages_here_are_the_seeds_articles_words() -> None:
    articles = " ".join(" ".join(p.read_text(encoding="utf-8").split()) for p in SEEDS.iterdir())
    for text in (PYTORCH, PARIS, ALTMAN, CONTINUED, OPEN_SOURCE):
        assert text in articles


@pytest.mark.parametrize(
    ("claim", "evidence", "opposite"),
    [
        ("Yes, Meta still owns PyTorch", PYTORCH, "Meta still owns PyTorch"),
        ("No, Meta no longer owns PyTorch; it passed it on to a foundation", PYTORCH, None),
        ("Meta does not own PyTorch", PYTORCH, None),  # "does not own" is "no longer owns": both negated
        ("FAIR did not develop PyTorch", PYTORCH, "FAIR did not develop PyTorch"),
        # a "not" in a paraphrase of a different clause is no contradiction
        (
            "LeCun does not see superintelligence as near; he believes it is far off",
            "LeCun\u2019s main caution is regarding superintelligence, but he believes that this possibility is "
            "far off.",
            None,
        ),
    ],
)
def test_a_clause_restating_a_cited_clause_with_the_opposite_negation_is_found(
    claim: str, evidence: str, opposite: str | None
) -> None:
    assert opposite_clause(claim, evidence) == opposite


def test_numbers_the_evidence_does_not_give_are_found() -> None:
    evidence = "The information is based on the latest available data as of October 2023 on Detectron2."
    assert numbers_missing("It is current as of October 2025", evidence) == ["2025"]
    assert numbers_missing("It is current as of October 2023", evidence) == []
    assert numbers_missing("The tool is Detectron2, from the 21st century", evidence) == ["21st"]


def test_curly_and_straight_apostrophes_negate_alike() -> None:
    assert (
        opposite_clause("AI systems don't replace the open Internet", "AI systems don\u2019t replace the open Internet")
        is None
    )


@pytest.mark.parametrize(
    ("question", "speakers"),
    [
        ("What did Sam Altman propose at the AI Action Summit in Paris?", ["Altman"]),
        ("Why does Yann LeCun want an international agency?", ["LeCun"]),
        ("How do LeCun's and Sam Altman's views on regulating AI differ?", ["LeCun", "Altman"]),
        ("According to Zuckerberg's argument, what does open source enable?", ["Zuckerberg"]),
        ("Did LeCun give a presentation in Paris?", ["LeCun"]),
        ("What does the article on Meta's plan say?", []),  # the article is not a speaker
        ("What is his main caution?", []),
        ("Why could a lawyer who did not have Belgian heritage not be admitted?", []),
    ],
)
def test_the_people_a_question_asks_about(question: str, speakers: list[str]) -> None:
    assert question_speakers(question) == speakers


def test_yes_no_questions_open_with_an_auxiliary() -> None:
    assert is_yes_no_question("Is PyTorch still owned by Meta?")
    assert is_yes_no_question("According to the article, does Meta share its research?")
    assert is_yes_no_question("Didn't he say so?")
    assert not is_yes_no_question("What is PyTorch?")
    assert not is_yes_no_question("Isabel who?")


def test_each_claim_is_paired_with_the_sentence_it_rests_on_and_who_that_sentence_continues() -> None:
    [evidence] = claim_evidence("He proposed data centers distributed across the globe [1].", [_passage(PARIS)])
    assert evidence.sentence.startswith("He articulated") and evidence.window.startswith("The AI Action Summit")
    assert evidence.attributed
    [opening] = claim_evidence("He trusts world institutions [1].", [_passage(CONTINUED)])
    assert not opening.attributed  # "He" is named before this chunk starts
    [second] = claim_evidence("Adequate safety testing [1].", [_passage(f"{PYTORCH} {ALTMAN}")])
    assert second.window.startswith("Although Meta") and second.attributed  # the sentence before, always


def test_contradiction_refuses_the_opposite_of_the_cited_sentence_and_yes_and_no_at_once() -> None:
    step = Contradiction()
    question = "Is PyTorch still owned by Meta?"
    assert step.refusal(_case(question, "Yes, Meta still owns PyTorch [1].", PYTORCH))
    assert step.refusal(_case(question, "No, Meta no longer owns PyTorch [1].", PYTORCH)) is None
    both = "Yes, Meta owns PyTorch [1]. No, it passed it on to an external foundation [1]."
    assert says_yes_and_no(both) and step.refusal(_case(question, both, PYTORCH))


def test_wrong_speaker_refuses_another_persons_words_and_keeps_the_persons_own() -> None:
    step = WrongSpeaker()
    lecun_vision = "Data centers would be distributed across the globe [1]."
    refusal = step.refusal(_case("What did Sam Altman propose in Paris?", lecun_vision, PARIS))
    assert refusal == "The documents don't say that Altman said that."
    assert step.refusal(_case("What did LeCun propose in Paris?", lecun_vision, PARIS)) is None
    agency = "An international agency should oversee the most powerful systems [1]."
    assert step.refusal(_case("Why does Yann LeCun want an international agency?", agency, ALTMAN))
    both = f"{lecun_vision[:-5]} [1]. {agency[:-5]} [2]."
    assert step.refusal(_case("How do LeCun's and Altman's views differ?", both, PARIS, ALTMAN)) is None
    assert step.refusal(_case("How do LeCun's and Macron's views differ?", both, PARIS, ALTMAN))


def test_wrong_speaker_lets_through_background_that_names_nobody() -> None:
    """ "It encourages collaboration" continues "Open-source refers to ...": no one's words, so no one else's."""
    step = WrongSpeaker()
    question = "How do Sam Altman and Zuckerberg differ on the risks of AI?"
    zuckerberg = "Zuckerberg says open source harnesses AI's benefits while minimizing the risks [1]."
    background = "It encourages collaboration and transparency amongst developers [1]."
    agency = "Altman wants an international agency to oversee the most powerful systems [2]."
    assert step.refusal(_case(question, f"{zuckerberg} {background} {agency}", OPEN_SOURCE, ALTMAN)) is None
    # a sentence of the same passage whose window names someone else is still refused (background that names
    # nobody is left to the cited-names step, which reads whole documents: this article never names Altman)
    benefits = "Open source harnesses the potential benefits of AI while minimizing the risks [1]."
    assert step.refusal(_case("What did Sam Altman say about open source?", benefits, OPEN_SOURCE))
    # a sentence that opens with a name names someone, though the name is its first word ("Altman proposed")
    assert names_anyone(ALTMAN, ALTMAN) and not names_anyone(OPEN_SOURCE.split(". ", 1)[1], OPEN_SOURCE)


def test_the_new_steps_run_in_order_and_each_can_be_switched_off() -> None:
    every = Settings(disabled_checks=[])
    assert "contradiction" not in [step.name for step in abstention_checks(Settings(), None, None, None)]  # type: ignore[arg-type]
    names = [step.name for step in abstention_checks(every, store=None, engine=None, reader=None)]  # type: ignore[arg-type]
    assert names.index("citations") < names.index("contradiction") < names.index("wrong speaker")
    assert names[-1] == "polarity"
    off = Settings(disabled_checks=["contradiction", "polarity"])
    assert {"contradiction", "polarity"}.isdisjoint(step.name for step in abstention_checks(off, None, None, None))  # type: ignore[arg-type]


def test_a_yes_no_question_is_asked_for_its_yes_or_no_first() -> None:
    prompt = build_prompt("Is PyTorch still owned by Meta?", [_passage(PYTORCH)], [])
    assert "Begin with Yes or No" in prompt.messages[-1]["content"]
    assert "Begin with Yes or No" not in build_prompt("Who owns PyTorch?", [], []).messages[-1]["content"]


def test_polarity_reads_only_yes_no_answers_to_yes_no_questions() -> None:
    step = PolarityDisagrees(PolarityReader(engine=None, bias=3.0, margin=1.0))  # type: ignore[arg-type]  # never asked
    assert step.refusal(_case("Who owns PyTorch?", "No one at Meta [1].", PYTORCH)) is None
    assert step.refusal(_case("Is PyTorch owned by Meta?", "Meta passed it on [1].", PYTORCH)) is None
