"""The OpenAI-compatible engine: generation on a model server the team already runs.

vLLM, llama.cpp's server, TGI and Ollama all serve `/v1/chat/completions`; the official `openai` client
speaks to any of them. The prompt's messages go as they are, the fixed system prompt first, so a server
with a prefix cache (vLLM, llama.cpp) reuses its keys and values across questions. Decoding is greedy
(temperature 0). A cancelled answer closes the stream, which makes these servers stop generating.

The yes/no checks need log P(yes) - log P(no) of the first reply token: from `top_logprobs` where the
server gives them; where it does not, from a one-token reply ("yes" or "no"), which is a verdict without
a margin (`yes_no_method` says which one is used). The model server, not this process, holds the model,
so the answer service lets several answers run at once (`max_concurrent_generations`).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import threading
from collections.abc import Iterator
from functools import cached_property
from typing import Any, Literal

import httpx
import openai

from rag.dependencies import ModelServerUnavailable
from rag.generation.base import GenerationEngine
from rag.models import ModelError
from rag.types import Prompt

TOP_LOGPROBS = 20
# The log-odds a one-token "yes" or "no" reply stands for, where the server gives no logprobs: beyond the
# margins the checks compare against, so the verdict counts, without pretending to a measured confidence.
REPLY_LOG_ODDS = 8.0
PING_TIMEOUT_S = 1.5  # /readyz: a server that cannot list its models this fast is not answering questions
CHARS_PER_TOKEN = 4  # for servers without a tokenize endpoint: only tokens/s figures use the count
# What a stream broken off mid-answer raises: the error of the HTTP library the client is built on (httpx for
# openai 1.x, httpx2 for 3.x), which the client does not wrap once the stream has begun.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError,) + (
    (importlib.import_module("httpx2").HTTPError,) if importlib.util.find_spec("httpx2") else ()
)


class OpenAIEngine(GenerationEngine):
    """A client of one model on one server; cheap to construct, `load` checks the server and the model."""

    name = "openai"

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None,
        max_new_tokens: int,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.max_new_tokens = max_new_tokens
        # read: the wait for the first token and between two tokens; a hung server fails within it. The client's
        # own Timeout type: openai 1.x builds on httpx and refuses nothing else, 3.x on httpx2 and refuses httpx's.
        self.timeout = openai.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._api_key = api_key
        self.yes_no_method: Literal["logprobs", "reply"] | None = None  # found on the first yes/no question
        self._server_counts = True  # until the server shows it has no tokenize endpoint

    @cached_property
    def _client(self) -> openai.OpenAI:
        # The local servers need no key, but the client insists on one. No retries: a retry would double the
        # bound a caller waits on a hung server, and the caller's own retry (after Retry-After) is the better one.
        return openai.OpenAI(base_url=self.url, api_key=self._api_key or "none", timeout=self.timeout, max_retries=0)

    def load(self) -> None:
        """Fail at start, with the address, if the server is down or does not serve `model`."""
        try:
            served = [m.id for m in self._client.models.list()]
        except openai.APIError as exc:
            raise ModelError(
                f"the model server at {self.url} did not answer ({exc}); is it running? (setting engine_url)"
            ) from exc
        if served and self.model not in served:
            raise ModelError(f"the model server at {self.url} serves {', '.join(served)}, not {self.model!r}")

    def ping(self) -> None:
        """The server lists its models within `PING_TIMEOUT_S`, or it is reported down."""
        try:
            self._client.with_options(timeout=PING_TIMEOUT_S).models.list()
        except openai.APIError as exc:
            raise ModelServerUnavailable(f"the model server at {self.url} does not answer ({exc})") from exc

    def stream(self, prompt: Prompt, cancel: threading.Event | None = None) -> Iterator[str]:
        with self._completion(prompt, prompt.max_new_tokens or self.max_new_tokens, stream=True) as reply:
            try:
                for chunk in reply:
                    if cancel is not None and cancel.is_set():
                        break  # leaving the block closes the stream: the server stops generating
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
            except (openai.APIError, *TRANSPORT_ERRORS) as exc:
                raise ModelServerUnavailable(f"the model server at {self.url} broke off the answer ({exc})") from exc

    def yes_log_odds(self, prompt: Prompt) -> float:
        text = None
        if self.yes_no_method != "reply":
            try:
                reply = self._completion(prompt, 1, logprobs=True, top_logprobs=TOP_LOGPROBS)
            except ModelServerUnavailable as exc:
                if self.yes_no_method == "logprobs" or not exc.refused:
                    raise
                reply = None  # refused outright, as llama-cpp-python's server without logits_all does
            odds = _log_odds(reply) if reply is not None else None
            if odds is not None:
                self.yes_no_method = "logprobs"
                return odds
            self.yes_no_method = "reply"
            print(f"rag: {self.url} gives no logprobs; the yes/no checks read a one-token reply", file=sys.stderr)
            text = (reply.choices[0].message.content or "") if reply is not None else None
        if text is None:
            text = self._completion(prompt, 1).choices[0].message.content or ""
        word = text.strip().lower()
        return REPLY_LOG_ODDS if word.startswith("yes") else -REPLY_LOG_ODDS if word.startswith("no") else 0.0

    def count_tokens(self, text: str) -> int:
        """The server's own count where it has llama-cpp-python's endpoint, else an estimate (4 characters)."""
        if self._server_counts:
            try:
                response = httpx.post(
                    f"{self.url.removesuffix('/v1')}/extras/tokenize/count",
                    json={"input": text},
                    headers=self._headers,
                    timeout=10,
                )
                if response.status_code == 200:
                    return int(response.json()["count"])
                self._server_counts = response.status_code not in (404, 405)
            except (httpx.HTTPError, KeyError, ValueError):
                pass
        return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _completion(self, prompt: Prompt, max_tokens: int, **options: Any) -> Any:
        try:
            return self._client.chat.completions.create(
                model=self.model,
                messages=prompt.messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=0.0,
                **options,
            )
        except openai.APITimeoutError as exc:
            raise ModelServerUnavailable(
                f"the model server at {self.url} did not answer within {self.timeout.read:g} s"
            ) from exc
        except openai.APIConnectionError as exc:
            raise ModelServerUnavailable(f"the model server at {self.url} is unreachable ({exc})") from exc
        except openai.APIStatusError as exc:
            raise ModelServerUnavailable(
                f"the model server at {self.url} refused the request: {exc.message}", refused=True
            ) from exc


def _log_odds(reply: Any) -> float | None:
    """log P(yes) - log P(no) from the first token's top logprobs (any case or spacing); None if there are none.

    A word missing from the top list is given the lowest listed logprob, an upper bound on its own.
    """
    logprobs = reply.choices[0].logprobs
    if logprobs is None or not logprobs.content or not logprobs.content[0].top_logprobs:
        return None
    top = logprobs.content[0].top_logprobs
    floor = min(t.logprob for t in top)
    mass = {"yes": [], "no": []}
    for candidate in top:
        word = candidate.token.strip().lower()
        if word in mass:
            mass[word].append(candidate.logprob)

    def total(word: str) -> float:
        values = mass[word] or [floor]
        return max(values) + math.log(sum(math.exp(v - max(values)) for v in values))

    return total("yes") - total("no")
