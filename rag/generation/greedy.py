"""Greedy decoding with prompt lookup, shared by the local engines: the loop, the drafts and their check.

Answers copy spans of the passages, so the tokens that followed the latest earlier occurrence of the
text's last few tokens are often exactly what the model is about to write. An engine verifies the
drafts in the same forward pass as its own next token and keeps those the model agrees with, so the
answer stays greedy decoding's, token for token, while several tokens come per pass. Each engine
supplies only its forward passes; how text is streamed and when it stops is decided here, once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence


def stream_greedy(
    first: int,
    step: Callable[[list[int]], list[int]],
    decode: Callable[[list[int]], str],
    stops: set[int],
    max_new_tokens: int,
    cancel: threading.Event | None,
) -> Iterator[str]:
    """Yield the answer's text as it grows, from its first token and `step` (the answer so far -> next tokens).

    A piece that would end inside a UTF-8 character waits for the rest; it stops at a stop token,
    at `max_new_tokens`, or between steps once `cancel` is set.
    """
    answer = [first]
    shown = ""
    while True:
        text = decode([t for t in answer if t not in stops])
        if len(text) > len(shown) and not text.endswith("\ufffd"):  # a split UTF-8 character waits
            yield text[len(shown) :]
            shown = text
        if answer[-1] in stops or len(answer) >= max_new_tokens or (cancel and cancel.is_set()):
            return
        answer += step(answer)[: max_new_tokens - len(answer)]


def accepted_drafts(drafts: Sequence[int], predicted: Sequence[int], stops: set[int]) -> int:
    """How many leading drafts the model predicted itself (`predicted[i]` follows the i-th input of the pass)."""
    accepted = 0
    while accepted < len(drafts) and drafts[accepted] == predicted[accepted] and drafts[accepted] not in stops:
        accepted += 1
    return accepted


def prompt_lookup(tokens: list[int], size: int, longest_ngram: int = 3) -> list[int]:
    """Up to `size` tokens that followed the most recent earlier occurrence of the text's last n-gram.

    Answers copy spans of the passages, so the continuation of a match is often exactly what the
    model is about to write; longer n-grams are tried first, as they predict better.
    """
    if not size:
        return []
    for n in range(min(longest_ngram, len(tokens) - 1), 0, -1):
        tail = tokens[-n:]
        for start in range(len(tokens) - n - 1, -1, -1):
            if tokens[start : start + n] == tail:
                return tokens[start + n : start + n + size]
    return []
