"""The pipeline and the CLI around it, with the tiny SmolLM2 generator so the suite stays fast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest
from conftest import SEEDS

from rag.answering.checks import CitedNames
from rag.answering.summaries import SummaryCache, sections
from rag.assistant import Assistant, QuestionError
from rag.cli import main
from rag.models import embedding_model_dir
from rag.settings import Settings
from rag.types import AbstainedBy, Answer, Citation, Sources

ANSWER_KEYS = {"question", "answer", "abstained", "abstained_by", "kind", "citations", "timings"}
CITATION_KEYS = {"n", "doc_id", "title", "source", "start", "end", "text", "score"}
TIMING_KEYS = {"retrieve_ms", "first_token_ms", "total_ms"}


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(index_dir=tmp_path_factory.mktemp("index"), default_corpus=SEEDS, generator_model="smollm2-135m")


@pytest.fixture(scope="module")
def assistant(tiny_settings: Settings) -> Assistant:
    assistant = Assistant(tiny_settings)
    report = assistant.index()
    assert len(report.sync.added) == 4 and not report.errors
    return assistant


@pytest.mark.parametrize("question", ["", "   \n\t "])
def test_empty_question_is_refused(assistant: Assistant, question: str) -> None:
    with pytest.raises(QuestionError, match="empty"):
        assistant.ask(question)


def test_overlong_question_is_refused(assistant: Assistant) -> None:
    with pytest.raises(QuestionError, match="limit is"):
        assistant.ask("why " * 1000)


def test_question_about_someone_the_documents_never_mention_abstains(assistant: Assistant) -> None:
    answer = assistant.ask("What did Macron announce?")
    assert answer.abstained
    assert answer.answer == "The documents don't mention Macron."
    assert answer.citations == []
    assert answer.abstained_by == "names missing"


def test_a_disabled_check_lets_the_question_through_to_the_next_step(assistant: Assistant) -> None:
    every = list(get_args(AbstainedBy))  # every named step, in the order AbstainedBy lists them
    assert [c.name for c in assistant.checks] == [n for n in every if n != "contradiction"]  # off by default
    without = Assistant(assistant.settings.model_copy(update={"disabled_checks": ["names missing"]}))
    assert [c.name for c in without.checks] == [n for n in every if n != "names missing"]
    answer = without.ask("What did Macron announce?")
    assert answer.abstained_by != "names missing"
    assert answer.answer != "The documents don't mention Macron."


def test_off_topic_question_abstains(assistant: Assistant) -> None:
    answer = assistant.ask("How long should sourdough bread proof before baking?")
    assert answer.abstained
    assert answer.answer.startswith("The documents don't")
    assert answer.abstained_by == "off topic"


def test_stream_yields_the_sources_then_text_then_one_final_answer(assistant: Assistant) -> None:
    events = list(assistant.ask_stream("What did LeCun propose in Paris?"))
    assert isinstance(events[0], Sources) and isinstance(events[-1], Answer)
    assert events[1:-1] and all(isinstance(e, str) for e in events[1:-1])
    final = events[-1]
    assert events[0].passages == final.passages  # what was announced is what the model read
    assert final.passages and final.passages[0].source.endswith("003_242d03d61eec7c62.txt")
    t = final.timings
    assert 0 < t.retrieve_ms <= t.first_token_ms <= t.total_ms


def test_answer_json_has_the_documented_shape(assistant: Assistant) -> None:
    data = json.loads(json.dumps(assistant.ask("Who is Meta's chief AI scientist?").to_dict()))
    assert set(data) == ANSWER_KEYS
    assert set(data["timings"]) == TIMING_KEYS
    for citation in data["citations"]:
        assert set(citation) >= CITATION_KEYS


def test_cancel_stops_generation_early_and_skips_the_checks(assistant: Assistant) -> None:
    import threading

    cancel = threading.Event()
    pieces, answers = [], []
    for event in assistant.ask_stream("Why does Meta open source its AI models?", cancel=cancel):
        if isinstance(event, str):
            pieces.append(event)
            cancel.set()
        elif isinstance(event, Answer):
            answers.append(event)
    assert 1 <= len(pieces) <= 3
    assert answers == []  # no citation check or answer check ran for an answer nobody waits for


def test_bad_files_are_reported_and_the_rest_indexed(tmp_path: Path, tiny_settings: Settings) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.md").write_text("# Lunch\n\nThe canteen serves soup on Fridays.\n")
    (corpus / "empty.txt").write_text("")
    (corpus / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assistant = Assistant(tiny_settings.model_copy(update={"index_dir": tmp_path / "index"}))
    report = assistant.index([corpus])
    assert [Path(s).name for s in report.sync.added] == ["good.md"]
    assert sorted(Path(e.path).name for e in report.errors) == ["empty.txt", "image.png"]
    assert [d.title for d in assistant.documents()] == ["Lunch"]


def _run_cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> int:
    monkeypatch.setenv("RAG_INDEX_DIR", str(settings.index_dir))
    monkeypatch.setenv("RAG_DEFAULT_CORPUS", str(settings.default_corpus))
    monkeypatch.setenv("RAG_GENERATOR_MODEL", settings.generator_model)
    return main(list(argv))


def test_cli_ask_json_prints_one_object_per_question(
    assistant: Assistant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run_cli(
        monkeypatch,
        assistant.settings,
        "ask",
        "--json",
        "What did LeCun propose in Paris?",
        "What did Macron announce?",
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) == ANSWER_KEYS
    assert first["question"] == "What did LeCun propose in Paris?"
    assert second["abstained"] is True


def test_cli_errors_go_to_stderr_with_nonzero_exit(
    assistant: Assistant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_cli(monkeypatch, assistant.settings, "ask", "   ") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "rag: error: the question is empty" in captured.err


def test_cli_docs_lists_the_seeds(
    assistant: Assistant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_cli(monkeypatch, assistant.settings, "docs") == 0
    out = capsys.readouterr().out
    assert out.count("seeds/") == 4
    assert "Mark Zuckerberg claims open-source" in out


def test_cli_refuses_an_index_built_with_another_embedding_model(
    assistant: Assistant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(embedding_model_dir("all-minilm-l6-v2")))
    assert _run_cli(monkeypatch, assistant.settings, "ask", "What did LeCun propose?") == 2
    assert "rag index --rebuild" in capsys.readouterr().err


def test_an_answer_is_refused_when_no_cited_document_mentions_a_name_in_the_question(assistant: Assistant) -> None:
    zuckerberg = next(d for d in assistant.documents() if d.source.endswith("002_4ca5f10113ede359.txt"))
    citation = Citation(1, zuckerberg.doc_id, zuckerberg.title, zuckerberg.source, 0, 9, zuckerberg.text[:9], 0.9, 0, 9)
    cited_names = CitedNames(assistant.store)
    assert cited_names.covers("What did Zuckerberg claim about open source?", [citation])
    assert not cited_names.covers("What did Zuckerberg propose in Paris?", [citation])


def test_a_collection_question_lists_every_document_from_the_index(assistant: Assistant) -> None:
    answer = assistant.ask("What documents do you have?")
    titles = [d.title for d in assistant.documents()]
    assert answer.kind == "collection" and not answer.abstained
    assert answer.answer.startswith("The collection holds 4 documents")
    assert all(title in answer.answer for title in titles)
    assert [c.title for c in answer.citations] == titles and [c.n for c in answer.citations] == [1, 2, 3, 4]
    assert all(c.text in assistant.store.document(c.doc_id).text for c in answer.citations)


def test_a_summary_is_written_once_per_document_and_kept(assistant: Assistant, tiny_settings: Settings) -> None:
    events = list(assistant.ask_stream("Summarize the four articles."))
    answer = events[-1]
    assert isinstance(answer, Answer) and answer.kind == "summary"
    assert isinstance(events[0], Sources) and len(events[0].passages) == 4  # each document whole
    assert events[0].describe() == "Summarising 4 documents"
    kept = json.loads((tiny_settings.index_dir / "summaries.json").read_text(encoding="utf-8"))
    assert set(kept) == {d.doc_id for d in assistant.documents()}
    for citation in answer.citations:  # every kept sentence cites the document it summarises
        assert citation.start == 0 and citation.text == assistant.store.document(citation.doc_id).text
    again = assistant.ask("Summarize the four articles.")
    assert again.answer == answer.answer and again.timings.total_ms < answer.timings.total_ms
    other_model = SummaryCache(tiny_settings.index_dir, "another-model", tiny_settings.summary_section_chars)
    assert all(other_model.get(doc_id) is None for doc_id in kept)  # another model writes its own


def test_a_summary_of_something_the_documents_lack_abstains(assistant: Assistant) -> None:
    answer = assistant.ask("Summarize the history of the Roman empire.")
    assert answer.kind == "summary" and answer.abstained and not answer.citations


@pytest.mark.parametrize("request_words", ["Summarize what", "Give an overview of what"])
def test_a_summary_about_someone_no_document_names_abstains(assistant: Assistant, request_words: str) -> None:
    """The articles match "open-source AI" by title, but none names the person: refused before any writing."""
    answer = assistant.ask(f"{request_words} Satya Nadella said about open-source AI.")
    assert answer.kind == "summary" and answer.abstained and answer.abstained_by == "names missing", answer
    assert "Satya" in answer.answer and not answer.citations
    named = assistant.ask("Summarize what Zuckerberg said about open-source AI.")
    assert named.kind == "summary" and named.abstained_by != "names missing"


def _sources(assistant: Assistant, question: str) -> list:
    events = assistant.ask_stream(question)
    first = next(events)
    events.close()
    assert isinstance(first, Sources), first
    return first.passages


def test_a_comparison_reads_each_side_from_its_own_search(assistant: Assistant) -> None:
    passages = _sources(assistant, "Compare LeCun's and Altman's views on regulation.")
    assert any("LeCun" in p.chunk.text for p in passages) and any("Altman" in p.chunk.text for p in passages)


def test_a_list_question_reads_several_documents_at_most_two_passages_each(assistant: Assistant) -> None:
    passages = _sources(assistant, "Which people are reported on in the articles?")
    per_document = [p.chunk.doc_id for p in passages]
    assert len(set(per_document)) >= 3 and max(per_document.count(d) for d in per_document) <= 2


def test_a_document_longer_than_a_section_is_summarised_from_its_section_summaries(
    assistant: Assistant, tmp_path: Path
) -> None:
    document = max(assistant.documents(), key=lambda d: len(d.text))
    cache = SummaryCache(tmp_path, "smollm2-135m", section_chars=1500)
    assert len(sections(document.text, 1500)) > 2  # so the map step runs
    summary = "".join(cache.summarize(document, assistant.generator)).strip()
    assert summary and cache.get(document.doc_id) == summary
