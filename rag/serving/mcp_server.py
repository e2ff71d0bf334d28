"""The MCP server (the official `mcp` SDK): agents and IDEs ask the assistant and search the documents.

Tools: `ask` (a question, optionally the conversation so far -> the checked answer, its citations,
whether and why it abstained, its timings) and `search` (a query and k -> passages with their document spans).
Resources: every indexed document as `rag://documents/{doc_id}` (its text). Both tools are thin callers
of the one `AnswerService`, so `ask` waits in the same line as the UI's questions, is refused when too
many wait, and stops generating when the client cancels the call. Served over stdio (`rag mcp`) and
over streamable HTTP at `/mcp` on the app.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import Resource
from pydantic import BaseModel, Field

from rag.assistant import QuestionError
from rag.dependencies import RETRY_AFTER_S, DependencyUnavailable
from rag.serving.schemas import CitationOut, TimingsOut
from rag.serving.service import AnswerService, Busy
from rag.serving.streaming import run_in_thread
from rag.types import Answer, Turn

DOCUMENT_URI = "rag://documents/{doc_id}"
MAX_SEARCH_K = 50


class ConversationTurn(BaseModel):
    question: str
    answer: str


class AskResult(BaseModel):
    answer: str
    citations: list[CitationOut]
    abstained: bool
    abstained_by: str | None = Field(description="The check that refused to answer; null for an answer")
    timings: TimingsOut = Field(description="Milliseconds to retrieval done, the first token, the checked answer")


class PassageOut(BaseModel):
    doc_id: str
    title: str
    source: str
    start: int
    end: int
    text: str
    score: float


class _AssistantServer(MCPServer):
    """Lists the indexed documents as resources, read through the `rag://documents/{doc_id}` template."""

    def __init__(self, service: AnswerService) -> None:
        super().__init__(
            name="rag",
            instructions="Answers questions from the indexed documents only, citing where each claim comes from, "
            "and says so when the documents do not answer. `search` returns matching passages.",
        )
        self.service = service

    async def list_resources(self) -> list[Resource]:
        documents = await asyncio.to_thread(self.service.assistant.documents)
        listed = [
            Resource(
                uri=DOCUMENT_URI.format(doc_id=d.doc_id),
                name=d.title or d.source,
                description=d.source,
                mime_type="text/plain",
            )
            for d in documents
        ]
        return [*await super().list_resources(), *listed]


def build_mcp_server(service: AnswerService) -> MCPServer:
    server = _AssistantServer(service)

    @server.tool(description="Answer a question from the indexed documents, with checked citations.")
    async def ask(question: str, conversation: list[ConversationTurn] | None = None) -> AskResult:
        history = [Turn(t.question, t.answer) for t in conversation or []]
        cancel = threading.Event()
        try:
            events = service.stream(question, history, cancel)
        except (QuestionError, Busy) as exc:
            raise ToolError(str(exc)) from None
        answer = None
        try:
            async for event in run_in_thread(events, cancel):  # a cancelled call closes this: the generation stops
                if isinstance(event, Answer):
                    answer = event
        except DependencyUnavailable as exc:  # the tool's error, naming the part, as HTTP's 503 does
            raise ToolError(f"unavailable, retry in {RETRY_AFTER_S} s: {exc}") from None
        if answer is None:
            raise ToolError("the answer was cancelled")
        return AskResult(
            answer=answer.answer,
            citations=[CitationOut(**asdict(c)) for c in answer.citations],
            abstained=answer.abstained,
            abstained_by=answer.abstained_by,
            timings=TimingsOut(**asdict(answer.timings)),
        )

    @server.tool(description="The passages of the indexed documents that best match a query, with their spans.")
    async def search(query: str, k: int = 5) -> list[PassageOut]:
        if not 1 <= k <= MAX_SEARCH_K:
            raise ToolError(f"k must be between 1 and {MAX_SEARCH_K}")
        try:
            passages = await asyncio.to_thread(service.search, query, k)
        except QuestionError as exc:
            raise ToolError(str(exc)) from None
        except DependencyUnavailable as exc:
            service.readiness.failed(exc)
            raise ToolError(f"unavailable, retry in {RETRY_AFTER_S} s: {exc}") from None
        return [
            PassageOut(
                doc_id=p.chunk.doc_id,
                title=p.title,
                source=p.source,
                start=p.chunk.start,
                end=p.chunk.end,
                text=p.chunk.text,
                score=p.score,
            )
            for p in passages
        ]

    @server.resource(DOCUMENT_URI, name="document", description="An indexed document's text", mime_type="text/plain")
    async def document(doc_id: str) -> str:
        try:
            return (await asyncio.to_thread(service.assistant.store.document, doc_id)).text
        except KeyError:
            raise ValueError(f"no document {doc_id} in the index") from None

    return server
