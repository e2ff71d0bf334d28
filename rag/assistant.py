"""The one pipeline every front end calls: ingest → chunk → embed → store → retrieve → generate → check → cite.

Each stage is a component from its own subpackage (rag.ingestion, rag.embedding, rag.store, rag.retrieval,
rag.generation, rag.answering); the Assistant wires them from the settings and runs them in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from rag.answering.checks import Case, Check, abstention_checks, first_refusal
from rag.answering.citations import CitationVerifier
from rag.answering.prompts import build_prompt, retrieval_queries
from rag.cpu import fast_dtype
from rag.embedding.embedder import Embedder
from rag.generation import create_engine
from rag.generation.base import GenerationEngine
from rag.ingestion.chunking import Chunker
from rag.ingestion.loaders import load_documents
from rag.retrieval.excerpts import PassageTrimmer
from rag.retrieval.hybrid import HybridRetriever
from rag.settings import Settings, get_settings
from rag.store import create_store
from rag.store.base import SyncReport
from rag.types import Answer, AnswerEvent, Document, IngestError, Passage, Sources, Timings, Turn


class QuestionError(ValueError):
    """The question itself is unusable (empty, too long); the caller should tell the user."""


@dataclass
class IndexReport:
    sync: SyncReport
    errors: list[IngestError] = field(default_factory=list)
    seconds: float = 0.0


class Assistant:
    """Cheap to construct; the index, the embedder and the generator are created and loaded on first use."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        s = self.settings
        self.embedder = Embedder(s.embedding_model, s.embed_batch_size, fast_dtype(s.embedding_dtype))
        self.chunker = Chunker(s.chunk_size, s.chunk_overlap)
        self.store = create_store(s, self.embedder)
        self.retriever = HybridRetriever(self.store, self.embedder, s.candidate_k, s.bm25_weight)
        self.trimmer = PassageTrimmer(self.embedder, s.excerpt_chars)
        self.verifier = CitationVerifier(self.embedder, s.support_threshold)

    @cached_property
    def generator(self) -> GenerationEngine:
        """Created on first use: with `generator_engine = "auto"` that may measure the engines first (once)."""
        return create_engine(self.settings)

    @cached_property
    def checks(self) -> list[Check]:
        return abstention_checks(self.settings, self.store, self.generator)

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
        return IndexReport(report, seconds=time.perf_counter() - started)

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
        turns = list(history)[-self.settings.history_turns :] if self.settings.history_turns else []
        timings = Timings()
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        passages = self.retrieve(question, self.settings.top_k, turns)
        timings.retrieve_ms = elapsed()

        refusal = first_refusal(self.checks, Case(question, passages, turns), before_generation=True)
        if refusal:
            step, text = refusal
            timings.first_token_ms = timings.total_ms = elapsed()
            yield text
            yield Answer(question, text, [], timings, passages, step)
            return

        passages = self.trimmer.trim(retrieval_queries(question, turns)[0], passages)
        yield Sources(passages)
        pieces: list[str] = []
        prompt = build_prompt(question, passages, turns, self.settings.answer_style)
        for piece in self.generator.stream(prompt, cancel):
            if not pieces:
                timings.first_token_ms = elapsed()
            pieces.append(piece)
            yield piece
        if cancel is not None and cancel.is_set():
            return  # nobody waits for this answer: skip its checks and give the model to the next question
        draft = "".join(pieces).strip()

        verified = self.verifier.verify(draft, passages, question)
        refusal = first_refusal(self.checks, Case(question, passages, turns, draft, verified), before_generation=False)
        timings.total_ms = elapsed()
        if refusal:
            step, text = refusal
            yield Answer(question, text, [], timings, passages, step)
            return
        yield Answer(question, verified.text, verified.citations, timings, passages)

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
