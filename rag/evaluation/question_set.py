"""The seed question set: load it, run every question through the real `Assistant`, and score it.

Scoring is lexical and deterministic, so a change to the assistant, not to a judge, moves the numbers:
- correct: every required fact of the question appears in the answer (one of its alternatives, as a
  run of word stems in order), which a paraphrase can satisfy and a restated question cannot;
- a citation is precise when its passage comes from a gold document and contains at least half of the
  content words of the sentence it is attached to;
- citation recall: the share of a question's gold documents that the answer cites;
- a yes/no question is right when the answer opens with the gold polarity ("Yes" or "No"), no later
  sentence opens with the other one, and its facts (if any) appear.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rag.answering.prompts import strip_markers
from rag.assistant import Assistant, IndexReport
from rag.evaluation.metrics import percentile, recall_at_k, reciprocal_rank, token_f1
from rag.ingestion.chunking import split_sentences
from rag.lexical import content_stems, english_stemmer
from rag.settings import Settings
from rag.store.base import IndexMismatchError
from rag.types import AbstainedBy, Answer, Document, Passage, Turn

CATEGORIES = (
    "single_fact",
    "paraphrase",
    "multi_doc",
    "follow_up",
    "yes_no",
    "summary",
    "comparison",
    "list",
    "collection",
    "unanswerable",
)
POLARITIES = ("yes", "no")
_OPENING_WORD = re.compile(r"\W*([a-z]+)")
_TOKEN = re.compile(r"[a-z0-9]+")
_CITE = re.compile(r"\[(\d+)\]")
FACT_SLACK = 3  # extra words allowed between the words of one fact alternative
SUPPORT_OVERLAP = 0.5  # share of a sentence's content words its cited passage must contain


class EvalSetError(ValueError):
    """The question file is missing or malformed; the message says where."""


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    category: str
    question: str
    facts: tuple[tuple[str, ...], ...]
    gold_docs: tuple[str, ...]
    reference: str = ""
    follows: str | None = None
    trap: str | None = None
    polarity: str | None = None  # "yes" or "no" for an answerable yes_no question

    @property
    def answerable(self) -> bool:
        return bool(self.gold_docs)


@dataclass(frozen=True)
class QuestionSet:
    name: str
    corpus: Path
    questions: tuple[EvalQuestion, ...]

    def subset(self, ids: Iterable[str]) -> QuestionSet:
        """The named questions, plus the first question of any follow-up among them."""
        wanted = set(ids)
        unknown = wanted - {q.id for q in self.questions}
        if unknown:
            raise EvalSetError(f"no questions with ids {', '.join(sorted(unknown))} in {self.name}")
        wanted |= {q.follows for q in self.questions if q.id in wanted and q.follows}
        return QuestionSet(self.name, self.corpus, tuple(q for q in self.questions if q.id in wanted))


def load_question_set(path: Path) -> QuestionSet:
    """Read and check a question file; `corpus` in it is relative to the file's folder's parent (the repo)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalSetError(f"{path}: no such question file") from None
    except json.JSONDecodeError as exc:
        raise EvalSetError(f"{path}: not valid JSON ({exc})") from None
    questions: list[EvalQuestion] = []
    seen: set[str] = set()
    for i, item in enumerate(raw.get("questions", [])):
        where = f"{path}: question {i + 1} ({item.get('id', '?')})"
        try:
            question = EvalQuestion(
                id=item["id"],
                category=item["category"],
                question=item["question"],
                facts=tuple(tuple(alternatives) for alternatives in item["facts"]),
                gold_docs=tuple(item["gold_docs"]),
                reference=item.get("reference", ""),
                follows=item.get("follows"),
                trap=item.get("trap"),
                polarity=item.get("polarity"),
            )
        except (KeyError, TypeError) as exc:
            raise EvalSetError(f"{where}: missing or malformed field {exc}") from None
        if question.category not in CATEGORIES:
            raise EvalSetError(f"{where}: category must be one of {', '.join(CATEGORIES)}")
        if question.id in seen:
            raise EvalSetError(f"{where}: duplicate id")
        if question.follows and question.follows not in seen:
            raise EvalSetError(f"{where}: follows {question.follows}, which must come earlier")
        yes_no = question.category == "yes_no" and question.answerable
        if yes_no != (question.polarity is not None) or question.polarity not in (None, *POLARITIES):
            raise EvalSetError(f"{where}: answerable yes_no questions, and only they, need polarity yes or no")
        if question.answerable != bool(question.facts or yes_no):
            raise EvalSetError(f"{where}: answerable questions need facts and gold docs; others neither")
        for alternatives in question.facts:
            if any(contains_phrase(question.question, a) for a in alternatives):
                raise EvalSetError(f"{where}: a fact the question already states cannot show an answer is right")
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise EvalSetError(f"{path}: no questions")
    corpus = (path.resolve().parent.parent / raw.get("corpus", "seeds")).resolve()
    return QuestionSet(raw.get("name", path.stem), corpus, tuple(questions))


