"""The eval's question set and scoring: facts, citations, summaries, the gate, the report."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, SEEDS

from rag.evaluation.question_set import (
    CATEGORIES,
    CitationCheck,
    EvalQuestion,
    EvalReport,
    EvalSetError,
    Gate,
    QuestionResult,
    abstentions_by_step,
    answer_polarity,
    check_citations,
    contains_phrase,
    describe_abstentions,
    facts_present,
    is_correct,
    load_gate,
    load_question_set,
    load_quick,
    per_category,
    summarize,
    where_lost,
)
from rag.evaluation.report import render_html
from rag.types import Answer, Citation

SEED_SET = ROOT / "eval" / "seeds.json"
FRESH_SET = ROOT / "eval" / "fresh.json"  # held out: checked for form here, never tuned on
MANUAL_SET = ROOT / "eval" / "manual.json"  # held out, over the PostgreSQL manual (postgresql-doc-15)


@pytest.fixture(scope="module")
def seed_set():
    return load_question_set(SEED_SET)


@pytest.fixture(scope="module", params=[SEED_SET, FRESH_SET, MANUAL_SET], ids=["seeds", "fresh", "manual"])
def any_set(request):
    return load_question_set(request.param)


def test_seed_set_has_every_category_and_enough_traps(seed_set) -> None:
    categories = Counter(q.category for q in seed_set.questions)
    assert len(seed_set.questions) >= 40
    assert all(categories[c] >= 3 for c in ("single_fact", "paraphrase", "multi_doc", "follow_up"))
    assert categories["unanswerable"] >= 10
    traps = Counter(q.trap for q in seed_set.questions if not q.answerable)
    assert traps["wrong_person"] >= 2 and traps["missing_detail"] >= 2
    assert "What did LeCun propose in Paris?" in {q.question for q in seed_set.questions}
    assert seed_set.corpus == SEEDS.resolve()


def test_the_held_out_set_has_the_same_categories_and_yes_no_both_ways(seed_set) -> None:
    fresh = load_question_set(FRESH_SET)
    assert len(fresh.questions) >= 40 and fresh.corpus == seed_set.corpus
    # The held-out set was frozen before issue 17 added summaries, comparisons, lists and collection questions.
    later_kinds = {"summary", "comparison", "list", "collection"}
    assert {q.category for q in fresh.questions} == {q.category for q in seed_set.questions} - later_kinds
    assert not {q.question for q in fresh.questions} & {q.question for q in seed_set.questions}
    for question_set in (seed_set, fresh):
        polarities = Counter(q.polarity for q in question_set.questions if q.category == "yes_no")
        assert polarities["yes"] >= 3 and polarities["no"] >= 3, question_set.name


def test_the_manual_set_has_every_fact_kind_traps_and_yes_no_both_ways() -> None:
    manual = load_question_set(MANUAL_SET)
    categories = Counter(q.category for q in manual.questions)
    assert categories["unanswerable"] >= 8 and sum(q.answerable for q in manual.questions) >= 30
    assert {"single_fact", "paraphrase", "multi_doc", "follow_up", "yes_no"} <= set(categories)
    polarities = Counter(q.polarity for q in manual.questions if q.category == "yes_no")
    assert polarities["yes"] >= 3 and polarities["no"] >= 3


def test_gold_documents_exist_and_multi_doc_questions_need_two(any_set) -> None:
    if not any_set.corpus.is_dir():
        pytest.skip(f"{any_set.corpus} is not installed (scripts/install.sh installs it)")
    files = {p.name for p in any_set.corpus.iterdir()}
    for q in any_set.questions:
        assert set(q.gold_docs) <= files, q.id
        if q.category == "multi_doc":
            assert len(q.gold_docs) >= 2, q.id


def test_every_reference_answer_is_correct_and_no_restated_question_is(any_set) -> None:
    for q in any_set.questions:
        if q.answerable:
            assert is_correct(q, q.reference), q.id
            assert not is_correct(q, q.question), q.id
            assert not is_correct(q, f"{q.question} {q.question}"), q.id


@pytest.mark.parametrize("path", [SEED_SET, FRESH_SET], ids=["seeds", "fresh"])
def test_evidence_quotes_are_in_their_gold_documents(path: Path) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    for item in raw["questions"]:
        texts = [" ".join((SEEDS / d).read_text(encoding="utf-8").split()) for d in item["gold_docs"]]
        for quote in filter(None, item["evidence"].split(" || ")):
            assert any(" ".join(quote.split()) in t for t in texts), item["id"]


@pytest.mark.parametrize(
    ("text", "phrase", "expected"),
    [
        ("LeCun proposed training them collaboratively", "trained collaboratively", True),  # stems
        ("a $25 billion deal", "25 billion", True),
        ("It is open-source software", "open source", True),
        ("the models are open, with source available", "open source", True),  # within a few words
        ("open the door to a new world where the source", "open source", False),  # too far apart
        ("source open", "open source", False),  # order matters
        ("Meta went all-in", "All-In", True),  # stopwords count in facts
        ("", "Paris", False),
    ],
)
def test_contains_phrase(text: str, phrase: str, expected: bool) -> None:
    assert contains_phrase(text, phrase) is expected


def test_every_fact_must_be_present_but_any_alternative_will_do() -> None:
    facts = [["Google", "Alphabet"], ["Microsoft"]]
    assert facts_present("Alphabet and Microsoft", facts)
    assert not facts_present("Google alone", facts)
    assert not facts_present("anything", [])


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Yes, Meta publishes its research [1].", "yes"),
        ("No. Meta no longer owns PyTorch [1].", "no"),
        ("Yes, Meta still owns PyTorch [1]. No, it passed it on to a foundation [1].", "both"),
        ("Meta no longer owns PyTorch [1].", None),  # a yes/no answer must say which
        ("Nobody knows.", None),  # "no" is a word, not a prefix
        ("", None),
    ],
)
def test_answer_polarity_is_the_opening_word_and_both_when_a_later_sentence_says_the_other(
    answer: str, expected: str | None
) -> None:
    assert answer_polarity(answer) == expected


def test_a_yes_no_answer_is_correct_with_its_polarity_and_its_facts() -> None:
    from rag.evaluation.question_set import EvalQuestion

    question = EvalQuestion("y", "yes_no", "Does Meta own PyTorch?", (("foundation",),), ("d.txt",), polarity="no")
    assert is_correct(question, "No, Meta passed it on to a foundation.")
    assert not is_correct(question, "No, it does not.")  # the reason is a required fact here
    assert not is_correct(question, "Yes, Meta passed it on to a foundation.")
    assert not is_correct(question, "No, it went to a foundation. Yes, Meta owns it.")


def _citation(n: int, source: str, text: str) -> Citation:
    return Citation(n, "d", "t", source, 0, len(text), text, 0.9, 0, len(text))


def test_citation_precision_needs_a_gold_document_that_supports_the_sentence() -> None:
    answer = Answer(
        "q",
        "LeCun proposed collaborative training across data centers [1]. Zuckerberg praised PyTorch [2].",
        [
            _citation(1, "seeds/gold.txt", "LeCun proposed collaborative training with data centers worldwide."),
            _citation(2, "seeds/gold.txt", "The weather in Paris was mild."),
        ],
    )
    checks = check_citations(answer, ["gold.txt"])
    assert [(c.n, c.from_gold, c.supports, c.precise) for c in checks] == [
        (1, True, True, True),
        (2, True, False, False),
    ]
    assert [c.precise for c in check_citations(answer, ["other.txt"])] == [False, False]


def _result(category: str, answerable: bool, correct: bool, abstained: bool, total_ms: float) -> QuestionResult:
    return QuestionResult(
        id=f"{category}-{total_ms}",
        category=category,
        question="q",
        answer="a",
        abstained_by="model" if abstained else None,
        answerable=answerable,
        correct=correct,
        f1=0.5 if answerable else None,
        recall=1.0 if answerable else None,
        reciprocal_rank=0.5 if answerable else None,
        citations=[],
        citation_recall=1.0 if answerable and not abstained else None,
        retrieved=["a.txt"],
        first_token_ms=None if abstained else total_ms / 2,
        total_ms=total_ms,
        decode_tokens_per_s=None if abstained else 5.0,
    )


def test_summary_counts_yes_no_polarity_and_answers_that_say_both() -> None:
    results = []
    for said in ("no", "no", "both", None):  # the last abstained
        result = _result("yes_no", True, said == "no", said is None, 1000)
        result.polarity, result.expected_polarity = said, "no"
        results.append(result)
    metrics = summarize(results, 4)
    assert metrics["yes_no"] == 4 and metrics["yes_no_right_polarity"] == 0.5
    assert metrics["yes_no_both"] == 1 and metrics["yes_no_opposite"] == 1  # an abstention says nothing


def test_summary_counts_abstentions_and_false_abstentions_separately() -> None:
    results = [
        _result("single_fact", True, True, False, 1000),
        _result("single_fact", True, False, True, 2000),  # a false abstention
        _result("unanswerable", False, False, True, 100),
        _result("unanswerable", False, False, False, 3000),  # answered what it should not
    ]
    metrics = summarize(results, top_k=4)
    assert metrics["correctness"] == 0.5 and metrics["false_abstention"] == 0.5
    assert metrics["abstention_recall"] == 0.5 and metrics["recall_at_4"] == 1.0
    assert metrics["first_token_ms_p50"] == 1000  # of the two that generated: 500 and 1500
    assert per_category(results) == {
        "single_fact": {"n": 2, "accuracy": 0.5, "coverage": 1.0},  # of the one answered
        "unanswerable": {"n": 2, "accuracy": 0.5},
    }


def test_per_category_coverage_counts_answers_citing_every_gold_document() -> None:
    full, half = _result("summary", True, True, False, 1000), _result("summary", True, True, False, 2000)
    half.citation_recall = 0.5  # cited one of its two gold documents
    full.citations = [CitationCheck(1, "a.txt", "s", True, True), CitationCheck(2, "b.txt", "s", True, False)]
    row = per_category([full, half])["summary"]
    assert row["coverage"] == 0.5 and row["citation_precision"] == 0.5


def test_abstentions_are_counted_per_step_as_right_or_lost() -> None:
    outcomes = [("citations", True), ("citations", False), ("off topic", False), (None, True), (None, False)]
    table = abstentions_by_step(outcomes)
    assert table == {"citations": {"right": 1, "lost": 1}, "off topic": {"right": 1, "lost": 0}}
    assert describe_abstentions(table) == "citations 1 right / 1 lost, off topic 1 right / 0 lost"
    assert describe_abstentions({}) == "none"


def test_gate_reports_each_metric_below_its_floor_or_above_its_ceiling() -> None:
    gate = Gate(("fact-01",), {"correctness": 0.8, "citation_precision": 0.9}, {"false_abstention": 0.1})
    assert gate.failures({"correctness": 0.9, "citation_precision": 0.95, "false_abstention": 0.0}) == []
    failures = gate.failures({"correctness": 0.5, "citation_precision": None, "false_abstention": 0.2})
    assert len(failures) == 3 and "correctness = 0.5 is below 0.8" in failures


def test_the_shipped_gate_names_real_questions_of_every_category(seed_set) -> None:
    gate = load_gate(ROOT / "eval" / "gate.toml")
    subset = seed_set.subset(gate.questions)
    assert {q.category for q in subset.questions} == set(CATEGORIES)
    for kind in ("yes_no", "summary", "comparison", "list", "collection"):  # issues 16 and 17: two of each
        assert sum(q.category == kind for q in subset.questions) >= 2, kind
    assert gate.minimums["correctness"] >= 0.5 and gate.maximums["false_abstention"] <= 0.25


def test_the_quick_eval_samples_every_set_kind_trap_and_polarity_in_about_forty_questions() -> None:
    """eval/quick.toml (drawn once by scripts/quick_sample.py, frozen) names real questions; in each set every
    category, both yes/no polarities and a trap are asked."""
    quick = load_quick(ROOT / "eval" / "quick.toml")
    assert set(quick) == {"seeds", "fresh", "manual"}
    assert 35 <= sum(len(ids) for ids in quick.values()) <= 45
    for path in (SEED_SET, FRESH_SET, MANUAL_SET):
        question_set = load_question_set(path)
        asked = question_set.subset(quick[question_set.name]).questions
        assert {q.category for q in asked} == {q.category for q in question_set.questions}, path
        assert {q.polarity for q in asked if q.polarity} == {"yes", "no"}, path
        assert any(q.trap for q in asked), path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"questions": []}', "no questions"),
        ('{"questions": [{"id": "a"}]}', "missing or malformed field"),
        (
            '{"questions": [{"id": "a", "category": "vibes", "question": "q", "facts": [], "gold_docs": []}]}',
            "category must be one of",
        ),
        (
            '{"questions": [{"id": "a", "category": "single_fact", "question": "Who leads Meta?",'
            ' "facts": [["Meta"]], "gold_docs": ["x.txt"]}]}',
            "already states",
        ),
        (
            '{"questions": [{"id": "a", "category": "yes_no", "question": "Is it?", "facts": [], "gold_docs": ["x"]}]}',
            "need polarity yes or no",
        ),
        (
            '{"questions": [{"id": "a", "category": "single_fact", "question": "Who?", "facts": [["x"]],'
            ' "gold_docs": ["x"], "polarity": "yes"}]}',
            "need polarity yes or no",
        ),
    ],
)
def test_malformed_question_sets_are_refused_with_where(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "set.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EvalSetError, match=message):
        load_question_set(path)


def test_html_report_escapes_answers_and_draws_both_plots() -> None:
    result = _result("single_fact", True, True, False, 1200)
    result.answer = "<script>alert(1)</script>"
    report = EvalReport("seeds", {"top_k": 4}, [result], summarize([result], 4), per_category([result]), 3.0)
    page = render_html(report)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("<svg") == 2


def test_cli_runs_a_question_set_and_its_gate_end_to_end_with_the_tiny_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole command: its own index, every answer, the table, JSON and HTML, and the gate's exit code."""
    from rag.cli import main

    questions = json.loads(SEED_SET.read_text(encoding="utf-8"))
    questions["questions"] = [q for q in questions["questions"] if q["id"] in ("fact-01", "unans-09")]
    (tmp_path / "eval").mkdir()
    (tmp_path / "seeds").symlink_to(SEEDS)
    question_file = tmp_path / "eval" / "two.json"
    question_file.write_text(json.dumps(questions), encoding="utf-8")
    gate = tmp_path / "eval" / "gate.toml"
    gate.write_text('questions = ["unans-09"]\n[minimum]\nabstention_recall = 1.0\n', encoding="utf-8")
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_GENERATOR_MODEL", "smollm2-135m")
    out = tmp_path / "out"

    args = ["eval", "--questions", str(question_file), "--json", str(out / "r.json"), "--html", str(out / "r.html")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "answer correctness" in printed and "abstention recall" in printed
    report = json.loads((out / "r.json").read_text(encoding="utf-8"))
    assert report["metrics"]["n"] == 2 and [q["id"] for q in report["questions"]] == ["fact-01", "unans-09"]
    assert report["questions"][1]["abstained"]  # the capital of Australia is not in the seeds
    assert (out / "r.html").read_text(encoding="utf-8").count("<svg") == 2
    assert (tmp_path / "index" / "eval-seeds").is_dir()  # its own index, not the user's

    assert main([*args, "--gate", str(gate)]) == 0
    gate.write_text('questions = ["fact-01"]\n[maximum]\nfalse_abstention = -1\n', encoding="utf-8")
    assert main([*args, "--gate", str(gate)]) == 1
    assert "eval gate failed: false_abstention" in capsys.readouterr().err


def test_each_lost_outcome_is_placed_where_it_went_wrong_first() -> None:
    """From retrieval to citation: the first place a question's outcome went wrong, or None when it is right."""
    from rag.types import Chunk, Passage

    def given(*files: str) -> list[Passage]:
        return [
            Passage(Chunk(f"c{i}", f"d{i}", 0, "text", 0, 4), "t", f"seeds/{f}", 1.0, 0.5) for i, f in enumerate(files)
        ]

    question = EvalQuestion("f", "single_fact", "Who?", (("LeCun",),), ("gold.txt",))
    both = EvalQuestion("m", "multi_doc", "Who and what?", (("LeCun",),), ("gold.txt", "other.txt"))
    trap = EvalQuestion("t", "unanswerable", "Who?", (), (), trap="absent")
    refused = "The documents don't say."

    def lost(
        q: EvalQuestion, passages: list[Passage], draft: str, step: str | None, correct: bool = False
    ) -> str | None:
        answer = Answer("q", refused if step else draft, passages=passages, abstained_by=step)  # type: ignore[arg-type]
        return where_lost(q, answer, draft, correct, [])

    assert lost(question, given("gold.txt"), "LeCun [1].", None, correct=True) is None
    assert lost(question, given("x.txt"), "Nobody [1].", None) == "gold not retrieved"
    found = given("x.txt", "y.txt", "gold.txt")  # the search's candidates held it; the model was not given it
    answer = Answer("q", "Nobody [1].", passages=given("x.txt"))
    assert where_lost(question, answer, "Nobody [1].", False, [], found) == "gold not given"
    assert lost(both, given("gold.txt"), "LeCun [1].", None) == "gold partly given"
    assert lost(question, given("gold.txt"), "", "off topic") == "refused before the model"
    assert lost(question, given("gold.txt"), "Zuckerberg [1].", None) == "draft wrong"
    assert lost(question, given("gold.txt"), refused, "model") == "draft wrong"
    assert lost(question, given("gold.txt"), "LeCun did [1].", "citations") == "draft right, refused"
    assert lost(trap, given("x.txt"), "Someone [1].", None) == "trap answered"
    assert lost(trap, given("x.txt"), refused, "model") is None
    imprecise = [CitationCheck(1, "seeds/x.txt", "LeCun", from_gold=False, supports=True)]
    answer = Answer("q", "LeCun [1].", passages=given("gold.txt"))
    assert where_lost(question, answer, "LeCun [1].", True, imprecise) == "cited wrong sentence"
