"""What the model is shown: the answer prompt and the yes/no answer check read passages the same way."""

from __future__ import annotations

from rag.answering.prompts import build_claim_prompt, build_confirm_prompt, build_prompt
from rag.types import Chunk, Passage

PASSAGE = Passage(
    chunk=Chunk("c-0", "d", 0, "Note: the information is current as of October 2023.", 0, 53),
    title="Scoop: Meta to open source its next AI models",
    source="seeds/scoop.txt",
    score=1.0,
    relevance=0.7,
)


def test_both_prompts_name_the_article_each_passage_comes_from() -> None:
    """Questions often name the article ("as of what date does the article on Meta's plan ..."), not the passage."""
    question = "As of what date does the article on Meta's plan say its information is current?"
    for prompt in (build_prompt(question, [PASSAGE], []), build_confirm_prompt(question, [PASSAGE], [])):
        asked = prompt.messages[-1]["content"]
        assert PASSAGE.title in asked and PASSAGE.chunk.text in asked and question in asked
        assert asked.index(PASSAGE.title) < asked.index(PASSAGE.chunk.text)


def test_a_second_attempt_is_told_why_the_first_was_refused_after_the_question() -> None:
    question = "As of what date is the information current?"
    first = build_prompt(question, [PASSAGE], []).messages[-1]["content"]
    second = build_prompt(question, [PASSAGE], [], refused_because="no passage supports what it says")
    asked = second.messages[-1]["content"]
    assert asked.startswith(first) and "refused because no passage supports what it says" in asked


def test_the_claim_judge_reads_the_claim_without_its_markers_after_the_passage() -> None:
    asked = build_claim_prompt("It is current as of October 2023 [1].", [PASSAGE]).messages[-1]["content"]
    assert "Claim: It is current as of October 2023." in asked and "[1]" not in asked
    assert asked.index(PASSAGE.chunk.text) < asked.index("Claim:")