def _stems(text: str) -> list[str]:
    return english_stemmer().stemWords(_TOKEN.findall(text.lower()))


def contains_phrase(text: str, phrase: str) -> bool:
    """The phrase's word stems occur in `text` in order, within a few words of each other."""
    wanted = _stems(phrase)
    if not wanted:
        return False
    have = _stems(text)
    window = len(wanted) + FACT_SLACK
    for start, stem in enumerate(have):
        if stem != wanted[0]:
            continue
        position, found = start, 1
        while found < len(wanted):
            try:
                position = have.index(wanted[found], position + 1, start + window)
            except ValueError:
                break
            found += 1
        if found == len(wanted):
            return True
    return False


def facts_present(answer: str, facts: Sequence[Sequence[str]]) -> bool:
    return bool(facts) and all(any(contains_phrase(answer, a) for a in alternatives) for alternatives in facts)


def answer_polarity(answer: str) -> str | None:
    """ "yes" or "no" when the answer opens with that word, "both" when a later sentence opens with the
    other one (the answer says yes and no at once), None when it opens with neither."""
    openings = []
    for start, end in split_sentences(answer):
        word = _OPENING_WORD.match(answer[start:end].lower())
        openings.append(word.group(1) if word else "")
    if not openings or openings[0] not in POLARITIES:
        return None
    other = "no" if openings[0] == "yes" else "yes"
    return "both" if other in openings[1:] else openings[0]


def is_correct(question: EvalQuestion, answer: str) -> bool:
    if question.polarity is None:
        return facts_present(answer, question.facts)
    facts_ok = not question.facts or facts_present(answer, question.facts)
    return answer_polarity(answer) == question.polarity and facts_ok


def _file_name(source: str) -> str:
    return Path(source).name


@dataclass
class CitationCheck:
    n: int
    source: str
    sentence: str
    from_gold: bool
    supports: bool

    @property
    def precise(self) -> bool:
        return self.from_gold and self.supports


@dataclass
class QuestionResult:
    id: str
    category: str
    question: str
    answer: str
    answerable: bool
    correct: bool
    f1: float | None
    recall: float | None
    reciprocal_rank: float | None
    citations: list[CitationCheck]
    citation_recall: float | None
    retrieved: list[str]
    first_token_ms: float | None
    total_ms: float
    decode_tokens_per_s: float | None
    draft: str = ""
    trap: str | None = None
    abstained_by: AbstainedBy | None = None
    polarity: str | None = None  # what a yes/no answer said: "yes", "no", "both" or None
    expected_polarity: str | None = None
    lost: str | None = None  # where a wrong outcome went wrong (`LOSSES`); None when it came out right

    @property
    def abstained(self) -> bool:
        return self.abstained_by is not None

    @property
    def verdict(self) -> str:
        if not self.answerable:
            return "abstained (right)" if self.abstained else "answered (should abstain)"
        if self.abstained:
            return "abstained (should answer)"
        return "correct" if self.correct else "wrong"


def check_citations(answer: Answer, gold_docs: Sequence[str]) -> list[CitationCheck]:
    by_number = {c.n: c for c in answer.citations}
    checks = []
    for start, end in split_sentences(answer.answer):
        sentence = answer.answer[start:end]
        claim = content_stems(strip_markers(sentence))
        for n in dict.fromkeys(int(m) for m in _CITE.findall(sentence)):
            citation = by_number.get(n)
            if citation is None:
                continue
            overlap = len(claim & content_stems(citation.text)) / len(claim) if claim else 0.0
            checks.append(
                CitationCheck(
                    n,
                    citation.source,
                    strip_markers(sentence),
                    _file_name(citation.source) in gold_docs,
                    overlap >= SUPPORT_OVERLAP,
                )
            )
    return checks


