"""Typed records that flow through the pipeline, from a file on disk to a cited answer."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

AnswerStyle = Literal["sentence", "short"]  # how answers are worded; see rag.answering.prompts.SYSTEM_PROMPTS
# What kind of question, which decides what its answer is written from (rag.answering.kinds).
QuestionKind = Literal["fact", "summary", "comparison", "list", "collection"]

# Which abstention step refused to answer (rag.answering.checks), so evaluations can say where answers are
# lost: before the model (passages off topic; a name or number of the question missing from them), the
# model itself, or a check of its draft (citations unsupported; a sentence saying the opposite of what it
# cites; another person's words; a question name missing from the cited documents; the model's own yes/no
# check; a yes/no answer against the model's read of its evidence). In the order the steps run.
AbstainedBy = Literal[
    "off topic",
    "names missing",
    "model",
    "citations",
    "contradiction",
    "wrong speaker",
    "cited names",
    "answer check",
    "polarity",
]


@dataclass(frozen=True)
class Place:
    """Where a page, slide or sheet starts in a document's text, and how a citation names it ("p. 4")."""

    start: int
    label: str


def places_of(raw: Any) -> tuple[Place, ...]:
    """Places as read back from JSON (documents.jsonl, a jsonb column): dicts or `[start, label]` pairs."""
    return tuple(p if isinstance(p, Place) else Place(**p) if isinstance(p, dict) else Place(*p) for p in raw or ())


def label_at(places: tuple[Place, ...], offset: int) -> str:
    """The label of the place holding `offset`; "" when the format has none, or before the first."""
    index = bisect_right([p.start for p in places], offset) - 1
    return places[index].label if index >= 0 else ""


@dataclass(frozen=True)
class Document:
    """A whole source file as text; `doc_id` is the sha256 of the text, so edits change it.

    `places` (in order of `start`) say which page, slide or sheet each part of the text came from; a
    format without pages has none.
    """

    doc_id: str
    title: str
    source: str
    text: str
    places: tuple[Place, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "places", places_of(self.places))

    def place_at(self, offset: int) -> str:
        """The page, slide or sheet holding `offset`; "" for a format without places."""
        return label_at(self.places, offset)

    def places_in(self, start: int, end: int) -> tuple[Place, ...]:
        """The places a span of the text lies on: the one holding `start`, and each that starts before `end`."""
        first = max(0, bisect_right([p.start for p in self.places], start) - 1)
        return tuple(p for p in self.places[first:] if p.start < end)


