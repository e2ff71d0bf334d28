"""What the HTTP API accepts and returns, as models: the OpenAPI document at /openapi.json is built from them.

The document is meant to be true, so that a client generated from it works: the requests' constraints are
the server's own (a question must have a non-blank character and at most `max_question_chars`), every
status a route can answer is listed with its body, and the security the server's settings ask for is
stated. schemathesis checks it against the running server in the tests (tests/test_openapi.py).
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, model_validator

from rag.serving.errors import is_openai_path
from rag.settings import Settings
from rag.types import AbstainedBy, QuestionKind

MAX_HISTORY_TURNS = 50
MAX_EARLIER_ANSWER_CHARS = 8000
NOT_BLANK = r"\S"  # what `Assistant.check_question` needs: any character that is not whitespace


def question_text(settings: Settings, description: str) -> Any:
    """A question as the assistant takes it: a non-blank character, at most `max_question_chars`."""
    return Annotated[
        str,
        StringConstraints(pattern=NOT_BLANK, max_length=settings.max_question_chars),
        Field(description=description),
    ]


# ---- /api requests ---------------------------------------------------------------------------------


class TurnIn(BaseModel):
    model_config = ConfigDict(strict=True)  # requests are JSON: 0 is not false, nor 1 a string

    question: str = Field(max_length=MAX_EARLIER_ANSWER_CHARS)
    answer: str = Field(max_length=MAX_EARLIER_ANSWER_CHARS)


class AskRequestBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: str
    history: list[TurnIn] = Field(
        default_factory=list, max_length=MAX_HISTORY_TURNS, description="Earlier exchanges, oldest first."
    )


def ask_request_model(settings: Settings) -> type[AskRequestBase]:
    """The body of /api/ask with this server's question limit in its schema."""
    question = question_text(settings, "The question; follow-ups may rely on `history`.")
    return create_model("AskRequest", __base__=AskRequestBase, question=(question, ...))


# ---- /api responses --------------------------------------------------------------------------------


class CitationOut(BaseModel):
    n: int = Field(description="The passage number the answer's [n] marker refers to.")
    doc_id: str
    title: str
    source: str
    start: int = Field(description="Offset of the passage in the document's text.")
    end: int
    text: str = Field(description="The whole passage: the document's text[start:end].")
    score: float
    quote_start: int = Field(description="Offsets (in the document) of the sentence that supports the claim.")
    quote_end: int
    place: str = Field(
        "",
        description='The page, slide or sheet the quote is on ("p. 4", "slide 3", "sheet Budgets 2027"); '
        "empty for a format without pages.",
    )


class TimingsOut(BaseModel):
    retrieve_ms: float
    first_token_ms: float
    total_ms: float


class AnswerOut(BaseModel):
    """The checked answer, as `rag ask --json` prints it."""

    question: str
    answer: str
    abstained: bool
    abstained_by: AbstainedBy | None = Field(description="The check that refused to answer; null for an answer.")
    kind: QuestionKind
    citations: list[CitationOut]
    timings: TimingsOut


class DocumentSummary(BaseModel):
    doc_id: str
    title: str
    source: str
    chunks: int
    chars: int


class DocumentOut(BaseModel):
    doc_id: str
    title: str
    source: str
    text: str


class FileStatus(BaseModel):
    name: str = Field(description="The file name the upload gave.")
    source: str = Field(description="Where the file is kept and indexed from, under the upload folder.")
    status: Literal["added", "changed", "unchanged", "error"]
    detail: str = Field(description="Why the file was refused, for status error.")


class UploadOut(BaseModel):
    files: list[FileStatus]
    documents: int = Field(description="Documents in the index afterwards.")


class Health(BaseModel):
    status: Literal["ok"]
    documents: int
    waiting: int = Field(description="Questions waiting for a generation slot.")


# ---- errors ----------------------------------------------------------------------------------------


class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong, for a person.")
    request_id: str | None = Field(description="The X-Request-ID of the request, as in the server log.")


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None
    request_id: str | None


class OpenAIErrorOut(BaseModel):
    error: OpenAIErrorDetail


ERROR_MEANINGS = {
    400: "The request is not valid JSON (or, under /v1, not a valid request).",
    401: "Missing or wrong API key (or admin token).",
    403: "Refused: the calling page is off `allowed_origins`, or uploads are disabled.",
    404: "No such document (or model).",
    413: "The request body is over the size limit.",
    422: "The request does not match this schema, or the question is unusable.",
    429: "Too many wrong keys or tokens from this client: wait for Retry-After seconds.",
    500: "Internal error; the server log has the details under the request id.",
    503: "Busy (every generation slot and queue place taken, or the question waited `max_queue_wait_s` for a "
    "turn: retry after Retry-After seconds), or the index is unusable.",
    507: "The index could not be written: its disk is full or read-only (the message names it); the previous "
    "index is unchanged and still served.",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def error_responses(*statuses: int, openai: bool = False) -> dict[int | str, dict[str, Any]]:
    """The `responses` entries of the refusals a route can answer, with their bodies and headers."""
    model = OpenAIErrorOut if openai else ErrorOut
    entries: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": model, "description": ERROR_MEANINGS[status]}
        if status in (429, 503):
            entry["headers"] = RETRY_AFTER
        entries[status] = entry
    return entries


def event_stream(names: tuple[str, ...] | None, description: str) -> dict[str, Any]:
    """The `responses` entry of a `text/event-stream` reply: each event's name (`names`; None: unnamed, which
    readers call "message") and its data, a JSON text."""
    event = {"type": "string", "enum": list(names)} if names else {"type": "string", "const": "message"}
    data = {"type": "string", "contentMediaType": "application/json"}
    schema = {"type": "object", "properties": {"event": event, "data": data}, "required": ["data"]}
    return {"description": description, "content": {"text/event-stream": {"schema": schema}}}


# Every route behind the API key can answer these; POST routes also 400 (bad JSON) and 413.
GUARDED = (401, 403, 429, 500)
POSTED = (400, 413, 422)


# ---- /v1 (OpenAI chat completions) -----------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # image_url, ...: accepted in others' messages; text is read

    type: str
    text: str | None = None


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True)

    type: Literal["text"]
    text: str


