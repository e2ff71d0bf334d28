"""What a local engine's context must hold for a prompt, piece by piece, and how much of it it holds already.

A prompt is planned as pieces of tokens: the fixed messages, text read in place, and passages whose
keys and values can come from their passage state (rag.generation.passage_states). Each token gets an
identity: its id when it is read in place, or its state's key and index when its keys and values come
from a state. Two contexts whose identities agree up to a position hold the same keys and values up to
there (a token read in place depends only on what precedes it, a state's only on itself and where it
is placed), so an engine keeps the longest common prefix and reads or places only the rest. That is
what lets a check ask its yes/no question after the answer already in the context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.generation.passage_states import PassageStateStore, state_key
from rag.types import PassageSegment, Prompt

Render = Callable[[list[dict[str, str]], bool], str]  # (messages, add_generation_prompt) -> the chat template's text
Tokenize = Callable[[str], list[int]]
TokenBytes = Callable[[int], bytes]  # one token's text, as UTF-8 bytes


@dataclass(frozen=True)
class Piece:
    """Tokens the context holds in a row; `state` is the key of the passage state they come from, "" if read.

    A state piece may be part of its state: `first` is the index of its first token there and `of` the
    state's length (an excerpt of a passage places only the excerpt's tokens).
    """

    tokens: list[int]
    state: str = ""
    first: int = 0
    of: int = 0

    def identities(self) -> list[Any]:
        if not self.state:
            return list(self.tokens)
        return [(self.state, self.first + i) for i in range(len(self.tokens))]


@dataclass(frozen=True)
class MissingState:
    """A passage of the prompt without a state: its key, and the head and body its state is computed from."""

    key: str
    head: list[int]
    body: list[int]


@dataclass
class Plan:
    """A prompt as pieces; the first `fixed` tokens are its fixed messages (an engine keeps their state in memory)."""

    pieces: list[Piece]
    fixed: int
    missing: list[MissingState] = field(default_factory=list)

    @property
    def tokens(self) -> list[int]:
        return [t for piece in self.pieces for t in piece.tokens]

    def identities(self) -> list[Any]:
        return [i for piece in self.pieces for i in piece.identities()]

    def reusable(self, held: Sequence[Any], beyond_fixed: bool) -> int:
        """How many leading tokens of a context holding `held` this plan can keep.

        The last token is always read again, for its logits; a state is placed whole, so a common prefix
        ending inside one starts again at its first token; without `beyond_fixed` (an engine without
        passage states) at most the fixed messages are kept, so a prompt is read whole after them.
        """
        wanted = self.identities()
        keep = min(common_prefix(held, wanted), len(wanted) - 1)
        if not beyond_fixed:
            keep = min(keep, self.fixed)
        position = 0
        for piece in self.pieces:
            if piece.state and position < keep < position + len(piece.tokens):
                return position
            position += len(piece.tokens)
        return keep

    def pieces_after(self, keep: int) -> list[tuple[int, Piece]]:
        """The pieces a context holding the first `keep` tokens still needs, each with its position; a piece read
        in place that `keep` cuts is cut there too (`reusable` never cuts a state piece)."""
        todo, position = [], 0
        for piece in self.pieces:
            end = position + len(piece.tokens)
            if end > keep:
                cut = max(0, keep - position)
                todo.append((position + cut, piece if not cut else Piece(piece.tokens[cut:])))
            position = end
        return todo


def plan_prompt(
    prompt: Prompt,
    render: Render,
    tokenize: Tokenize,
    token_bytes: TokenBytes,
    engine_id: str,
    states: PassageStateStore | None,
) -> Plan:
    """The prompt's pieces: with a state store, each passage's body is a state piece where its state exists.

    Without one, or when a passage cannot be found verbatim in the rendered text, the prompt is read
    whole (as one piece after the fixed messages), exactly as without passage states.
    """
    messages = prompt.messages
    full = render(messages, True)
    prefix_text = render(messages[: prompt.fixed], False)
    if not full.startswith(prefix_text):
        prefix_text = ""
    prefix = tokenize(prefix_text) if prefix_text else []
    whole = Plan([Piece(prefix), Piece(tokenize(full[len(prefix_text) :]))], len(prefix))
    if states is None or not prompt.passages:
        return whole
    spans = _locate(full, len(prefix_text), [s.lead + s.body for s in prompt.passages])
    head_extra = _head_extra(prompt, render, prefix_text)
    if spans is None or head_extra is None:
        return whole
    head = prefix + tokenize(head_extra)
    pieces = [Piece(prefix), Piece(tokenize(full[len(prefix_text) : spans[0]]))]
    missing = []
    for segment in prompt.passages:
        pieces.append(Piece(tokenize(segment.lead)))
        whole = tokenize(segment.whole)
        key = state_key(engine_id, head, whole)
        span = _excerpt_span(segment, whole, token_bytes) if segment.source else (0, len(whole))
        if span is not None and states.has(key):
            first, end = span
            reread = min(states.reread_tokens, end - first)
            pieces.append(Piece(whole[first : first + reread]))
            pieces.append(Piece(whole[first + reread : end], key, first + reread, len(whole)))
        else:
            pieces.append(Piece(tokenize(segment.body)))
            if span is not None:
                missing.append(MissingState(key, head, whole))
    last = prompt.passages[-1]
    pieces.append(Piece(tokenize(full[spans[-1] + len(last.lead) + len(last.body) :])))
    return Plan([p for p in pieces if p.tokens], len(prefix), missing)


def state_plan(missing: MissingState, fixed: int) -> Plan:
    """What the context holds while a passage state is computed: the head, then the passage's body read after it."""
    return Plan([Piece(missing.head[:fixed]), Piece(missing.head[fixed:]), Piece(missing.body)], fixed)


