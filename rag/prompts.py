"""What the model is told: numbered passages, the conversation so far, and the rules for citing."""

from __future__ import annotations

import re

from rag.citations import MARKER
from rag.types import Passage, Turn

ABSTAIN_TEXT = "The documents don't say."

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages you are given. "
    "Answer in one or two short sentences, in your own words or quoting the passage. "
    "End every sentence with the number of the passage that supports it, like [1] or [2][3]. "
    "Do not talk about the passages themselves. "
    "If the passages do not contain the answer, reply exactly: " + ABSTAIN_TEXT
)

_DECLINES = re.compile(
    r"documents? (?:do not|don't|does not|doesn't) (?:say|mention|contain|specify|provide|state)"
    r"|passages? (?:do not|don't|does not|doesn't) (?:say|mention|contain|specify|provide|state)"
    r"|(?:no|not enough) information"
    r"|(?:is|are) not (?:mentioned|provided|specified|stated|given)"
    r"|cannot (?:be )?(?:answer|determine|find)",
    re.IGNORECASE,
)


def declines(answer: str) -> bool:
    """The model's own way of saying the passages don't hold the answer."""
    return bool(_DECLINES.search(answer))


def strip_markers(text: str) -> str:
    return MARKER.sub("", text).strip()


def retrieval_queries(question: str, history: list[Turn]) -> list[str]:
    """A follow-up ('what did he propose?') is searched with the last exchange as context, and alone."""
    if not history:
        return [question]
    last = history[-1]
    return [f"{last.question} {strip_markers(last.answer)} {question}", question]


def build_messages(question: str, passages: list[Passage], history: list[Turn]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for turn in history:
        messages.append({"role": "user", "content": turn.question})
        messages.append({"role": "assistant", "content": strip_markers(turn.answer)})
    numbered = "\n\n".join(f"[{i}] {p.title}\n{p.chunk.text}" for i, p in enumerate(passages, start=1))
    messages.append({"role": "user", "content": f"Passages:\n\n{numbered}\n\nQuestion: {question}"})
    return messages
