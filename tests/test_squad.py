"""The SQuAD runner on a tiny SQuAD-shaped file, with the tiny SmolLM2 generator so it stays fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT

from rag.answering.prompts import ABSTAIN_TEXT, SYSTEM_PROMPTS, build_prompt
from rag.cli import main
from rag.evaluation.squad import (
    SquadError,
    article_ranges,
    load_squad,
    paragraph_documents,
    parse_articles,
    run_squad,
    sample_questions,
    squad_settings,
)
from rag.settings import Settings
from rag.types import Turn

TINY = ROOT / "tests" / "data" / "squad-tiny.json"
STABLE_KEYS = {
    "n",
    "recall_at_1",
    "recall_at_5",
    "recall_at_10",
    "mrr_at_10",
    "em",
    "f1",
    "abstain_precision",
    "abstain_recall",
}


@pytest.mark.parametrize(
    ("spec", "articles"),
    [("1-8", tuple(range(1, 9))), ("9-16", tuple(range(9, 17))), ("1,3,5-7", (1, 3, 5, 6, 7)), (" 2 , 2-3", (2, 3))],
)
def test_parse_articles(spec: str, articles: tuple[int, ...]) -> None:
    assert parse_articles(spec, 16) == articles
    assert parse_articles(article_ranges(articles), 16) == articles


def test_no_article_selection_means_all() -> None:
    assert parse_articles(None, 3) == (1, 2, 3)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("0-3", "out of range"), ("15-17", r"has 16 articles \(1-16\)"), ("8-1", "backwards"), ("one", "like 1-8")],
)
def test_bad_article_selections_are_refused(spec: str, message: str) -> None:
    with pytest.raises(SquadError, match=message):
        parse_articles(spec, 16)


def test_load_keeps_the_chosen_articles() -> None:
    squad = load_squad(TINY, "2")
    assert squad.articles == (2,)
    assert [p.source for p in squad.paragraphs] == ["squad/02/000", "squad/02/001"]
    assert {p.title for p in squad.paragraphs} == {"Honey bee"}
    assert len(squad.questions) == 4
    assert [q.qid for q in squad.answerable] == ["q6", "q7", "q8"]
    assert squad.questions[-1].answers == ()  # unanswerable
    assert squad.questions[0].paragraph == "squad/02/000"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ('{"version": "v2.0", "data": []}', 'no "data" list'),
        ('{"version": "1.1", "data": [{"title": "A", "paragraphs": []}]}', "not SQuAD 2.0"),
        ('{"version": "v2.0", "data": [{"title": "A", "paragraphs": [{"context": "x"}]}]}', "article 1 is not"),
    ],
)
def test_unusable_files_are_refused_with_a_reason(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "squad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SquadError, match=message):
        load_squad(path)


def test_out_of_range_articles_name_the_file_size() -> None:
    with pytest.raises(SquadError, match=r"the file has 2 articles \(1-2\)"):
        load_squad(TINY, "1-8")


def test_sample_is_fixed_by_the_seed_and_in_file_order() -> None:
    squad = load_squad(TINY)
    first = sample_questions(squad, 4, seed=0)
    assert first == sample_questions(squad, 4, seed=0)
    assert [q.qid for q in first] == sorted((q.qid for q in first), key=lambda qid: int(qid[1:]))
    assert len({tuple(q.qid for q in sample_questions(squad, 4, seed=s)) for s in range(5)}) > 1
    assert sample_questions(squad, None, seed=0) == list(squad.questions)
    assert sample_questions(squad, 100, seed=0) == list(squad.questions)


def test_squad_gets_its_own_index_per_file_articles_and_chunking(settings: Settings) -> None:
    squad = load_squad(TINY)
    own = squad_settings(settings, squad, "short")
    assert own.index_dir.parent == settings.index_dir and own.index_dir.name.startswith("squad-")
    assert own.answer_style == "short"
    assert squad_settings(settings, squad, "short").index_dir == own.index_dir
    assert squad_settings(settings, load_squad(TINY, "1"), "short").index_dir != own.index_dir
    smaller = settings.model_copy(update={"chunk_size": 300})
    assert squad_settings(smaller, squad, "short").index_dir != own.index_dir
    documents = paragraph_documents(squad)
    assert [d.source for d in documents] == [p.source for p in squad.paragraphs]
    assert documents[0].title == "Bell Rock Lighthouse"


def test_short_style_asks_for_the_exact_phrase_with_its_marker() -> None:
    messages = build_prompt("Who built it?", [], [], "short").messages
    assert messages[0]["content"] == SYSTEM_PROMPTS["short"]
    assert "exact phrase" in SYSTEM_PROMPTS["short"] and "[2]" in SYSTEM_PROMPTS["short"]
    assert build_prompt("Who built it?", [], []).messages[0]["content"] == SYSTEM_PROMPTS["sentence"]


def test_worked_examples_come_first_and_are_the_same_for_every_question() -> None:
    history = [Turn("Who built it?", "Robert Stevenson [1].")]
    first_prompt = build_prompt("Who built it?", [], [], "short")
    later_prompt = build_prompt("When was it lit?", [], history, "short")
    first, later, fixed = first_prompt.messages, later_prompt.messages, first_prompt.fixed
    assert later_prompt.fixed == fixed > 1 and first[:fixed] == later[:fixed]
    assert [m["role"] for m in first[1:fixed]] == ["user", "assistant"] * ((fixed - 1) // 2)
    assert any(m["content"] == ABSTAIN_TEXT for m in first[1:fixed])  # they show abstaining too
    assert later[fixed:] == [
        {"role": "user", "content": "Who built it?"},
        {"role": "assistant", "content": "Robert Stevenson."},
        later[-1],
    ]


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(index_dir=tmp_path_factory.mktemp("index"), generator_model="smollm2-135m")


def test_run_scores_retrieval_on_every_answerable_question_and_answers_the_sample(tiny_settings: Settings) -> None:
    squad = load_squad(TINY)
    report = run_squad(squad, tiny_settings, limit=4, seed=0)
    assert report.retrieval.n == 6
    assert report.retrieval.recall_at_10 == 1.0  # four paragraphs: the gold one is always ranked
    assert report.retrieval.recall_at_1 >= 0.8
    assert 0 < report.retrieval.mrr_at_10 <= 1
    assert report.answers.n == 4
    assert report.answers.answerable + report.answers.unanswerable == 4
    assert report.settings.answer_style == "short"
    data = json.loads(json.dumps(report.to_json()))
    assert set(data) >= STABLE_KEYS
    assert data["n"] == 4
    assert data["config"]["articles"] == "1-2"
    assert [a["qid"] for a in data["answers"]] == [q.qid for q in sample_questions(squad, 4, seed=0)]
    for key in ("em", "f1", "abstain_precision", "abstain_recall"):
        assert data[key] is None or 0 <= data[key] <= 1
    table = report.table()
    assert "recall@5" in table and "abstain recall" in table


def test_retrieval_only_run_reuses_the_index(tiny_settings: Settings) -> None:
    squad = load_squad(TINY, "2")
    first = run_squad(squad, tiny_settings, limit=0)
    again = run_squad(squad, tiny_settings, limit=0)
    assert first.embedded_chunks > 0
    assert again.embedded_chunks == 0
    assert (again.retrieval.recall_at_1, again.retrieval.mrr_at_10) == (
        first.retrieval.recall_at_1,
        first.retrieval.mrr_at_10,
    )
    assert again.answers.n == 0 and again.answers.em is None
    assert "Answers" not in again.table()
    assert again.to_json()["n"] == 0


def _run_cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> int:
    monkeypatch.setenv("RAG_INDEX_DIR", str(settings.index_dir))
    monkeypatch.setenv("RAG_GENERATOR_MODEL", settings.generator_model)
    return main(list(argv))


def test_cli_eval_squad_prints_a_table_and_writes_json(
    tiny_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results" / "squad.json"
    code = _run_cli(
        monkeypatch, tiny_settings, "eval", "squad", str(TINY), "--articles", "1", "--limit", "2", "--json", str(out)
    )
    assert code == 0
    assert "MRR@10" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert set(data) >= STABLE_KEYS
    assert data["n"] == 2 and data["counts"]["retrieval_questions"] == 3


def test_cli_eval_without_a_suite_reads_a_question_set_and_says_what_is_wrong_with_it(
    tiny_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_cli(monkeypatch, tiny_settings, "eval", "--questions", str(tmp_path / "none.json")) == 2
    assert "no such question file" in capsys.readouterr().err


def test_cli_eval_squad_errors_are_one_line(
    tiny_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_cli(monkeypatch, tiny_settings, "eval", "squad", str(tmp_path / "nope.json")) == 2
    assert "rag: error: no such file" in capsys.readouterr().err
    assert _run_cli(monkeypatch, tiny_settings, "eval", "squad", str(TINY), "--articles", "3") == 2
    assert "out of range" in capsys.readouterr().err
