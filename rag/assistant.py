"""The one pipeline every front end calls: ingest → chunk → embed → store → retrieve → generate → cite."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rag.chunking import Chunker
from rag.citations import CitationVerifier, VerifiedAnswer
from rag.embedding import Embedder
from rag.excerpts import PassageTrimmer
from rag.generation import Generator
from rag.ingest import load_documents
from rag.lexical import content_stems, mentions, salient_terms
from rag.prompts import (
    ABSTAIN_TEXT,
    build_confirm_prompt,
    build_prompt,
    declines,
    retrieval_queries,
)
from rag.retrieval import HybridRetriever
from rag.settings import Settings, get_settings
from rag.store import IndexStore, SyncReport
from rag.types import AbstainedBy, Answer, Citation, Document, IngestError, Passage, Timings, Turn


class QuestionError(ValueError):
    """The question itself is unusable (empty, too long); the caller should tell the user."""


@dataclass
class IndexReport:
    sync: SyncReport
    errors: list[IngestError] = field(default_factory=list)
    seconds: float = 0.0


class Assistant:
    """Cheap to construct; the index, the embedder and the generator load on first use."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        s = self.settings
        self.embedder = Embedder(s.embedding_model, s.embed_batch_size, s.embedding_dtype)
        self.chunker = Chunker(s.chunk_size, s.chunk_overlap)
        self.store = IndexStore(s.index_dir, self.embedder, s.bm25_k1, s.bm25_b, s.ivf_min_chunks, s.ivf_nprobe)
        self.retriever = HybridRetriever(self.store, self.embedder, s.candidate_k, s.bm25_weight)
        self.generator = Generator(
            s.generator_model,
            s.cache_dir,
            s.max_new_tokens,
            s.threads,
            s.generator_quantization,
            s.prompt_lookup_tokens,
        )
        self.trimmer = PassageTrimmer(self.embedder, s.excerpt_chars)
        self.verifier = CitationVerifier(self.embedder, s.support_threshold)

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
    ) -> Iterator[str | Answer]:
        """Yield answer text as it is generated, then the final, verified `Answer`.

        The streamed text is the model's draft; the final answer may differ (checked citations, or an
        abstention when the passages turn out not to support it). Once `cancel` is set no `Answer` comes.
        """
        question = self.check_question(question)
        turns = list(history)[-self.settings.history_turns :] if self.settings.history_turns else []
        timings = Timings()
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        passages = self.retrieve(question, self.settings.top_k, turns)
        timings.retrieve_ms = elapsed()

        refusal = self._unanswerable(question, passages, turns)
        if refusal:
            text, step = refusal
            timings.first_token_ms = timings.total_ms = elapsed()
            yield text
            yield Answer(question, text, [], timings, passages, step)
            return

        passages = self.trimmer.trim(retrieval_queries(question, turns)[0], passages)
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
        step = self._rejected_by(question, draft, verified, passages, turns)
        timings.total_ms = elapsed()
        if step:
            yield Answer(question, ABSTAIN_TEXT, [], timings, passages, step)
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

    def _rejected_by(
        self, question: str, draft: str, verified: VerifiedAnswer, passages: list[Passage], history: list[Turn]
    ) -> AbstainedBy | None:
        """The first check the draft fails, or None when it stands as the answer."""
        if not draft or declines(draft):
            return "model"
        if not verified.supported:
            return "citations"
        if not self._cited_cover(question, verified.citations):
            return "cited names"
        if not self._confirmed(question, verified.citations, passages, history):
            return "answer check"
        return None

    def _cited_cover(self, question: str, citations: list[Citation]) -> bool:
        """Every name in the question appears in a cited document.

        Retrieval checks names over all passages; this catches an answer that borrows a claim from a
        document about someone or something else ("What did Zuckerberg propose in Paris?" answered
        with his views from an article that never mentions Paris).
        """
        cited = [self.store.document(doc_id) for doc_id in dict.fromkeys(c.doc_id for c in citations)]
        text = " ".join(f"{d.title} {d.text}" for d in cited)
        return all(mentions(text, term) for term in salient_terms(question))

    def _confirmed(
        self, question: str, citations: list[Citation], passages: list[Passage], history: list[Turn]
    ) -> bool:
        """The model, asked on its own, agrees that the passages the answer cites answer the question."""
        if not self.settings.answer_check:
            return True
        cited = [passages[n - 1] for n in dict.fromkeys(c.n for c in citations)]
        odds = self.generator.yes_log_odds(build_confirm_prompt(question, cited, history))
        return odds >= self.settings.answer_check_min_log_odds

    def _unanswerable(
        self, question: str, passages: list[Passage], history: list[Turn]
    ) -> tuple[str, AbstainedBy] | None:
        """Abstain before generating when retrieval already shows the documents can't answer.

        The model alone will happily answer from its own knowledge, so two checks come first: the
        passages must be about the question at all, and every name or number in the question must
        appear in them or their titles (or earlier in the conversation), as the later name checks count titles.
        """
        if not passages or max(p.relevance for p in passages) < self.settings.min_relevance:
            return ABSTAIN_TEXT, "off topic"
        evidence = " ".join([p.shown_text for p in passages] + [f"{t.question} {t.answer}" for t in history])
        evidence_stems = content_stems(evidence)
        missing = [
            term
            for term in salient_terms(question)
            if not mentions(evidence, term) and not content_stems(term) <= evidence_stems
        ]
        if missing:
            return f"The documents don't mention {', '.join(missing)}.", "names missing"
        return None
