"""The one pipeline every front end calls: ingest → chunk → embed → store → retrieve → generate → check → cite.

Each stage is a component from its own subpackage (rag.ingestion, rag.embedding, rag.store, rag.retrieval,
rag.generation, rag.answering); the Assistant wires them from the settings and runs them in order.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from tqdm import tqdm

from rag.answering.checks import Case, Check, abstention_checks, first_refusal
from rag.answering.citations import MARKER, CitationVerifier, ClaimStated, VerifiedAnswer
from rag.answering.judge import ClaimJudge, PassageJudge
from rag.answering.kinds import question_kind
from rag.answering.prompts import ABSTAIN_TEXT, build_prompt, retrieval_queries
from rag.answering.summaries import SummaryCache, documents_named
from rag.answering.yes_no import PolarityReader, YesNoByEvidence
from rag.cpu import fast_dtype
from rag.embedding.embedder import Embedder
from rag.generation import create_engine
from rag.generation.base import GenerationEngine
from rag.generation.passage_states import StateWorker
from rag.ingestion.chunking import Chunker, split_sentences
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
    Citation,
    Document,
    IngestError,
    Passage,
    Prompt,
    QuestionKind,
    Sources,
    Timings,
    Turn,
)

_ONE_SENTENCE = re.compile(r"\b(?:one|a single|1)\s+sentence", re.IGNORECASE)


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
        if kind == "collection":
            yield from self._answer_collection(question, timings, elapsed)
            return
        if kind == "summary":
            yield from self._answer_summary(question, turns, timings, elapsed, cancel)
            return

        passages = self.gatherer.gather(question, kind, turns)
        timings.retrieve_ms = elapsed()

        refused = self._refused_before_generation(question, passages, turns, kind, timings, elapsed)
        if refused:
            yield from refused
            return

        if kind == "fact" and self.settings.passage_judge:
            passages = [p for p, _ in PassageJudge(self.generator).ranked(question, passages, turns)]
        long_answer = self.settings.long_answer_tokens if kind != "fact" else None
        excerpts = self.trimmer.trim(retrieval_queries(question, turns)[0], passages)
        style = self.settings.answer_style
        prompt = build_prompt(question, excerpts, turns, style, kind, long_answer, whole=passages)
        lacking = self._lacking_states(prompt)
        if lacking is not None and self.generator.passage_states is not None:  # read whole, as without states
            prompt = dataclasses.replace(prompt, passages=())
        passages = excerpts
        yield Sources(passages, kind)
        pieces: list[str] = []
        stream = self.generator.stream(prompt, cancel)
        for piece in stream:
            if not pieces:
                timings.first_token_ms = elapsed()
            pieces.append(piece)
            yield piece
            if kind != "fact" and "\n" in piece and _repeats_a_line("".join(pieces)):
                stream.close()  # greedy decoding has begun to loop over its list; the rest would be the same
                break
        if cancel is not None and cancel.is_set():
            return  # nobody waits for this answer: skip its checks and give the model to the next question
        draft = "".join(pieces).strip()

        verified, refusal = self._checked(question, draft, passages, turns, kind)
        if refusal and kind == "fact" and self.settings.second_attempt:
            retried = self._second_attempt(question, passages, turns, refusal, cancel)
            if cancel is not None and cancel.is_set():
                return
            if retried is not None:
                verified, refusal = retried, None
        timings.total_ms = elapsed()
        if lacking is not None and self.state_worker is not None:
            # made now, in the background, for the next question that reads these passages
            self.state_worker.submit(functools.partial(self.generator.store_passage_states, lacking))
        if refusal:
            step, text = refusal
            yield Answer(question, text, [], timings, passages, step, kind)
            return
        yield Answer(question, verified.text, verified.citations, timings, passages, kind=kind)

    def _checked(
        self, question: str, draft: str, passages: list[Passage], turns: list[Turn], kind: QuestionKind
    ) -> tuple[VerifiedAnswer, tuple[AbstainedBy, str] | None]:
        """The draft's citations verified (a yes/no answer first revised by its evidence), and the first step
        after generation that refuses it (None when all let it through)."""
        verified = self.verifier.verify(draft, passages, question, kind != "fact", self.claim_judge)
        if (
            kind == "fact"
            and self.yes_no
            and (revised := self.yes_no.revise(question, draft, verified, passages, turns))
        ):
            draft, verified = revised, self.verifier.verify(revised, passages, question, False, self.claim_judge)
        case = Case(question, passages, turns, draft, verified)
        return verified, first_refusal(self.checks, case, before_generation=False)

    def _second_attempt(
        self,
        question: str,
        passages: list[Passage],
        turns: list[Turn],
        refusal: tuple[AbstainedBy, str],
        cancel: threading.Event | None,
    ) -> VerifiedAnswer | None:
        """Before refusing, write once more from the one passage the model judges as answering the question,
        told why the first answer was refused, and check that answer the same way.

        None (refuse after all) when the refusing step is not one to retry, no passage is judged as
        answering (the answer check's own bound), or the second answer is refused too.
        """
        reason = next((check.reason for check in self.checks if check.name == refusal[0]), "")
        if not reason:
            return None
        best, odds = PassageJudge(self.generator).ranked(question, passages, turns)[0]
        if odds < self.settings.answer_check_min_log_odds:
            return None
        prompt = build_prompt(question, [best], turns, self.settings.answer_style, refused_because=reason)
        pieces = self.generator.stream(dataclasses.replace(prompt, passages=()), cancel)  # read whole
        # cited as [1] in its own prompt: renumbered to where the passage stands among those shown
        draft = MARKER.sub(f" [{passages.index(best) + 1}]", "".join(pieces)).strip()
        verified, again = self._checked(question, draft, passages, turns, "fact")
        return None if again else verified

    def _lacking_states(self, prompt: Prompt) -> Prompt | None:
        """None when the engine has the state of every passage of the prompt (the excerpts are then placed from
        them); else the prompt whose passages' states are to be made.

        A question is read from states only when all of its passages have one, so that its answer does
        not depend on which states happened to be made first.
        """
        if self.generator.passage_states is None or not prompt.passages:
            return prompt
        return prompt if self.generator.missing_passage_states(prompt) else None

    def _refused_before_generation(
        self,
        question: str,
        passages: list[Passage],
        turns: list[Turn],
        kind: QuestionKind,
        timings: Timings,
        elapsed: Callable[[], float],
    ) -> list[AnswerEvent]:
        """The refusal's text and its `Answer` when a step before generation refuses; none when all let it pass."""
        refusal = first_refusal(self.checks, Case(question, passages, turns), before_generation=True)
        if not refusal:
            return []
        step, text = refusal
        timings.first_token_ms = timings.total_ms = elapsed()
        return [text, Answer(question, text, [], timings, passages, step, kind)]

    def _answer_collection(
        self, question: str, timings: Timings, elapsed: Callable[[], float]
    ) -> Iterator[AnswerEvent]:
        """What the collection holds, read from the index itself: each document's title, cited at its opening."""
        documents = self.documents()
        shown = documents[: self.settings.max_listed_documents]
        passages = [self._opening_passage(d) for d in shown]
        lines = [
            f"The collection holds {len(documents)} document{'s' * (len(documents) != 1)}" + (":" if shown else ".")
        ]
        lines += [f"- {p.title} [{n}]" for n, p in enumerate(passages, start=1)]
        if len(documents) > len(shown):
            lines.append(f"- and {len(documents) - len(shown)} more")
        text = "\n".join(lines)
        timings.retrieve_ms = timings.first_token_ms = elapsed()
        yield Sources(passages, "collection")
        yield text
        citations = [_whole_citation(n, p) for n, p in enumerate(passages, start=1)]
        timings.total_ms = elapsed()
        yield Answer(question, text, citations, timings, passages, kind="collection")

    def _answer_summary(
        self,
        question: str,
        turns: list[Turn],
        timings: Timings,
        elapsed: Callable[[], float],
        cancel: threading.Event | None,
    ) -> Iterator[AnswerEvent]:
        """One or two checked sentences per document the question names (or all of them), from kept summaries."""
        documents, retrieved = self._summary_documents(question, turns)
        timings.retrieve_ms = elapsed()
        passages = [self._document_passage(d) for d in documents]
        # The same steps as before a fact's answer: a summary of what a search finds, if anything, and never one
        # about someone or something the documents it would summarise do not name ("Summarize what Satya Nadella
        # said about open-source AI" matches the open-source articles by title, but none of them names him).
        refused = self._refused_before_generation(
            question, passages if retrieved is None else retrieved, turns, "summary", timings, elapsed
        )
        if refused:
            yield from refused
            return
        yield Sources(passages, "summary")
        count = len(documents)
        sentences = 1 if _ONE_SENTENCE.search(question) else 2
        parts = []
        for n, document in enumerate(documents, start=1):
            if count > 1:
                yield f"- {document.title}: "
            pieces = []
            for piece in self.summaries.summarize(document, self.generator, cancel):
                if not timings.first_token_ms:
                    timings.first_token_ms = elapsed()  # the first words of a summary, kept or being written
                pieces.append(piece)
                yield piece
            if cancel is not None and cancel.is_set():
                return
            yield "\n"
            cited = " ".join(f"{sentence} [{n}]" for sentence in _sentences("".join(pieces).strip())[:sentences])
            parts.append(f"- {document.title}: {cited}" if count > 1 else cited)
        verified = self.verifier.verify("\n".join(parts), passages, question, each_sentence=True)
        timings.total_ms = elapsed()
        if not verified.citations:
            text = ABSTAIN_TEXT
            yield Answer(question, text, [], timings, passages, "citations", "summary")
            return
        yield Answer(question, verified.text, verified.citations, timings, passages, kind="summary")

    def _summary_documents(self, question: str, turns: list[Turn]) -> tuple[list[Document], list[Passage] | None]:
        """The documents a summary is of; when the question names none, the best match of a search for it.

        The passages that search found come back too (the checks read them); None when no search was made.
        """
        documents = self.documents()
        named = documents_named(question, documents)
        if named is not None:
            return named[: self.settings.max_summary_documents], None
        retrieved = self.retrieve(question, self.settings.top_k, turns)
        best = [self.store.document(p.chunk.doc_id) for p in retrieved[:1]]
        return best, retrieved

    def summarize_documents(self, progress: bool = False) -> int:
        """Write the summary of every indexed document that has none kept (`rag index --summaries`); how many."""
        documents = self.documents()
        self.summaries.keep_only(d.doc_id for d in documents)
        missing = [d for d in documents if self.summaries.get(d.doc_id) is None]
        for document in tqdm(missing, desc="summaries", unit="doc", disable=not progress):
            for _ in self.summaries.summarize(document, self.generator):
                pass
        return len(missing)

    def _opening_passage(self, document: Document) -> Passage:
        chunk = (
            self.chunker.split(document)[0]
            if document.text
            else Chunk(f"{document.doc_id}:0", document.doc_id, 0, "", 0, 0)
        )
        return Passage(chunk, document.title, document.source, 1.0, 1.0, document.places_in(chunk.start, chunk.end))

    @staticmethod
    def _document_passage(document: Document) -> Passage:
        """A whole document as one passage: a summary sentence is checked against all of it."""
        chunk = Chunk(f"{document.doc_id}:all", document.doc_id, 0, document.text, 0, len(document.text))
        return Passage(chunk, document.title, document.source, 1.0, 1.0, document.places_in(chunk.start, chunk.end))

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


def _sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]


def _whole_citation(n: int, passage: Passage) -> Citation:
    """A citation of the passage as a whole (a document's opening, named in a listing)."""
    chunk = passage.chunk
    return Citation(
        n, chunk.doc_id, passage.title, passage.source, chunk.start, chunk.end, chunk.text, 1.0, chunk.start, chunk.end
    )


def _repeats_a_line(text: str) -> bool:
    """The last finished line of a draft is one it already wrote."""
    lines = [line.strip() for line in text.split("\n")[:-1]]
    return len(lines) >= 2 and bool(lines[-1]) and lines[-1] in lines[:-1]
