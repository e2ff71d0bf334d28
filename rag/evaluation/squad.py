"""SQuAD 2.0 as an open-book benchmark of the whole pipeline: retrieval, answers and abstention.

The paragraphs of the chosen articles become documents of an index of their own (never the user's),
indexed through the Assistant like any file. Retrieval is scored on every answerable question at
paragraph level (a paragraph ranks where its best chunk does), with the same `Assistant.retrieve` the
answers use. Answers come from `Assistant.ask` in the short answer style, for a seeded sample of the
questions, answerable and not, so two runs with the same seed ask the same questions.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from tqdm import tqdm

from rag.answering.prompts import strip_markers
from rag.assistant import Assistant
from rag.evaluation.metrics import exact_match, percentile, recall_at_k, reciprocal_rank, token_f1
from rag.evaluation.question_set import abstentions_by_step, describe_abstentions, index_own, timed_answer
from rag.ingestion.loaders import document_id
from rag.settings import Settings
from rag.types import AbstainedBy, AnswerStyle, Document

RANK_DEPTH = 10  # paragraphs ranked per question: recall@10 and MRR@10 need ten
_ARTICLE_RANGE = re.compile(r"(\d+)(?:\s*-\s*(\d+))?")


class SquadError(ValueError):
    """The file or the article selection cannot be used; the message says why."""


@dataclass(frozen=True)
class SquadParagraph:
    article: int  # 1-based, in file order
    index: int  # 0-based, within its article
    title: str
    context: str

    @property
    def source(self) -> str:
        """The paragraph's id; it is its document's source, so every retrieved passage names its paragraph."""
        return f"squad/{self.article:02d}/{self.index:03d}"


@dataclass(frozen=True)
class SquadQuestion:
    qid: str
    text: str
    answers: tuple[str, ...]  # empty for an unanswerable question
    paragraph: str  # the gold paragraph's source
    article: int

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass(frozen=True)
class SquadSet:
    path: Path
    sha256: str  # of the file's bytes: the index is cached per file content
    articles: tuple[int, ...]
    paragraphs: tuple[SquadParagraph, ...]
    questions: tuple[SquadQuestion, ...]

    @property
    def answerable(self) -> list[SquadQuestion]:
        return [q for q in self.questions if q.answerable]


# ---- loading ------------------------------------------------------------------------------------


def parse_articles(spec: str | None, count: int) -> tuple[int, ...]:
    """1-based article numbers from "1-8", "9-16" or "1,3,5-7"; None means all `count` of them."""
    if spec is None:
        return tuple(range(1, count + 1))
    chosen: set[int] = set()
    for part in spec.split(","):
        match = _ARTICLE_RANGE.fullmatch(part.strip())
        if not match:
            raise SquadError(f"--articles {spec!r}: expected article numbers and ranges, like 1-8 or 1,3,5-7")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if first > last:
            raise SquadError(f"--articles {spec!r}: the range {part.strip()} runs backwards")
        if first < 1 or last > count:
            raise SquadError(
                f"--articles {spec!r}: {part.strip()} is out of range; the file has {count} articles (1-{count})"
            )
        chosen.update(range(first, last + 1))
    return tuple(sorted(chosen))


def load_squad(path: Path | str, articles: str | None = None) -> SquadSet:
    """Read and check a SQuAD 2.0 file, keeping the chosen articles' paragraphs and questions."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SquadError(f"no such file: {path}") from None
    except OSError as exc:
        raise SquadError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SquadError(f"{path} is not a SQuAD file: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list) or not data["data"]:
        raise SquadError(f'{path} is not a SQuAD file: it has no "data" list of articles')
    if data.get("version") != "v2.0":
        raise SquadError(
            f"{path} is not SQuAD 2.0 (version {data.get('version')!r}): "
            "scoring abstention needs its unanswerable questions"
        )
    chosen = parse_articles(articles, len(data["data"]))
    paragraphs: list[SquadParagraph] = []
    questions: list[SquadQuestion] = []
    for number in chosen:
        try:
            _read_article(data["data"][number - 1], number, paragraphs, questions)
        except (KeyError, TypeError, AttributeError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            raise SquadError(f"{path}: article {number} is not in SQuAD 2.0 form ({problem})") from None
    return SquadSet(path, hashlib.sha256(raw).hexdigest(), chosen, tuple(paragraphs), tuple(questions))


def _read_article(
    article: dict[str, Any], number: int, paragraphs: list[SquadParagraph], questions: list[SquadQuestion]
) -> None:
    title = str(article["title"]).replace("_", " ")
    for index, entry in enumerate(article["paragraphs"]):
        paragraph = SquadParagraph(number, index, title, str(entry["context"]))
        paragraphs.append(paragraph)
        for qa in entry["qas"]:
            answers = () if qa["is_impossible"] else tuple(str(a["text"]) for a in qa["answers"])
            if not qa["is_impossible"] and not answers:
                raise KeyError(f"answerable question {qa['id']} has no answers")
            questions.append(SquadQuestion(str(qa["id"]), str(qa["question"]), answers, paragraph.source, number))


def paragraph_documents(squad: SquadSet) -> list[Document]:
    """One document per paragraph, titled with its article, as a file holding the paragraph would be."""
    return [Document(document_id(p.context), p.title, p.source, p.context) for p in squad.paragraphs]


def squad_settings(base: Settings, squad: SquadSet, answer_style: AnswerStyle) -> Settings:
    """`base` with the benchmark's own index (per file, articles and chunking) and answer style."""
    key = json.dumps(
        {
            "file": squad.sha256,
            "articles": squad.articles,
            "embedding_model": base.embedding_model,
            "chunk_size": base.chunk_size,
            "chunk_overlap": base.chunk_overlap,
        },
        sort_keys=True,
    )
    index_dir = base.index_dir / f"squad-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    return base.model_copy(update={"index_dir": index_dir, "answer_style": answer_style})


# ---- scoring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalScores:
    n: int  # answerable questions ranked
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr_at_10: float
    misses_at_5: int
    misses_at_5_in_gold_article: int  # of those, how many had a paragraph of the right article first
    seconds: float


@dataclass(frozen=True)
class QuestionResult:
    qid: str
    question: str
    gold: tuple[str, ...]
    answer: str  # what the assistant said, markers included
    draft: str  # what the model wrote before the checks ("" when it was not asked)
    abstained_by: AbstainedBy | None  # None when it answered
    em: float | None  # None for an unanswerable question
    f1: float | None
    total_ms: float

    @property
    def abstained(self) -> bool:
        return self.abstained_by is not None


@dataclass(frozen=True)
class AnswerScores:
    n: int
    answerable: int
    unanswerable: int
    abstained: int
    em: float | None  # over the answerable questions; an abstention scores 0
    f1: float | None
    answered_f1: float | None  # over the answerable questions it did answer
    abstain_precision: float | None  # None when undefined (nothing abstained / nothing unanswerable)
    abstain_recall: float | None
    p50_ms: float | None
    p95_ms: float | None
    results: tuple[QuestionResult, ...]

    @property
    def abstentions(self) -> dict[str, dict[str, int]]:
        return abstentions_by_step((r.abstained_by, bool(r.gold)) for r in self.results)


def rank_paragraphs(assistant: Assistant, question: str, depth: int = RANK_DEPTH) -> list[str]:
    """Paragraph sources, best first, each at the rank of its best chunk; asks for more chunks until `depth`.

    Overlapping chunks of one paragraph often rank together, so it starts at twice `depth` chunks.
    """
    k = 2 * depth
    while True:
        passages = assistant.retrieve(question, k)
        ranked = list(dict.fromkeys(p.source for p in passages))
        if len(ranked) >= depth or len(passages) < k:
            return ranked[:depth]
        k *= 2


def score_retrieval(assistant: Assistant, squad: SquadSet, progress: bool = False) -> RetrievalScores:
    started = time.perf_counter()
    article_of = {p.source: p.article for p in squad.paragraphs}
    questions = squad.answerable
    r1, r5, r10, rr = [], [], [], []
    in_article = 0
    for q in tqdm(questions, desc="retrieval", unit="q", disable=not progress, file=sys.stderr):
        ranked = rank_paragraphs(assistant, q.text)
        r1.append(recall_at_k(ranked, q.paragraph, 1))
        r5.append(recall_at_k(ranked, q.paragraph, 5))
        r10.append(recall_at_k(ranked, q.paragraph, 10))
        rr.append(reciprocal_rank(ranked, q.paragraph, RANK_DEPTH))
        if not r5[-1] and ranked and article_of[ranked[0]] == q.article:
            in_article += 1
    return RetrievalScores(
        n=len(questions),
        recall_at_1=_mean(r1) or 0.0,
        recall_at_5=_mean(r5) or 0.0,
        recall_at_10=_mean(r10) or 0.0,
        mrr_at_10=_mean(rr) or 0.0,
        misses_at_5=len(r5) - int(sum(r5)),
        misses_at_5_in_gold_article=in_article,
        seconds=time.perf_counter() - started,
    )


def sample_questions(squad: SquadSet, limit: int | None, seed: int) -> list[SquadQuestion]:
    """A fixed random sample (all questions without `limit`), in file order."""
    questions = list(squad.questions)
    if limit is None or limit >= len(questions):
        return questions
    chosen = sorted(random.Random(seed).sample(range(len(questions)), limit))
    return [questions[i] for i in chosen]


def score_answers(assistant: Assistant, questions: list[SquadQuestion], progress: bool = False) -> AnswerScores:
    results = []
    for q in tqdm(questions, desc="answers", unit="q", disable=not (progress and questions), file=sys.stderr):
        streamed = timed_answer(assistant, q.text, [])
        answer, draft = streamed.answer, streamed.draft
        prediction = "" if answer.abstained else strip_markers(answer.answer)
        results.append(
            QuestionResult(
                qid=q.qid,
                question=q.text,
                gold=q.answers,
                answer=answer.answer,
                draft=draft,
                abstained_by=answer.abstained_by,
                em=exact_match(prediction, q.answers) if q.answerable else None,
                f1=token_f1(prediction, q.answers) if q.answerable else None,
                total_ms=answer.timings.total_ms,
            )
        )
    answerable = [r for r in results if r.gold]
    unanswerable = [r for r in results if not r.gold]
    abstained = [r for r in results if r.abstained]
    correct_abstentions = sum(1 for r in abstained if not r.gold)
    times = [r.total_ms for r in results]
    return AnswerScores(
        n=len(results),
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        abstained=len(abstained),
        em=_mean([r.em for r in answerable if r.em is not None]),
        f1=_mean([r.f1 for r in answerable if r.f1 is not None]),
        answered_f1=_mean([r.f1 for r in answerable if r.f1 is not None and not r.abstained]),
        abstain_precision=correct_abstentions / len(abstained) if abstained else None,
        abstain_recall=correct_abstentions / len(unanswerable) if unanswerable else None,
        p50_ms=percentile(times, 50) if times else None,
        p95_ms=percentile(times, 95) if times else None,
        results=tuple(results),
    )


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


# ---- the run and its report ---------------------------------------------------------------------


@dataclass(frozen=True)
class SquadReport:
    squad: SquadSet
    settings: Settings
    limit: int | None
    seed: int
    index_seconds: float
    embedded_chunks: int  # 0 when the paragraphs' index was already there
    retrieval: RetrievalScores
    answers: AnswerScores
    engine: str  # the generation engine that answered

    def to_json(self) -> dict[str, Any]:
        """The stable keys first (`n` = questions answered), then counts, timings, config and each answer."""
        r, a, s = self.retrieval, self.answers, self.settings
        return {
            "n": a.n,
            "recall_at_1": r.recall_at_1,
            "recall_at_5": r.recall_at_5,
            "recall_at_10": r.recall_at_10,
            "mrr_at_10": r.mrr_at_10,
            "em": a.em,
            "f1": a.f1,
            "abstain_precision": a.abstain_precision,
            "abstain_recall": a.abstain_recall,
            "answered_f1": a.answered_f1,
            "counts": {
                "paragraphs": len(self.squad.paragraphs),
                "embedded_chunks": self.embedded_chunks,
                "questions": len(self.squad.questions),
                "retrieval_questions": r.n,
                "retrieval_misses_at_5": r.misses_at_5,
                "retrieval_misses_at_5_in_gold_article": r.misses_at_5_in_gold_article,
                "answered_answerable": a.answerable,
                "answered_unanswerable": a.unanswerable,
                "abstained": a.abstained,
                "abstentions_by_step": a.abstentions,
            },
            "timings": {
                "index_s": round(self.index_seconds, 2),
                "retrieval_s": round(r.seconds, 2),
                "answer_p50_ms": a.p50_ms,
                "answer_p95_ms": a.p95_ms,
            },
            "config": {
                "file": str(self.squad.path),
                "file_sha256": self.squad.sha256,
                "articles": article_ranges(self.squad.articles),
                "limit": self.limit,
                "seed": self.seed,
                "generator_engine": self.engine,
                **{
                    name: str(getattr(s, name))
                    for name in (
                        "answer_style",
                        "generator_model",
                        "embedding_model",
                        "chunk_size",
                        "chunk_overlap",
                        "top_k",
                        "candidate_k",
                        "bm25_weight",
                    )
                },
            },
            "answers": [asdict(result) | {"abstained": result.abstained} for result in a.results],
        }

    def table(self) -> str:
        """The numbers for a terminal: retrieval first, then answers."""
        r, a = self.retrieval, self.answers
        lines = [
            f"SQuAD 2.0 {self.squad.path.name}, articles {article_ranges(self.squad.articles)}: "
            f"{len(self.squad.paragraphs)} paragraphs, {len(self.squad.questions)} questions",
            "",
            f"Retrieval of the gold paragraph ({r.n} answerable questions, {r.seconds:.0f} s)",
            _row("recall@1", r.recall_at_1),
            _row("recall@5", r.recall_at_5),
            _row("recall@10", r.recall_at_10),
            _row("MRR@10", r.mrr_at_10),
            f"  {'misses@5':<22}{r.misses_at_5} ({r.misses_at_5_in_gold_article} ranked its own article first)",
        ]
        if a.n:
            lines += [
                "",
                f"Answers ({a.n} questions, seed {self.seed}: {a.answerable} answerable, "
                f"{a.unanswerable} unanswerable; {self.settings.answer_style} style; engine {self.engine})",
                _row("exact match", a.em),
                _row("F1", a.f1),
                _row("F1 when it answered", a.answered_f1),
                _row("abstain precision", a.abstain_precision),
                _row("abstain recall", a.abstain_recall),
                f"  {'abstained by':<22}{describe_abstentions(a.abstentions)}",
                f"  {'time per answer':<22}p50 {_seconds(a.p50_ms)}, p95 {_seconds(a.p95_ms)}",
            ]
        return "\n".join(lines)


def _row(name: str, value: float | None) -> str:
    return f"  {name:<22}{'n/a' if value is None else f'{value:.3f}'}"


def _seconds(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms / 1000:.1f} s"


def article_ranges(articles: tuple[int, ...]) -> str:
    """(1, 2, 3, 5) -> "1-3,5": the selection written as --articles takes it."""
    runs: list[list[int]] = []
    for number in articles:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ",".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def run_squad(
    squad: SquadSet,
    settings: Settings,
    *,
    limit: int | None = None,
    seed: int = 0,
    answer_style: AnswerStyle = "short",
    progress: bool = False,
) -> SquadReport:
    """Index the paragraphs (reused when unchanged), rank for every answerable question, answer the sample."""
    assistant = Assistant(squad_settings(settings, squad, answer_style))
    documents = paragraph_documents(squad)
    indexed = index_own(assistant, documents, progress, passage_states=limit != 0)
    retrieval = score_retrieval(assistant, squad, progress)
    answers = score_answers(assistant, sample_questions(squad, limit, seed), progress)
    engine = assistant.generator.name if answers.n else "none (retrieval only)"
    return SquadReport(
        squad,
        assistant.settings,
        limit,
        seed,
        indexed.seconds,
        indexed.sync.embedded_chunks,
        retrieval,
        answers,
        engine,
    )
