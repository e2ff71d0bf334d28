"""The one pipeline every front end calls: ingest → chunk → embed → store → retrieve → generate → check → cite.

Each stage is a component from its own subpackage (rag.ingestion, rag.embedding, rag.store, rag.retrieval,
rag.generation, rag.answering); the Assistant wires them from the settings and runs them in order.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from tqdm import tqdm

from rag.answering.answerers import Answerer, Evidence, answerers
from rag.answering.checks import Case, Check, abstention_checks, first_refusal
from rag.answering.citations import CitationVerifier, ClaimStated
from rag.answering.judge import ClaimJudge
from rag.answering.kinds import question_kind
from rag.answering.prompts import build_prompt, retrieval_queries
from rag.answering.summaries import SummaryCache
from rag.answering.yes_no import PolarityReader, YesNoByEvidence
from rag.cpu import fast_dtype
from rag.embedding.embedder import Embedder
from rag.generation import create_engine
from rag.generation.base import GenerationEngine
from rag.generation.passage_states import StateWorker
from rag.ingestion.chunking import Chunker
from rag.ingestion.loaders import load_documents
from rag.retrieval.excerpts import PassageTrimmer
from rag.retrieval.gathering import EvidenceGatherer
from rag.retrieval.hybrid import HybridRetriever
from rag.settings import Settings, get_settings
from rag.store import create_store
from rag.store.base import SyncReport
from rag.types import (
    AbstainedBy,
    Answer,
    AnswerEvent,
    Chunk,
    Document,
    IngestError,
    Passage,
    Prompt,
    QuestionKind,
    Sources,
    Timings,
    Turn,
)


class QuestionError(ValueError):
    """The question itself is unusable (empty, too long); the caller should tell the user."""


@dataclass
class IndexReport:
    sync: SyncReport
    errors: list[IngestError] = field(default_factory=list)
    seconds: float = 0.0


class Assistant:
    """Cheap to construct; the index, the embedder and the generator are created and loaded on first use."""

    def __init__(self, settings: Settings | None = None, generator: GenerationEngine | None = None) -> None:
        """`generator`: an engine already loaded, shared with another Assistant of the same model (an eval
        over several corpora loads the model once)."""
        self.settings = settings or get_settings()
        if generator is not None:
            self.__dict__["generator"] = generator  # what the cached property would make
        s = self.settings
        self.embedder = Embedder(s.embedding_model, s.embed_batch_size, fast_dtype(s.embedding_dtype))
        self.chunker = Chunker(s.chunk_size, s.chunk_overlap)
        self.store = create_store(s, self.embedder)
        self.retriever = HybridRetriever(self.store, self.embedder, s.candidate_k, s.bm25_weight)
        self.trimmer = PassageTrimmer(self.embedder, s.excerpt_chars)
        self.verifier = CitationVerifier(self.embedder, s.support_threshold)
        self.gatherer = EvidenceGatherer(self.retrieve, s.top_k, s.candidate_k)
        self.summaries = SummaryCache(s.index_dir, s.generator_model, s.summary_section_chars)
        # Set by a server (`start_state_worker`): passage states missing from an answer are then made in the background.
        self.state_worker: StateWorker | None = None

    @cached_property
    def generator(self) -> GenerationEngine:
        """Created on first use: with `generator_engine = "auto"` that may measure the engines first (once)."""
        return create_engine(self.settings)

    @cached_property
    def claim_judge(self) -> ClaimStated | None:
        """Asked about a direct answer the support score would drop (None when `claim_judge` is off)."""
        if not self.settings.claim_judge:
            return None
        return ClaimJudge(self.generator, self.settings.claim_judge_min_log_odds).states

    @cached_property
    def polarity(self) -> PolarityReader:
        s = self.settings
        return PolarityReader(self.generator, s.polarity_bias, s.polarity_margin)

    @cached_property
    def yes_no(self) -> YesNoByEvidence | None:
        """Revises a yes/no answer to what the evidence reads (None when `yes_no_by_evidence` is off)."""
        return YesNoByEvidence(self.polarity, self.embedder) if self.settings.yes_no_by_evidence else None

    @cached_property
    def answerers(self) -> dict[QuestionKind, Answerer]:
        """How each kind of question is answered (rag.answering.answerers)."""
        return answerers(self)

    @cached_property
    def checks(self) -> list[Check]:
        return abstention_checks(self.settings, self.store, self.generator, self.polarity)

    # ---- documents -----------------------------------------------------------------------

    def index(
        self, paths: Iterable[Path | str] = (), *, rebuild: bool = False, replace: bool = True, progress: bool = False
    ) -> IndexReport:
        """Bring the index in line with `paths` (default: the corpus folder and uploads), embedding only what changed.

        With `replace`, documents no longer under `paths` are dropped; without it (uploads) they stay.
        """
        started = time.perf_counter()
        documents, errors = load_documents(list(paths) or self._default_paths(), self._max_bytes)
        report = self.index_documents(
            documents, keep_sources=[e.path for e in errors], rebuild=rebuild, replace=replace, progress=progress
        )
        return IndexReport(report.sync, errors, time.perf_counter() - started)

    def index_documents(
        self,
        documents: Sequence[Document],
        *,
        keep_sources: Iterable[str] = (),
        rebuild: bool = False,
        replace: bool = True,
        progress: bool = False,
    ) -> IndexReport:
        """Index documents that did not come from files (e.g. a benchmark's paragraphs), chunked as files are.

        `keep_sources` are kept as they are even with `replace` (files that failed to read this time).
        """
        started = time.perf_counter()
        report = self.store.sync(
            list(documents),
            self.chunker,
            self._chunk_config,
            keep_sources=keep_sources,
            remove_missing=replace,
            rebuild=rebuild,
            progress=progress,
        )
        if report.removed or report.changed:
            self.summaries.keep_only(d.doc_id for d in self.documents())
        return IndexReport(report, seconds=time.perf_counter() - started)

    def store_passage_states(self, progress: bool = False, documents: Sequence[Document] | None = None) -> int:
        """Compute the passage state of every chunk (of `documents`, default all) that has none; how many.

        Only for collections of up to `passage_state_index_chunks` chunks (about a second each on 2 cores);
        a larger one gets its states lazily, where a server runs a state worker. A no-op for an engine
        without passage states (a model server).
        """
        if not self.settings.passage_states or self.settings.generator_engine == "openai":
            return 0
        if sum(self.store.chunk_counts().values()) > self.settings.passage_state_index_chunks:
            return 0
        engine = self.generator
        if engine.passage_states is None:
            return 0
        prompts = [
            self._state_prompt(d, c)
            for d in (self.documents() if documents is None else documents)
            for c in self.chunker.split(d)
        ]
        missing = [
            p
            for p in tqdm(prompts, desc="checking passage states", unit="chunk", disable=not progress, leave=False)
            if engine.missing_passage_states(p)
        ]
        computed = 0
        for prompt in tqdm(missing, desc="passage states", unit="chunk", disable=not progress):
            computed += engine.store_passage_states(prompt)
        return computed

    def _state_prompt(self, document: Document, chunk: Chunk) -> Prompt:
        """A prompt holding one passage as answers number it: what its state is computed from."""
        passage = Passage(chunk, document.title, document.source, 1.0, 1.0, document.places_in(chunk.start, chunk.end))
        return build_prompt("", [passage], [], self.settings.answer_style)

    def start_state_worker(self) -> StateWorker:
        """Make missing passage states in the background from now on (a server has a later; a one-shot CLI has not)."""
        if self.state_worker is None:
            self.state_worker = StateWorker()
        return self.state_worker

    def store_passage_states_later(self) -> None:
        """After an upload: the new passages' states, made in the background where a state worker runs."""
        if self.state_worker is not None:
            self.state_worker.submit(lambda stop: self.store_passage_states())

    def _default_paths(self) -> list[Path]:
        uploads = self.settings.upload_dir
        return [self.settings.default_corpus] + ([uploads] if uploads.is_dir() else [])

    def documents(self) -> list[Document]:
        return self.store.documents()

    @property
    def _max_bytes(self) -> int:
        return int(self.settings.max_file_mb * 1024 * 1024)

    @property
    def _chunk_config(self) -> dict[str, int]:
        return {"chunk_size": self.settings.chunk_size, "chunk_overlap": self.settings.chunk_overlap}

    # ---- questions -----------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load the index and both models and start one answer, so the first question is answered at full speed.

        The first forward passes of a process are slow (kernel set-up), and the system prompt's cached
        keys and values are computed on first use.
        """
        self.retriever.retrieve("warm up", 1)
        first_piece = self.generator.stream(build_prompt("warm up", [], [], self.settings.answer_style))
        next(first_piece, None)
        first_piece.close()

    def ask(self, question: str, history: Sequence[Turn] = ()) -> Answer:
        for event in self.ask_stream(question, history):
            if isinstance(event, Answer):
                return event
        raise RuntimeError("the answer stream ended without an answer")

    def ask_stream(
        self, question: str, history: Sequence[Turn] = (), cancel: threading.Event | None = None
    ) -> Iterator[AnswerEvent]:
        """Yield the passages being read (`Sources`), answer text as it is generated, then the verified `Answer`.

        The streamed text is the model's draft; the final answer may differ (checked citations, or an
        abstention when the passages turn out not to support it). An abstention before generation comes
        without `Sources`. Once `cancel` is set no `Answer` comes.
        """
        question = self.check_question(question)
        recent = list(history)[-self.settings.history_turns :] if self.settings.history_turns else []
        turns = [turn.clipped(self.settings.history_turn_chars) for turn in recent]
        timings = Timings()
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        # The short style answers with one exact phrase (extractive benchmarks): every question is a fact there.
        kind = question_kind(question, turns) if self.settings.answer_style == "sentence" else "fact"
        answerer = self.answerers[kind]
        evidence = answerer.gather(question, turns)
        timings.retrieve_ms = elapsed()
        refusal = self._refused_before_generation(question, answerer, evidence, turns)
        if refusal:
            step, text = refusal
            timings.first_token_ms = timings.total_ms = elapsed()
            yield text
            yield Answer(question, text, [], timings, evidence.checked, step, kind)
            return

        draft = answerer.write(question, turns, evidence, cancel)
        yield Sources(draft.passages, kind)
        pieces: list[str] = []
        for piece in draft.pieces:
            if not pieces:
                timings.first_token_ms = elapsed()
            pieces.append(piece)
            yield piece
        if cancel is not None and cancel.is_set():
            return  # nobody waits for this answer: skip its checks and give the model to the next question
        finished = answerer.finish(question, turns, draft, "".join(pieces).strip(), cancel)
        if cancel is not None and cancel.is_set():
            return
        timings.total_ms = elapsed()
        if draft.lacking_states is not None and self.state_worker is not None:
            # made now, in the background, for the next question that reads these passages
            self.state_worker.submit(functools.partial(self.generator.store_passage_states, draft.lacking_states))
        if finished.refusal:
            step, text = finished.refusal
            yield Answer(question, text, [], timings, draft.passages, step, kind)
            return
        yield Answer(question, finished.verified.text, finished.verified.citations, timings, draft.passages, kind=kind)

    def _refused_before_generation(
        self, question: str, answerer: Answerer, evidence: Evidence, turns: list[Turn]
    ) -> tuple[AbstainedBy, str] | None:
        """The first step before generation that refuses to answer from `evidence`, with its reply (none for an
        answerer whose evidence the checks do not read)."""
        if not answerer.checked_before_generation:
            return None
        return first_refusal(self.checks, Case(question, evidence.checked, turns), before_generation=True)

    def summarize_documents(self, progress: bool = False) -> int:
        """Write the summary of every indexed document that has none kept (`rag index --summaries`); how many."""
        documents = self.documents()
        self.summaries.keep_only(d.doc_id for d in documents)
        missing = [d for d in documents if self.summaries.get(d.doc_id) is None]
        for document in tqdm(missing, desc="summaries", unit="doc", disable=not progress):
            for _ in self.summaries.summarize(document, self.generator):
                pass
        return len(missing)

    def retrieve(self, question: str, top_k: int, history: Sequence[Turn] = ()) -> list[Passage]:
        """The passages an answer to `question` would be written from; evaluations rank with this too."""
        return self.retriever.retrieve(retrieval_queries(self.check_question(question), list(history)), top_k)

    def check_question(self, question: str) -> str:
        """The question as it will be asked (whitespace collapsed); raises `QuestionError` if unusable.

        `ask_stream` calls it too; front ends call it first to refuse bad input before queueing.
        """
        question = " ".join(question.split())
        if not question:
            raise QuestionError("the question is empty")
        if len(question) > self.settings.max_question_chars:
            raise QuestionError(
                f"the question is {len(question)} characters long; the limit is {self.settings.max_question_chars}"
            )
        return question
