"""What the model is told: numbered passages, the conversation so far, and the rules for citing."""

from __future__ import annotations

import re

from rag.citations import MARKER
from rag.types import AnswerStyle, Passage, Turn

ABSTAIN_TEXT = "The documents don't say."

SYSTEM_PROMPTS: dict[AnswerStyle, str] = {
    "sentence": (
        "You answer questions using only the numbered passages you are given. "
        "Write the answer itself in one or two short sentences, in your own words or quoting the passage, "
        "and end every sentence with the number of the passage that supports it, like [1] or [2][3]. "
        "Do not talk about the passages or the articles themselves. "
        "If the passages do not say what the question asks (or say it about someone else), reply exactly: "
        + ABSTAIN_TEXT
        + "\n\nExample of the form of an answer:\n"
        "Question: Where did the company open its new office?\n"
        "Answer: It opened the new office in Lyon, next to its factory [2]."
    ),
    # Extractive QA (SQuAD) scores a span against a span: a sentence around the right words loses F1.
    "short": (
        "You answer questions using only the numbered passages you are given. "
        "Reply with only the shortest exact phrase from a passage that answers the question "
        "(a name, a number, a date or a few words), copied word for word, not a sentence. "
        "Follow it with the number of that passage, like: 1066 [2] "
        "If the passages do not contain the answer, reply exactly: " + ABSTAIN_TEXT
    ),
}

# Repeated after the question: small models follow the last instruction best (without it they may
# answer "On which podcast...?" with a bare "[2]").
ANSWER_REMINDERS: dict[AnswerStyle, str] = {
    "sentence": "Answer in words, not only with a passage number; end each sentence with its passage number.",
    "short": "Reply with the exact phrase from the passage, then its passage number.",
}

# Asked after the answer is written and its citations checked: small models answer questions whose
# premise the passages do not support ("Why did Meta sell PyTorch to Google?") from passages on the same
# topic, yet judge "does this passage answer it?" well when asked on its own.
CONFIRM_PROMPT = "You check whether a passage answers a question. Reply with yes or no."


def build_confirm_messages(question: str, passages: list[Passage], history: list[Turn]) -> list[dict[str, str]]:
    """The yes/no question the model answers about the passages an answer cites."""
    earlier = "".join(
        f"Earlier question: {t.question}\nEarlier answer: {strip_markers(t.answer)}\n\n" for t in history[-1:]
    )
    text = "\n\n".join(p.chunk.text for p in passages)
    ask = "Does the passage answer this question, without assuming anything it does not say? Reply yes or no."
    return [
        {"role": "system", "content": CONFIRM_PROMPT},
        {"role": "user", "content": f"Passage:\n{text}\n\n{earlier}Question: {question}\n{ask}"},
    ]


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


def build_messages(
    question: str, passages: list[Passage], history: list[Turn], style: AnswerStyle = "sentence"
) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM_PROMPTS[style]}]
    for turn in history:
        messages.append({"role": "user", "content": turn.question})
        messages.append({"role": "assistant", "content": strip_markers(turn.answer)})
    numbered = "\n\n".join(f"[{i}] {p.title}\n{p.chunk.text}" for i, p in enumerate(passages, start=1))
    prompt = f"Passages:\n\n{numbered}\n\nQuestion: {question}\n{ANSWER_REMINDERS[style]}"
    messages.append({"role": "user", "content": prompt})
    return messages