# Where an outcome went wrong, in the order a question travels (`where_lost`)
LOSSES = (
    "gold not retrieved",  # no gold document among the passages the model read, nor among the search's candidates
    "gold not given",  # a gold document among the candidates, none among the passages the model read
    "gold partly given",  # some of several gold documents missing (multi-document questions)
    "refused before the model",  # a step before generation refused, the gold passages in hand
    "draft wrong",  # the model read the gold passages and wrote a wrong answer (or said it does not know)
    "draft right, refused",  # the draft had the answer; a check after it refused
    "answer changed",  # the draft had the answer; the final answer (citations placed, trimmed) does not
    "cited wrong sentence",  # a right answer citing a sentence of another document or without its words
    "trap answered",  # an unanswerable question answered
)


def where_lost(
    question: EvalQuestion,
    answer: Answer,
    draft: str,
    correct: bool,
    citations: list[CitationCheck],
    candidates: Sequence[Passage] = (),
) -> str | None:
    """The first place a question's outcome went wrong: what to fix first, counted per set by `rag eval`."""
    if not question.answerable:
        return None if answer.abstained else "trap answered"
    if correct:
        return "cited wrong sentence" if any(not c.precise for c in citations) else None
    given = {_file_name(p.source) for p in answer.passages}
    gold = set(question.gold_docs)
    if gold and not gold & given:
        found = {_file_name(p.source) for p in candidates}
        return "gold not given" if gold & found else "gold not retrieved"
    if gold - given:
        return "gold partly given"
    if answer.abstained_by in ("off topic", "names missing"):
        return "refused before the model"
    if draft and is_correct(question, strip_markers(draft)):
        return "draft right, refused" if answer.abstained else "answer changed"
    return "draft wrong"


def score(question: EvalQuestion, streamed: Streamed, top_k: int) -> QuestionResult:
    answer = streamed.answer
    retrieved = [_file_name(p.source) for p in answer.passages]
    text = strip_markers(answer.answer)
    answered = not answer.abstained
    citations = check_citations(answer, question.gold_docs) if answered else []
    cited = {_file_name(c.source) for c in answer.citations}
    gold = question.gold_docs
    correct = answered and is_correct(question, text)
    return QuestionResult(
        id=question.id,
        category=question.category,
        question=question.question,
        answer=answer.answer,
        answerable=question.answerable,
        correct=correct,
        f1=token_f1(text if answered else "", [question.reference]) if question.answerable else None,
        recall=recall_at_k(retrieved, gold, top_k) if gold else None,
        reciprocal_rank=reciprocal_rank(retrieved, gold) if gold else None,
        citations=citations,
        citation_recall=len(cited & set(gold)) / len(gold) if gold and answered else None,
        retrieved=retrieved,
        first_token_ms=streamed.first_token_ms,
        total_ms=answer.timings.total_ms,
        decode_tokens_per_s=streamed.decode_tokens_per_s,
        draft=streamed.draft,
        trap=question.trap,
        abstained_by=answer.abstained_by,
        polarity=answer_polarity(text) if question.polarity and answered else None,
        expected_polarity=question.polarity,
        lost=where_lost(question, answer, streamed.draft, correct, citations, streamed.candidates),
    )


