"""What the model is told: numbered passages, the conversation so far, and the rules for citing."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from rag.answering.citations import MARKER
from rag.lexical import is_yes_no_question
from rag.types import AnswerStyle, Passage, PassageSegment, Prompt, QuestionKind, Turn

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
        "Follow it with the number of that passage in brackets, like: 1066 [2] "
        "If the passages do not contain the answer, reply exactly: " + ABSTAIN_TEXT
    ),
}

# Repeated after the question: small models follow the last instruction best (without it they may
# answer "On which podcast...?" with a bare "[2]").
ANSWER_REMINDERS: dict[AnswerStyle, str] = {
    "sentence": "Answer in words, not only with a passage number; end each sentence with its passage number.",
    "short": "Reply with the exact phrase from the passage, then its passage number.",
}
# Comparisons and lists need every side or item in the answer, where one sentence would hold only one.
KIND_REMINDERS: dict[QuestionKind, str] = {
    "comparison": "Say what the passages say about each of them, one sentence each, then how they differ or "
    "agree; end each sentence with its passage number.",
    "list": "List every item the passages give, one per line starting with - , each ending with its passage number.",
}
# A yes/no question answered without its yes or no leaves the reader to guess, and cannot be checked
# against the evidence (the polarity step): the reminder asks for the word first.
YES_NO_REMINDER = (
    "Begin with Yes or No, then give the passage's words that show it; end each sentence with its passage number."
)

# Worked examples, given as earlier turns of the conversation, show a small model the form better than
# rules do, and each reply ending where the answer ends teaches it to stop. They come right after the
# system prompt and are the same for every question, so their keys and values are computed once
# (`Prompt.fixed`, rag.generation.base): they cost nothing per question.
_EXAMPLE_PASSAGES = (
    (
        "City council approves tram line",
        "Mayor Ana Ruiz said on Monday that the new tram line will open in 2026. "
        "Critics on the council say it costs too much.",
    ),
    (
        "How the tram was planned",
        "The line was designed by the engineer Tom Berg, who also built the city's first metro.",
    ),
)
EXAMPLES: dict[AnswerStyle, tuple[tuple[str, str], ...]] = {
    # Measured on the seeds, worked examples made no sentence answer better and taught the model to run
    # on past the answer, citing other articles (docs/evaluation.md): the system prompt's own example is kept.
    "sentence": (),
    # A bare phrase copied from a passage, with its marker; and abstaining when the passages are on
    # topic but lack the detail asked for.
    "short": (
        ("When will the tram line open?", "2026 [1]"),
        ("Who designed the tram line?", "Tom Berg [2]"),
        ("How long is the tram line?", ABSTAIN_TEXT),
    ),
}


# Asked after the answer is written and its citations checked: small models answer questions whose
# premise the passages do not support ("Why did Meta sell PyTorch to Google?") from passages on the same
# topic, yet judge "does this passage answer it?" well when asked on its own.
CONFIRM_PROMPT = "You check whether a passage answers a question. Reply with yes or no."


def build_confirm_prompt(question: str, passages: list[Passage], history: list[Turn]) -> Prompt:
    """The yes/no question the model answers about the passages an answer cites."""
    ask = "Does the passage answer this question, without assuming anything it does not say? Reply yes or no."
    return _passage_question(CONFIRM_PROMPT, question, passages, history, ask)


# Asked of a yes/no question's cited passages on their own: the model's yes or no there, without the
# pull of its own written answer, is what the answer's "Yes" or "No" must agree with.
POLARITY_PROMPT = "You answer a yes/no question from a passage alone. Reply with yes or no."


def build_polarity_prompt(question: str, passages: list[Passage], history: list[Turn]) -> Prompt:
    """The yes/no question itself, put to the model over the passages its answer cites."""
    return _passage_question(POLARITY_PROMPT, question, passages, history, "According to the passage: yes or no?")


def _passage_question(system: str, question: str, passages: list[Passage], history: list[Turn], ask: str) -> Prompt:
    earlier = "".join(
        f"Earlier question: {t.question}\nEarlier answer: {strip_markers(t.answer)}\n\n" for t in history[-1:]
    )
    text = "\n\n".join(p.shown_text for p in passages)
    return Prompt(
        [
            {"role": "system", "content": system},
            {"role": "user", "content": f"Passage:\n{text}\n\n{earlier}Question: {question}\n{ask}"},
        ]
    )


# Asked of one answer sentence that word overlap and meaning do not tie to its passage: a sentence that
# puts the passage in other words ("It was made in 2019" for "released that year") is what the model
# recognises and the lexical score misses (rag.answering.judge).
CLAIM_PROMPT = "You check whether a passage states a claim. Reply with yes or no."


def build_claim_prompt(claim: str, passages: list[Passage]) -> Prompt:
    """The yes/no question whether the passages state one claim (its markers removed)."""
    ask = "Does the passage state this claim, without assuming anything it does not say? Reply yes or no."
    text = "\n\n".join(p.shown_text for p in passages)
    return Prompt(
        [
            {"role": "system", "content": CLAIM_PROMPT},
            {"role": "user", "content": f"Passage:\n{text}\n\nClaim: {strip_markers(claim)}\n{ask}"},
        ]
    )


# Written once per document and kept (rag.answering.summaries); an answer's summary sentences are then
# checked against the document like any cited claim, so the model is asked to keep to the text's own words.
SUMMARY_PROMPT = (
    "You summarize an article in one or two sentences, keeping to its own words and to what it says. "
    "Say what the article is about, naming the people or organisations it reports on, and its main point. "
    "Do not add anything the article does not say."
)


def build_summary_prompt(title: str, text: str) -> Prompt:
    """Summarise one document (or one section of a long one)."""
    return Prompt(
        [
            {"role": "system", "content": SUMMARY_PROMPT},
            {
                "role": "user",
                "content": f"Article: {title}\n\n{text}\n\nSummarize this article in one or two sentences.",
            },
        ]
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


def build_prompt(
    question: str,
    passages: list[Passage],
    history: list[Turn],
    style: AnswerStyle = "sentence",
    kind: QuestionKind = "fact",
    max_new_tokens: int | None = None,
    whole: Sequence[Passage] = (),
    refused_because: str = "",
) -> Prompt:
    """The system prompt and worked examples (fixed), the conversation so far, then passages and question.

    `whole` are the passages as retrieved when `passages` are excerpts of them (in the same order): an
    engine that keeps passage states keeps the whole passages' and places the excerpts' part.
    `refused_because` is a second attempt's note of why the first answer was refused.
    """
    messages = [{"role": "system", "content": SYSTEM_PROMPTS[style]}]
    for example_question, example_answer in EXAMPLES[style]:
        examples = passage_segments(_EXAMPLE_PASSAGES)
        messages.append({"role": "user", "content": _question_prompt(examples, example_question, style)})
        messages.append({"role": "assistant", "content": example_answer})
    fixed = len(messages)
    for turn in history:
        messages.append({"role": "user", "content": turn.question})
        messages.append({"role": "assistant", "content": strip_markers(turn.answer)})
    segments = passage_segments([(p.title, p.chunk.text) for p in passages])
    if whole:
        segments = [_excerpt_of(s, p, w) for s, p, w in zip(segments, passages, whole, strict=True)]
    content = _question_prompt(segments, question, style, kind)
    if refused_because:
        content += f"\n{RETRY_NOTE.format(reason=refused_because)}"
    messages.append({"role": "user", "content": content})
    return Prompt(messages, fixed, max_new_tokens, tuple(segments))


# A second attempt (rag.assistant) writes from the one passage the model judged as answering, told why the
# first answer was refused, so that it keeps closer to that passage's words.
RETRY_NOTE = "An earlier answer was refused because {reason}. Answer from what this passage says, in its own words."


def passage_segments(passages: Sequence[tuple[str, str]]) -> list[PassageSegment]:
    """Each passage (title, text) as it is numbered in the prompt: "[2] Title" read in place, then its text.

    The text is the same wherever the passage is ranked, so its keys and values can be kept
    (rag.generation.passage_states); the lead is read in place, where it sees the passages before it.
    Re-reading the number alone left the model unsure which passage said what (the LeCun answer cited
    the wrong article), the number and title kept them; computing a text's state after its "[1] title"
    line instead of right after the head lost more on the seeds gate (citation precision 82% vs 90%).
    The blank line between passages opens the next one's lead.
    """
    return [
        PassageSegment(("\n\n" if i > 1 else "") + f"[{i}] {title}\n", text)
        for i, (title, text) in enumerate(passages, start=1)
    ]


def _excerpt_of(segment: PassageSegment, excerpt: Passage, passage: Passage) -> PassageSegment:
    if excerpt.chunk.text == passage.chunk.text:
        return segment
    offset = excerpt.chunk.start - passage.chunk.start
    return replace(segment, source=passage.chunk.text, offset=offset)


def _question_prompt(
    segments: Sequence[PassageSegment], question: str, style: AnswerStyle, kind: QuestionKind = "fact"
) -> str:
    """The numbered passages, the question, and the reminder of the form."""
    numbered = "".join(s.lead + s.body for s in segments)
    reminder = ANSWER_REMINDERS[style]
    if style == "sentence":
        reminder = YES_NO_REMINDER if is_yes_no_question(question) else KIND_REMINDERS.get(kind, reminder)
    return f"Passages:\n\n{numbered}\n\nQuestion: {question}\n{reminder}"
