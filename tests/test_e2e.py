"""End to end over seeds/ with the real default generator (Qwen2.5-Coder-1.5B-Instruct)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SEEDS

from rag.assistant import Assistant
from rag.settings import Settings
from rag.types import Answer, Turn

pytestmark = pytest.mark.e2e

PARIS = "003_242d03d61eec7c62.txt"
LECUN_PROPOSAL = ("repository", "human knowledge", "shared", "common model", "collaborativ", "global")


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    settings = Settings(index_dir=tmp_path_factory.mktemp("index"), default_corpus=SEEDS)
    assert settings.generator_model == "qwen2.5-coder-1.5b"
    assistant = Assistant(settings)
    assistant.index()
    assistant.warm_up()
    return assistant


def _assert_cites_paris(answer: Answer, assistant: Assistant) -> None:
    assert not answer.abstained, answer.answer
    assert any(c.source.endswith(PARIS) for c in answer.citations), answer.citations
    for citation in answer.citations:
        document = assistant.store.document(citation.doc_id)
        assert document.text[citation.start : citation.end] == citation.text
        assert f"[{citation.n}]" in answer.answer


def test_lecun_paris_proposal_is_answered_and_cited(assistant: Assistant) -> None:
    answer = assistant.ask("What did LeCun propose in Paris?")
    assert any(key in answer.answer.lower() for key in LECUN_PROPOSAL), answer.answer
    _assert_cites_paris(answer, assistant)


@pytest.mark.parametrize(
    "question",
    [
        "What did Macron announce?",
        "What is the capital of Australia?",
        "How many parameters does Meta's next model have?",
        "Why did Meta sell PyTorch to Google?",  # a false premise on a covered topic: the answer check refuses it
    ],
)
def test_questions_the_seeds_do_not_cover_abstain(assistant: Assistant, question: str) -> None:
    answer = assistant.ask(question)
    assert answer.abstained, answer.answer
    assert answer.answer.startswith("The documents don't")
    assert answer.citations == []


def test_follow_up_uses_the_conversation(assistant: Assistant) -> None:
    first = assistant.ask("Who is Meta's chief AI scientist?")
    assert "LeCun" in first.answer
    follow_up = assistant.ask("What did he propose in Paris?", [Turn(first.question, first.answer)])
    assert any(key in follow_up.answer.lower() for key in LECUN_PROPOSAL), follow_up.answer
    _assert_cites_paris(follow_up, assistant)


def test_cli_json_with_the_default_model(assistant: Assistant) -> None:
    env = {**os.environ, "RAG_INDEX_DIR": str(assistant.settings.index_dir), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ask", "--json", "What did LeCun propose in Paris?"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.strip().splitlines()
    data = json.loads(line)
    assert data["abstained"] is False
    assert any(Path(c["source"]).name == PARIS for c in data["citations"])
    assert data["timings"]["first_token_ms"] > 0


def test_answer_check_agrees_with_a_right_answer_and_not_with_a_false_premise(assistant: Assistant) -> None:
    from rag.answering.prompts import build_confirm_prompt

    question = "What did LeCun propose in Paris?"
    answer = assistant.ask(question)
    cited = [answer.passages[n - 1] for n in dict.fromkeys(c.n for c in answer.citations)]
    assert cited
    false_premise = "Why did LeCun sell PyTorch to Google?"
    agree = assistant.generator.yes_log_odds(build_confirm_prompt(question, cited, []))
    premise = assistant.generator.yes_log_odds(build_confirm_prompt(false_premise, cited, []))
    assert agree > assistant.settings.answer_check_min_log_odds > premise


def test_the_claim_judge_finds_a_paraphrase_stated_and_a_borrowed_claim_not(
    assistant_on_transformers: Assistant,
) -> None:
    """A claim in other words than its passage, which the support score misses, is found stated by the model;
    the same claim against a passage about something else, and a claim the passage never makes, are not.

    On the engine its threshold was measured on (transformers; the judge is off by default): llama.cpp reads
    this paraphrase at +0.93, under the +1 threshold (docs/evaluation.md, the model as its own judge)."""
    from rag.answering.judge import ClaimJudge

    assistant = assistant_on_transformers

    paris = next(
        p for p in assistant.retrieve("What did LeCun propose in Paris?", 4) if "human knowledge" in p.chunk.text
    )
    other = next(p for p in assistant.retrieve("Who owns PyTorch now?", 4) if "PyTorch" in p.chunk.text)
    paraphrase = "LeCun wants every nation to help build one open model holding everything people know."
    assert assistant.verifier.support_of(paraphrase, paris) < assistant.settings.support_threshold
    judge = ClaimJudge(assistant.generator, assistant.settings.claim_judge_min_log_odds)
    assert judge.states(paraphrase, [paris])
    assert not judge.states(paraphrase, [other])
    assert not judge.states("LeCun wants open models banned in Europe.", [paris])


def test_the_passage_judge_picks_the_paris_passage_for_the_lecun_question(assistant: Assistant) -> None:
    """The second attempt writes from the passage the model judges as answering: for the LeCun question, the
    Paris article's passage on his proposal, judged as answering, and no passage for Australia's capital."""
    from rag.answering.judge import PassageJudge

    judge = PassageJudge(assistant.generator)
    question = "What did LeCun propose in Paris?"
    best, odds = judge.ranked(question, assistant.retrieve(question, 4), [])[0]
    assert best.source.endswith(PARIS) and odds >= assistant.settings.answer_check_min_log_odds, (best, odds)
    capital = "What is the capital of Australia?"
    _, odds = judge.ranked(capital, assistant.retrieve(capital, 4), [])[0]
    assert odds < assistant.settings.answer_check_min_log_odds


def test_a_trap_refused_after_generation_stays_refused_after_a_second_attempt(assistant: Assistant) -> None:
    """With `second_attempt`, the refused draft is written once more from the best-judged passage and checked
    again: the name of a conference no article gives is still refused, by the same step."""
    retrying = Assistant(assistant.settings.model_copy(update={"second_attempt": True}), generator=assistant.generator)
    question = (
        "What was the name of the virtual conference at which Zuckerberg said open source is necessary for a "
        "positive AI future?"
    )
    first = assistant.ask(question)
    assert first.abstained_by not in (None, "off topic", "names missing"), first  # refused after generation
    again = retrying.ask(question)
    assert again.abstained, again.answer


def test_a_false_premise_gets_no_with_the_sentence_that_says_so(assistant: Assistant) -> None:
    """ "Is PyTorch still owned by Meta?": not "Yes, Meta still owns PyTorch [1]" citing the sentence that says
    it no longer does, nor a refusal, but "No" and that sentence."""
    answer = assistant.ask("Is PyTorch still owned by Meta?")
    assert not answer.abstained and answer.answer.lower().startswith("no"), answer.answer
    quoted = [assistant.store.document(c.doc_id).text[c.quote_start : c.quote_end] for c in answer.citations]
    assert any("no longer" in q.lower() for q in quoted), quoted


def test_a_yes_the_evidence_reads_as_yes_is_kept(assistant: Assistant) -> None:
    answer = assistant.ask("Did Meta's Fundamental AI Research group develop PyTorch?")
    assert not answer.abstained and answer.answer.lower().startswith("yes"), answer.answer


def test_the_polarity_step_reads_yes_and_no_from_the_same_passage(assistant: Assistant) -> None:
    from rag.answering.prompts import build_polarity_prompt

    question = "Is PyTorch still owned by Meta?"
    passage = next(p for p in assistant.retrieve(question, 4) if "no longer owns" in p.chunk.text)
    no = assistant.generator.yes_log_odds(build_polarity_prompt(question, [passage], []))
    yes = assistant.generator.yes_log_odds(
        build_polarity_prompt("Did Meta's FAIR group develop PyTorch?", [passage], [])
    )
    bias, margin = assistant.settings.polarity_bias, assistant.settings.polarity_margin
    assert no < bias - margin <= yes  # a "Yes" to the first is refused; a "Yes" to the second stands


@pytest.fixture(scope="module")
def assistant_on_transformers(assistant: Assistant) -> Assistant:
    """The same index and default model, answered by the transformers engine whatever `auto` picked here."""
    if assistant.generator.name == "transformers":
        return assistant
    other = Assistant(assistant.settings.model_copy(update={"generator_engine": "transformers"}))
    assert other.generator.name == "transformers"
    other.warm_up()
    return other


@pytest.fixture(scope="module")
def assistant_on_llama_cpp(assistant: Assistant) -> Assistant:
    """The same index and default model, answered by the llama.cpp engine whatever `auto` picked here."""
    other = Assistant(assistant.settings.model_copy(update={"generator_engine": "llama.cpp"}))
    assert other.generator.name == "llama.cpp"
    other.warm_up()
    return other


def test_llama_cpp_answers_the_lecun_question_with_its_citation(assistant_on_llama_cpp: Assistant) -> None:
    answer = assistant_on_llama_cpp.ask("What did LeCun propose in Paris?")
    assert any(key in answer.answer.lower() for key in LECUN_PROPOSAL), answer.answer
    _assert_cites_paris(answer, assistant_on_llama_cpp)


def test_passage_states_answer_the_lecun_question_and_read_only_the_question(assistant: Assistant) -> None:
    """With every seeds passage's state made (as `rag index` makes them), the answer is the Paris proposal, cited,
    and the prompt is read from the states: only the passages' number-and-title lines and the question."""
    stateful = Assistant(
        assistant.settings.model_copy(update={"generator_engine": "llama.cpp", "passage_states": True})
    )
    stateful.store_passage_states()
    engine = stateful.generator
    assert engine.passage_states is not None
    question = "What did LeCun propose in Paris?"
    from rag.answering.prompts import build_prompt

    prompt = build_prompt(question, stateful.gatherer.top(question), [])
    assert engine.missing_passage_states(prompt) == 0
    answer = stateful.ask(question)
    assert any(key in answer.answer.lower() for key in LECUN_PROPOSAL), answer.answer
    _assert_cites_paris(answer, stateful)
    for citation in answer.citations:  # an excerpt placed from its whole chunk's state lies inside that chunk
        chunks = stateful.chunker.split(stateful.store.document(citation.doc_id))
        assert any(c.start <= citation.start and citation.end <= c.end for c in chunks), citation