@dataclass
class EvalReport:
    name: str
    settings: dict[str, Any]
    results: list[QuestionResult]
    metrics: dict[str, float | int | None] = field(default_factory=dict)
    by_category: dict[str, dict[str, float | int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def abstentions(self) -> dict[str, dict[str, int]]:
        return abstentions_by_step((r.abstained_by, r.answerable) for r in self.results)

    @property
    def losses(self) -> dict[str, int]:
        """How many outcomes went wrong at each place (`LOSSES`, in their order)."""
        counts = {name: sum(r.lost == name for r in self.results) for name in LOSSES}
        return {name: n for name, n in counts.items() if n}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metrics": self.metrics,
            "by_category": self.by_category,
            "abstentions_by_step": self.abstentions,
            "losses": self.losses,
            "settings": self.settings,
            "seconds": round(self.seconds, 1),
            "questions": [asdict(r) | {"abstained": r.abstained, "verdict": r.verdict} for r in self.results],
        }


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def summarize(results: list[QuestionResult], top_k: int) -> dict[str, float | int | None]:
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    checks = [c for r in results for c in r.citations]
    first_tokens = [r.first_token_ms for r in results if r.first_token_ms is not None]
    totals = [r.total_ms for r in results]
    decode = [r.decode_tokens_per_s for r in results if r.decode_tokens_per_s]
    yes_no = [r for r in answerable if r.category == "yes_no"]
    return {
        "n": len(results),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "top_k": top_k,
        f"recall_at_{top_k}": _mean(r.recall for r in answerable),
        "mrr": _mean(r.reciprocal_rank for r in answerable),
        "correctness": _rate(sum(r.correct for r in answerable), len(answerable)),
        "f1": _mean(r.f1 for r in answerable),
        "citation_precision": _rate(sum(c.precise for c in checks), len(checks)),
        "citation_recall": _mean(r.citation_recall for r in answerable),
        "citations": len(checks),
        "abstention_recall": _rate(sum(r.abstained for r in unanswerable), len(unanswerable)),
        "false_abstention": _rate(sum(r.abstained for r in answerable), len(answerable)),
        "yes_no": len(yes_no),
        "yes_no_right_polarity": _rate(sum(r.polarity == r.expected_polarity for r in yes_no), len(yes_no)),
        "yes_no_both": sum(r.polarity == "both" for r in yes_no),
        # answers that say the opposite of the evidence: the other polarity, or both at once
        "yes_no_opposite": sum(r.polarity not in (None, r.expected_polarity) for r in yes_no),
        "first_token_ms_p50": round(percentile(first_tokens, 50)) if first_tokens else None,
        "first_token_ms_p95": round(percentile(first_tokens, 95)) if first_tokens else None,
        "total_ms_p50": round(percentile(totals, 50)) if totals else None,
        "total_ms_p95": round(percentile(totals, 95)) if totals else None,
        "decode_tokens_per_s": round(percentile(decode, 50), 2) if decode else None,
    }


def abstentions_by_step(outcomes: Iterable[tuple[AbstainedBy | None, bool]]) -> dict[str, dict[str, int]]:
    """For each step that abstained: how often on unanswerable questions (right) and answerable ones (lost).

    `outcomes` holds (abstained_by, answerable) per question. A step that loses more answers than it
    stops wrong ones costs more than it saves.
    """
    table: dict[str, dict[str, int]] = {}
    for step, answerable in outcomes:
        if step is not None:
            counts = table.setdefault(step, {"right": 0, "lost": 0})
            counts["lost" if answerable else "right"] += 1
    return table


def describe_abstentions(table: dict[str, dict[str, int]]) -> str:
    if not table:
        return "none"
    return ", ".join(f"{step} {c['right']} right / {c['lost']} lost" for step, c in table.items())


def per_category(results: list[QuestionResult]) -> dict[str, dict[str, float | int]]:
    """Per category: accuracy (right answers for answerable ones, abstentions for the rest), and for answered
    questions coverage (the share of answers citing every gold document) and citation precision."""
    table: dict[str, dict[str, float | int]] = {}
    for category in CATEGORIES:
        group = [r for r in results if r.category == category]
        if not group:
            continue
        right = sum(r.correct if r.answerable else r.abstained for r in group)
        row: dict[str, float | int] = {"n": len(group), "accuracy": round(right / len(group), 4)}
        answered = [r for r in group if r.citation_recall is not None]
        citations = [c for r in answered for c in r.citations]
        if answered:
            row["coverage"] = round(sum(r.citation_recall == 1.0 for r in answered) / len(answered), 4)
        if citations:
            row["citation_precision"] = round(sum(c.precise for c in citations) / len(citations), 4)
        table[category] = row
    return table


def run_question_set(
    assistant: Assistant,
    question_set: QuestionSet,
    progress: bool = False,
    on_result: Callable[[EvalQuestion, Streamed, QuestionResult, list[Turn]], None] | None = None,
    warm_up: bool = True,
) -> EvalReport:
    """Ask every question in order; a follow-up gets the assistant's own answer to its first question.

    `on_result` sees each question as it is scored, with the history it was asked with (a recording);
    `warm_up=False` when the caller has warmed the assistant up itself (outside what it records).
    """
    started = time.perf_counter()
    if warm_up:
        assistant.warm_up()
    answers: dict[str, Answer] = {}
    results = []
    for question in tqdm(question_set.questions, desc="questions", unit="q", disable=not progress):
        history = []
        if question.follows:
            first = answers[question.follows]
            history = [Turn(first.question, first.answer)]
        streamed = timed_answer(assistant, question.question, history)
        answers[question.id] = streamed.answer
        results.append(score(question, streamed, assistant.settings.top_k))
        if on_result is not None:
            on_result(question, streamed, results[-1], history)
    s = assistant.settings
    config = {
        "embedding_model": s.embedding_model,
        "generator_model": s.generator_model,
        "generator_engine": assistant.generator.name,
        "top_k": s.top_k,
        "chunk_size": s.chunk_size,
        "support_threshold": s.support_threshold,
        "claim_judge": s.claim_judge,
        "passage_judge": s.passage_judge,
        "second_attempt": s.second_attempt,
        "yes_no_by_evidence": s.yes_no_by_evidence,
        "min_relevance": s.min_relevance,
    }
    report = EvalReport(question_set.name, config, results, seconds=time.perf_counter() - started)
    report.metrics = summarize(results, s.top_k)
    report.by_category = per_category(results)
    return report


@dataclass(frozen=True)
class Streamed:
    """An answer as the eval saw it arrive: the model's draft, first-token time and decode speed, and the
    retrieval's candidates for the question (what a search found before the top few were given to the model).

    The draft and the two speeds are None/empty when the assistant abstained before generating.
    """

    answer: Answer
    draft: str
    first_token_ms: float | None
    decode_tokens_per_s: float | None
    candidates: tuple[Passage, ...] = ()


def timed_answer(assistant: Assistant, question: str, history: list[Turn]) -> Streamed:
    """The answer and its timings; then, outside them, the candidates of a search for the question (how deep
    the retrieval looks: `candidate_k`), which tell a gold passage never found from one found but not given."""
    pieces: list[str] = []
    first = last = 0.0
    for event in assistant.ask_stream(question, history):
        if isinstance(event, Answer):
            candidates = tuple(assistant.retrieve(question, assistant.settings.candidate_k, history))
            generated = bool(pieces) and event.timings.first_token_ms < event.timings.total_ms
            if not generated:
                return Streamed(event, "", None, None, candidates)
            draft = "".join(pieces)
            tokens = assistant.generator.count_tokens(draft)
            decode_s = last - first
            speed = (tokens - 1) / decode_s if tokens > 1 and decode_s else None
            return Streamed(event, draft.strip(), event.timings.first_token_ms, speed, candidates)
        if isinstance(event, str):
            now = time.perf_counter()
            first = first or now
            last = now
            pieces.append(event)
    raise RuntimeError("the answer stream ended without an answer")


def index_own(
    assistant: Assistant,
    documents: Sequence[Document] | None = None,
    progress: bool = False,
    passage_states: bool = True,
) -> IndexReport:
    """Bring an evaluation's own index up to date: its files (or `documents`, e.g. a benchmark's paragraphs), and
    with `passage_states` every passage's state, so that answers are measured on the path users get.

    An index written by an older version is refused for users' indexes; an evaluation's is ours to rebuild.
    """

    def index(rebuild: bool) -> IndexReport:
        if documents is None:
            return assistant.index(rebuild=rebuild, progress=progress)
        return assistant.index_documents(documents, rebuild=rebuild, progress=progress)

    try:
        report = index(rebuild=False)
    except IndexMismatchError:
        report = index(rebuild=True)
    if passage_states:
        assistant.store_passage_states(progress)
    return report


def eval_settings(settings: Settings, question_set: QuestionSet) -> Settings:
    """Its own index of the set's corpus, so an eval never touches (or depends on) the user's index.

    Named by the corpus, so that sets on the same documents share the index (and one loaded model).
    """
    return settings.model_copy(
        update={
            "index_dir": settings.index_dir / f"eval-{question_set.corpus.name}",
            "default_corpus": question_set.corpus,
        }
    )


@dataclass(frozen=True)
class Gate:
    """Quality floors that CI enforces on a fixed subset of the questions."""

    questions: tuple[str, ...]
    minimums: dict[str, float]
    maximums: dict[str, float]

    def failures(self, metrics: dict[str, float | int | None]) -> list[str]:
        failed = []
        for name, floor in self.minimums.items():
            value = metrics.get(name)
            if value is None or value < floor:
                failed.append(f"{name} = {value} is below {floor}")
        for name, ceiling in self.maximums.items():
            value = metrics.get(name)
            if value is None or value > ceiling:
                failed.append(f"{name} = {value} is above {ceiling}")
        return failed


def load_gate(path: Path) -> Gate:
    import tomllib

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return Gate(tuple(raw["questions"]), dict(raw.get("minimum", {})), dict(raw.get("maximum", {})))
    except FileNotFoundError:
        raise EvalSetError(f"{path}: no such gate file") from None
    except (KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise EvalSetError(f"{path}: malformed gate file ({exc})") from None


def load_quick(path: Path) -> dict[str, tuple[str, ...]]:
    """The quick eval's questions: set name -> question ids (eval/quick.toml, drawn once and frozen)."""
    import tomllib

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return {name: tuple(ids) for name, ids in raw.items()}
    except FileNotFoundError:
        raise EvalSetError(f"{path}: no such file; scripts/quick_sample.py --write draws it") from None
    except (TypeError, tomllib.TOMLDecodeError) as exc:
        raise EvalSetError(f"{path}: malformed quick eval file ({exc})") from None


def side_by_side(reports: Sequence[EvalReport]) -> str:
    """The headline metrics of several sets in one table: a gap between the tuned set and a held-out one
    shows rules that fit their questions rather than the task."""
    names = ("correctness", "citation_precision", "abstention_recall", "false_abstention", "yes_no_right_polarity")
    width = max(len(r.name) for r in reports) + 2
    lines = ["  " + "".ljust(24) + "".join(r.name.rjust(width) for r in reports)]
    for name in names:
        cells = []
        for report in reports:
            value = report.metrics.get(name)
            cells.append(("n/a" if value is None else f"{value:.1%}").rjust(width))
        lines.append("  " + name.replace("_", " ").ljust(24) + "".join(cells))
    return "\n".join(lines)


def terminal_table(report: EvalReport) -> str:
    m = report.metrics

    def row(label: str, value: str) -> str:
        return f"  {label:<28}{value}"

    k = m["top_k"]

    def pct(name: str) -> str:
        value = m.get(name)
        return "n/a" if value is None else f"{value:.1%}"

    def ms(name: str) -> str:
        value = m.get(name)
        return "n/a" if value is None else f"{value / 1000:.2f} s"

    lines = [
        f"Eval '{report.name}': {m['n']} questions ({m['answerable']} answerable, {m['unanswerable']} not) "
        f"in {report.seconds:.0f} s, engine {report.settings.get('generator_engine')}",
        row(f"retrieval recall@{k}", pct(f"recall_at_{k}")),
        row("retrieval MRR", f"{m['mrr']:.3f}" if m["mrr"] is not None else "n/a"),
        row("answer correctness", pct("correctness")),
        row("answer token F1", f"{m['f1']:.3f}" if m["f1"] is not None else "n/a"),
        row("citation precision", f"{pct('citation_precision')} of {m['citations']}"),
        row("citation recall", pct("citation_recall")),
        row("abstention recall", pct("abstention_recall")),
        row("false abstention", pct("false_abstention")),
        *(
            [
                row(
                    "yes/no right polarity",
                    f"{pct('yes_no_right_polarity')} of {m['yes_no']}; {m['yes_no_opposite']} say the opposite"
                    f" ({m['yes_no_both']} of them both)",
                )
            ]
            if m.get("yes_no")
            else []
        ),
        row("first token p50 / p95", f"{ms('first_token_ms_p50')} / {ms('first_token_ms_p95')}"),
        row("total p50 / p95", f"{ms('total_ms_p50')} / {ms('total_ms_p95')}"),
        row("decode", f"{m['decode_tokens_per_s']} tokens/s"),
        "  per category: " + ", ".join(_describe_category(c, v) for c, v in report.by_category.items()),
        "  abstained by: " + describe_abstentions(report.abstentions),
        "  where lost: " + (", ".join(f"{name} {n}" for name, n in report.losses.items()) or "nowhere"),
    ]
    return "\n".join(lines)


def _describe_category(category: str, row: dict[str, float | int]) -> str:
    """ "summary 83% of 6 (coverage 100%, precision 92%)": coverage and precision where answers cite several."""
    text = f"{category} {row['accuracy']:.0%} of {row['n']}"
    if category in ("multi_doc", "summary", "comparison", "list", "collection") and "coverage" in row:
        text += f" (coverage {row['coverage']:.0%}, precision {row.get('citation_precision', 0):.0%})"
    return text
