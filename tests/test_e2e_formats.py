"""End to end over everyday files of every format read (a deck, sheets, CSV and TSV, mails, minutes, an e-book,
RTF, photos and scans) with the real default generator: each one's fact is answered, cited by file and place."""

from __future__ import annotations

import pytest

from rag.assistant import Assistant
from rag.evaluation.office_files import WRITERS, OfficeFact, write_office_set
from rag.settings import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> tuple[Assistant, list[OfficeFact]]:
    folder = tmp_path_factory.mktemp("office")
    facts = write_office_set(folder)
    settings = Settings(index_dir=tmp_path_factory.mktemp("index"), default_corpus=folder)
    assert settings.generator_model == "qwen2.5-coder-1.5b"
    assistant = Assistant(settings)
    report = assistant.index()
    assert not report.errors, report.errors
    assistant.warm_up()
    return assistant, facts


@pytest.mark.parametrize("name", list(WRITERS))
def test_each_file_answers_its_fact_citing_file_and_place(
    office: tuple[Assistant, list[OfficeFact]], name: str
) -> None:
    assistant, facts = office
    [fact] = [f for f in facts if f.file == name]
    answer = assistant.ask(fact.question)
    assert not answer.abstained, (fact, answer.answer)
    assert fact.answer.lower() in " ".join(answer.answer.split()).lower(), (fact, answer.answer)
    cited = [c for c in answer.citations if c.source.endswith(fact.file)]
    assert cited, (fact, answer.citations)
    if fact.place:
        assert fact.place in {c.place for c in cited}, (fact, [(c.source, c.place) for c in answer.citations])