class OtherMessage(BaseModel):
    """A system, assistant or tool message: assistant replies are the conversation, the rest is not ours to
    follow (the assistant has its own prompt)."""

    model_config = ConfigDict(extra="allow", strict=True)  # name, tool_calls, ...: accepted, not used

    role: Literal["system", "developer", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class UserMessageBase(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["user"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else self.content[0].text


class ChatCompletionRequestBase(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # temperature, ...: accepted; answers are greedy, checked

    model: str = Field(description="`rag` (GET /v1/models)", json_schema_extra={"enum": ["rag"]})
    messages: list[Any]
    stream: bool = False

    @model_validator(mode="after")
    def _asks_something(self) -> ChatCompletionRequestBase:
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("the messages hold no user message: there is no question to answer")
        return self

    def question_and_history(self) -> tuple[str, list[tuple[str, str]]]:
        """The last user message's text, and the (question, reply) pairs of user and assistant before it."""
        asked = max(i for i, m in enumerate(self.messages) if m.role == "user")
        talk = [m for m in self.messages[:asked] if m.role in ("user", "assistant")]
        pairs = [
            (question.text(), reply.text())
            for question, reply in itertools.pairwise(talk)
            if question.role == "user" and reply.role == "assistant"
        ]
        return self.messages[asked].text(), pairs


def chat_request_model(settings: Settings) -> type[ChatCompletionRequestBase]:
    """The body of /v1/chat/completions. The last user message is the question, so every user message is one:
    text (a string, or a list of one text part: images are not read) with a non-blank character and at most
    `max_question_chars`; the messages before the last user message are the conversation."""
    question = question_text(settings, "A question (the last user message is the one asked).")
    part = create_model("QuestionPart", __base__=TextPart, text=(question, ...))
    content = question | Annotated[list[part], Field(min_length=1, max_length=1)]  # type: ignore[valid-type]
    user = create_model("UserMessage", __base__=UserMessageBase, content=(content, ...))
    message = Annotated[user | OtherMessage, Field(discriminator="role")]  # type: ignore[valid-type]
    messages = Annotated[
        list[message],  # type: ignore[valid-type]
        Field(
            min_length=1,
            max_length=2 * MAX_HISTORY_TURNS + 1,
            description="The conversation, oldest first, with at least one user message.",
            json_schema_extra={"contains": {"type": "object", "properties": {"role": {"const": "user"}}}},
        ),
    ]
    return create_model("ChatCompletionRequest", __base__=ChatCompletionRequestBase, messages=(messages, ...))


class RagFields(BaseModel):
    """What a citation-aware client reads: the checked answer without the Sources list, and its evidence."""

    answer: str
    citations: list[CitationOut]
    abstained: bool
    abstained_by: AbstainedBy | None
    kind: QuestionKind
    timings: TimingsOut
    revised: bool | None = Field(
        default=None, description="Streaming only: the checks changed the draft that was streamed."
    )


class ReplyMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class Choice(BaseModel):
    index: int
    message: ReplyMessage
    finish_reason: Literal["stop"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    rag: RagFields


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


# ---- the document itself ---------------------------------------------------------------------------

REQUEST_ID = {"X-Request-ID": {"description": "The request's id, as in the server log.", "schema": {"type": "string"}}}
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "The API key as a bearer token."},
    "AdminToken": {"type": "apiKey", "in": "header", "name": "X-Admin-Token"},
}
UPLOAD = ("/api/documents", "post")


def describe_api(app: FastAPI, settings: Settings) -> None:
    """Complete FastAPI's OpenAPI document with what its routes cannot say themselves: the security this
    server's settings ask for (the API key as a header or bearer token; uploads also need the admin token),
    the X-Request-ID header on every response, and validation errors in the shape the server sends them."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {})
        components["securitySchemes"] = SECURITY_SCHEMES
        components.get("schemas", {}).pop("HTTPValidationError", None)
        components.get("schemas", {}).pop("ValidationError", None)
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                operation["security"] = _security(settings, (path, method) == UPLOAD)
                error = "OpenAIErrorOut" if is_openai_path(path) else "ErrorOut"
                for response in operation.get("responses", {}).values():
                    response["headers"] = {**REQUEST_ID, **response.get("headers", {})}
                    for content in response.get("content", {}).values():
                        if content.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                            content["schema"] = {"$ref": f"#/components/schemas/{error}"}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _security(settings: Settings, upload: bool) -> list[dict[str, list[str]]]:
    """Alternatives (any one will do) of schemes that must all be sent; no API key set means none needed."""
    admin = {"AdminToken": []} if upload else {}
    if settings.api_key is None:
        return [admin] if admin else []
    return [{"ApiKey": [], **admin}, {"Bearer": [], **admin}]