@dataclass(frozen=True)
class Chunk:
    """A span of a document; `text == document.text[start:end]` always holds."""

    chunk_id: str
    doc_id: str
    index: int
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with what a reader needs to cite it.

    `score` orders passages (fused rank score); `relevance` is the query-chunk cosine, comparable
    across queries, so it can tell whether the documents talk about the question at all.
    """

    chunk: Chunk
    title: str
    source: str
    score: float
    relevance: float
    places: tuple[Place, ...] = ()  # the document's pages/slides/sheets this chunk spans (`Document.places_in`)

    @property
    def place(self) -> str:
        """The page, slide or sheet the chunk starts on ("p. 4"), shown beside the title."""
        return label_at(self.places, self.chunk.start)

    def place_at(self, offset: int) -> str:
        """The page, slide or sheet holding document offset `offset` (a cited quote's start)."""
        return label_at(self.places, offset)

    @property
    def shown_text(self) -> str:
        """The passage as the model sees it, and as every check reads it: its document title, then its text."""
        return f"{self.title}\n{self.chunk.text}"


@dataclass(frozen=True)
class PassageSegment:
    """One numbered passage as a prompt writes it: `lead + body`, verbatim and in order in one message.

    The passage's whole text (`source`, or `body` itself when it is whole) is the same whichever question
    retrieves it, so an engine may compute its keys and values once (rag.generation.passage_states),
    right after the prompt's head; `body` is that text or an excerpt of it starting at `offset`, and an
    engine places only the excerpt's part of the state. The `lead` ("[2] Title") depends on where the
    passage stands in the prompt and is read in place every time.
    """

    lead: str
    body: str
    source: str = ""
    offset: int = 0

    @property
    def whole(self) -> str:
        return self.source or self.body


@dataclass(frozen=True)
class Prompt:
    """Chat messages for the model, and how many lead them unchanged from question to question.

    The first `fixed` messages (the system prompt, any worked examples) are the same for every
    question, so the generator computes their keys and values once; the count travels with the
    messages because only the code that wrote them knows it. `passages` are the numbered passages
    the messages contain, for engines that keep passage states.
    """

    messages: list[dict[str, str]]
    fixed: int = 1
    max_new_tokens: int | None = None  # a longer answer form (a list, a comparison) than the engine's default
    passages: tuple[PassageSegment, ...] = ()


@dataclass(frozen=True)
class Sources:
    """The passages an answer is being written from, sent before the model starts.

    On a slow CPU the model's first word can take seconds; the reader sees at once what it reads.
    Numbered as the prompt numbers them, so they are the `[n]` an answer may cite.
    """

    passages: list[Passage]
    kind: QuestionKind = "fact"  # what the passages are read for, said in `describe`

    def to_dict(self) -> dict[str, Any]:
        return {
            "activity": self.describe(),
            "sources": [
                {
                    "n": n,
                    "doc_id": p.chunk.doc_id,
                    "title": p.title,
                    "source": p.source,
                    "place": p.place,
                    "start": p.chunk.start,
                    "end": p.chunk.end,
                    "text": p.chunk.text,
                }
                for n, p in enumerate(self.passages, start=1)
            ],
        }

    def describe(self) -> str:
        """ "Reading 4 passages from 2 documents", "Summarising 4 documents": what the reader waits for."""
        documents = len({p.chunk.doc_id for p in self.passages})
        passages = len(self.passages)
        of_documents = f"{documents} document{'s' * (documents != 1)}"
        from_passages = f"{passages} passage{'s' * (passages != 1)} from {of_documents}"
        return {
            "summary": f"Summarising {of_documents}",
            "collection": f"Listing {of_documents}",
            "comparison": f"Comparing the sides in {from_passages}",
            "list": f"Gathering items from {from_passages}",
        }.get(self.kind, f"Reading {from_passages}")


@dataclass(frozen=True)
class Citation:
    """Evidence for an answer sentence: passage [n], where it sits in its document, and the quote in it.

    `text == document.text[start:end]` is the whole passage; `quote_start:quote_end` (also document
    offsets) is the sentence inside it that best supports the claim, for highlighting.
    """

    n: int
    doc_id: str
    title: str
    source: str
    start: int
    end: int
    text: str
    score: float
    quote_start: int
    quote_end: int
    place: str = ""  # "p. 4", "slide 3", "sheet Budgets 2027": where in the file, when the format has places


# What kind of problem skipped a file: the label /metrics counts ingest errors by.
IngestErrorKind = Literal[
    "unsupported", "too_large", "empty", "no_text", "encoding", "encrypted", "corrupt", "duplicate", "unreadable"
]


@dataclass(frozen=True)
class IngestError:
    """Why one file was skipped; the rest of a batch goes on."""

    path: str
    reason: str
    kind: IngestErrorKind = "unreadable"

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class Timings:
    retrieve_ms: float = 0.0
    first_token_ms: float = 0.0
    total_ms: float = 0.0


@dataclass
class Answer:
    question: str
    answer: str
    citations: list[Citation] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    passages: list[Passage] = field(default_factory=list)
    abstained_by: AbstainedBy | None = None  # the step that refused to answer; None for an answer
    kind: QuestionKind = "fact"  # what the answer was written from (rag.answering.kinds)

    @property
    def abstained(self) -> bool:
        return self.abstained_by is not None

    def to_dict(self) -> dict[str, Any]:
        """The public JSON shape shared by `rag ask --json` and the HTTP API."""
        return {
            "question": self.question,
            "answer": self.answer,
            "abstained": self.abstained,
            "abstained_by": self.abstained_by,
            "kind": self.kind,
            "citations": [asdict(c) for c in self.citations],
            "timings": {k: round(v, 1) for k, v in asdict(self.timings).items()},
        }


# What `Assistant.ask_stream` yields: the passages being read, pieces of the draft, then the checked answer.
AnswerEvent = Sources | str | Answer


@dataclass(frozen=True)
class Turn:
    """One exchange of a conversation, used to resolve follow-up questions."""

    question: str
    answer: str

    def clipped(self, chars: int) -> Turn:
        """The turn with its question and answer cut to `chars` each: an earlier turn is context for a
        follow-up, and a pasted essay in the history would otherwise overflow the model's context."""
        return Turn(self.question[:chars], self.answer[:chars])