@pytest.mark.parametrize("question", ["What did Macron announce?", "Why did Meta sell PyTorch to Google?"])
def test_llama_cpp_abstains_where_the_seeds_do_not_answer(assistant_on_llama_cpp: Assistant, question: str) -> None:
    answer = assistant_on_llama_cpp.ask(question)
    assert answer.abstained, answer.answer
    assert answer.citations == []


def test_a_summary_of_the_collection_cites_every_document(assistant: Assistant) -> None:
    answer = assistant.ask("Summarize the four articles in one sentence each.")
    assert answer.kind == "summary" and not answer.abstained, answer.answer
    assert {c.doc_id for c in answer.citations} == {d.doc_id for d in assistant.documents()}
    assert "Zuckerberg" in answer.answer
    kept = assistant.summaries.path
    written = kept.stat().st_mtime_ns
    again = assistant.ask("What is this collection about?")  # read from the kept summaries, none written again
    assert again.kind == "summary" and {c.doc_id for c in again.citations} == {c.doc_id for c in answer.citations}
    assert kept.stat().st_mtime_ns == written


def test_a_comparison_cites_both_sides(assistant: Assistant) -> None:
    answer = assistant.ask("Compare LeCun's and Altman's views on regulation.")
    assert answer.kind == "comparison" and not answer.abstained, answer.answer
    assert "LeCun" in answer.answer and "Altman" in answer.answer
    _assert_cites_paris(answer, assistant)