def _excerpt_span(segment: PassageSegment, whole: list[int], token_bytes: TokenBytes) -> tuple[int, int] | None:
    """The tokens of the whole passage that cover its excerpt (from the one holding its first character to the one
    holding its last); None when the tokens do not spell the text (then the excerpt is read in place)."""
    start = len(segment.source[: segment.offset].encode())
    end = start + len(segment.body.encode())
    ends = []
    position = 0
    for token in whole:
        position += len(token_bytes(token))
        ends.append(position)
    if position != len(segment.source.encode()):
        return None
    first = next(i for i, e in enumerate(ends) if e > start)
    last = next(i for i, e in enumerate(ends) if e >= end)
    return first, last + 1


def common_prefix(held: Sequence[Any], wanted: Sequence[Any]) -> int:
    """How many leading identities two contexts share."""
    n = 0
    for a, b in zip(held, wanted, strict=False):
        if a != b:
            break
        n += 1
    return n


def _locate(full: str, start: int, segments: list[str]) -> list[int] | None:
    """Where each segment starts, in order and back to back; None if they are not there as one run."""
    first = full.find(segments[0], start)
    if first < 0:
        return None
    spans, position = [], first
    for segment in segments:
        if not full.startswith(segment, position):
            return None
        spans.append(position)
        position += len(segment)
    return spans


def _head_extra(prompt: Prompt, render: Render, prefix_text: str) -> str | None:
    """The text between the fixed messages and the first passage when the passages' message follows them directly.

    Every passage state is computed after this head, whatever conversation precedes the passages in a
    given prompt: the head is the same for every question, so one state serves them all.
    """
    first = prompt.passages[0].lead + prompt.passages[0].body
    message = next((m for m in prompt.messages[prompt.fixed :] if first in m["content"]), None)
    if message is None:
        return None
    text = render([*prompt.messages[: prompt.fixed], message], False)
    if not text.startswith(prefix_text):
        return None
    return text[len(prefix_text) : text.index(first)]
