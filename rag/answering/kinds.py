"""What kind of question this is, which decides what the answer is written from.

A fact is answered from the top passages of a search for it. A summary, a comparison, a list or a
question about the collection itself has no query to search for ("Summarize the four articles" is close
to no chunk), so each kind gathers its own evidence (rag.assistant). Decided by rules on the wording,
which are cheap and inspectable; a follow-up that only names a new subject ("and the Zuckerberg one?")
keeps the kind of the question before it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.types import QuestionKind, Turn

_DOCUMENT_WORDS = r"(?:documents?|articles?|files?|sources?|texts?|papers?|pages?|reports?|stories|collection|index)"
# Asked of the collection itself: which documents it holds, how many.
_COLLECTION = re.compile(
    rf"\b(?:what|which|how\s+many)\s+(?:\w+\s+){{0,2}}{_DOCUMENT_WORDS}\s+(?:do|does|are|is|did|have|can|could)\s+"
    r"(?:you|we|there|it|this|the\s+collection|the\s+index|been|in\s+(?:the|this|your)|indexed|available|loaded|stored)\b"
    rf"|^\s*(?:list|name|show)\s+(?:me\s+)?(?:all\s+)?(?:the\s+|your\s+)?{_DOCUMENT_WORDS}\s*[.?!]*\s*$"
    rf"|\bwhat\s+(?:is|are)\s+in\s+(?:the|this|your)\s+{_DOCUMENT_WORDS}\s*[.?!]*\s*$",
    re.IGNORECASE,
)
# A summary of one document, several, or the whole collection ("what is this about?").
_SUMMARY = re.compile(
    r"\b(?:summari[sz]e|summary|summaries|overview|gist|tl;?dr|recap|main\s+points?|key\s+points?|in\s+a\s+nutshell)\b"
    rf"|\bwhat\s+(?:is|are)\s+(?:the\s+|each\s+|this\s+|these\s+)?(?:\w+\s+){{0,6}}{_DOCUMENT_WORDS}\s+(?:\w+\s+){{0,6}}about\b"
    r"|\bwhat\s+(?:is|are)\s+(?:this|these|all\s+this|it\s+all)\s+(?:all\s+)?about\b",
    re.IGNORECASE,
)
_COMPARISON = re.compile(
    r"\b(?:compare[sd]?|comparing|comparison|contrast|differ(?:s|ed|ence|ences)?|distinguish|versus|vs\.?"
    r"|agree|disagree|in\s+common|similar(?:ity|ities)?|alike)\b",
    re.IGNORECASE,
)
# "Which people...", "What risks... across the articles", "List the companies...": an answer of several items.
_LIST = re.compile(
    r"^\s*(?:list|name|enumerate)\b"
    r"|^\s*(?:which|what)\s+(?:[\w-]+\s+){0,2}(?:people|persons|companies|organi[sz]ations|firms|countries|"
    r"risks|concerns|benefits|challenges|tools|frameworks|projects|initiatives|events|places|names|"
    r"products|models|groups|roles|arguments|reasons|criticisms)\b",
    re.IGNORECASE,
)
_FOLLOW_UP = re.compile(r"^\s*(?:and|what\s+about|how\s+about|same\s+for|now)\b", re.IGNORECASE)
_FOLLOW_UP_WORDS = 8


def question_kind(question: str, history: Sequence[Turn] = ()) -> QuestionKind:
    """The kind of `question`; a short "and ...?" follow-up takes the previous question's kind."""
    if history and _FOLLOW_UP.match(question) and len(question.split()) <= _FOLLOW_UP_WORDS:
        return question_kind(history[-1].question, history[:-1])
    if _COLLECTION.search(question):
        return "collection"
    if _SUMMARY.search(question):
        return "summary"
    if _COMPARISON.search(question):
        return "comparison"
    if _LIST.search(question):
        return "list"
    return "fact"
