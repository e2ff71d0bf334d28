"""Word-level helpers shared by citation checking and abstention: content words, stems, names."""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache

import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS

_APOSTROPHES = "'\u2019"
_WORD = re.compile(rf"[A-Za-z0-9][A-Za-z0-9{_APOSTROPHES}\-]*")
_POSSESSIVE = re.compile(rf"[{_APOSTROPHES}]s$")
_SENTENCE_START = re.compile(r"(?<=[.!?])\s+")  # a capital after it starts a sentence, not a name
_QUESTION_WORDS = frozenset(
    {
        "what",
        "who",
        "whom",
        "whose",
        "which",
        "when",
        "where",
        "why",
        "how",
        "does",
        "did",
        "do",
        "is",
        "are",
        "was",
        "were",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "has",
        "have",
        "had",
        "tell",
        "name",
        "list",
        "describe",
        "explain",
    }
)
# "Yes" opens an answer without saying anything a passage could support ("no" is a stopword already).
_STOPWORDS = frozenset(STOPWORDS_EN_PLUS) | _QUESTION_WORDS | {"yes"}
# A question that opens with an auxiliary verb ("Is ...?", "Did ...?", "Can't ...?") is a yes/no question.
_YES_NO_START = re.compile(
    r"^(?:according to [^,]+,\s*)?"
    r"(?:is|are|was|were|am|do|does|did|has|have|had|can|could|will|would|should|shall|may|might|must)(?:n't)?\b",
    re.IGNORECASE,
)


_local = threading.local()


def english_stemmer() -> Stemmer.Stemmer:
    """One per thread: PyStemmer objects are not thread-safe, and the server answers on several threads."""
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def fold_accents(text: str) -> str:
    """Drop accents ("Maizière" -> "Maiziere"): people type names without them, and words are ASCII here."""
    if text.isascii():  # most text, and whole documents are folded for every name checked in them
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    return [_POSSESSIVE.sub("", w) for w in _WORD.findall(fold_accents(text))]


def content_stems(text: str) -> set[str]:
    """Stems of the words that carry meaning; 'proposed' and 'proposal' meet as 'propos'."""
    tokens = [w.lower() for w in words(text)]
    return set(english_stemmer().stemWords([t for t in tokens if t not in _STOPWORDS and len(t) > 1]))


def is_yes_no_question(question: str) -> bool:
    """ "Does Meta still own PyTorch?", "According to the article, is it ...?": answered by yes or no."""
    return bool(_YES_NO_START.match(question.strip()))


def _is_name(word: str, position: int) -> bool:
    """A capitalised word past its sentence's first, or one with capitals inside ("LeCun", "OpenAI")."""
    return word[0].isupper() and (position > 0 or any(c.isupper() for c in word[1:]))


def salient_terms(question: str) -> list[str]:
    """Names, acronyms and numbers in a question: if the documents never mention one, they can't answer it.

    A capitalised word counts as a name unless it starts a sentence ("Besides ...").
    """
    terms = []
    for sentence in _SENTENCE_START.split(question):
        for position, word in enumerate(words(sentence)):
            lowered = word.lower()
            if lowered in _STOPWORDS:
                continue
            if _is_name(word, position) or any(c.isdigit() for c in word):
                terms.append(word)
    return terms


def names_anyone(text: str, context: str) -> bool:
    """Whether `text` names a person or body: a capitalised word that is not a common word.

    Within a sentence a capital is a name (as `salient_terms` reads it); a sentence's first word is one
    when `context`, the text around it, never writes it in lower case ("Altman proposed ..." names
    Altman, "Open-source refers to ..." nobody, since the article also writes "open-source").
    """
    common = {w for w in words(context) if w.islower()}
    for sentence in _SENTENCE_START.split(text):
        for position, word in enumerate(words(sentence)):
            lowered = word.lower()
            if lowered in _STOPWORDS or not word[0].isupper():
                continue
            if _is_name(word, position) or lowered not in common:
                return True
    return False


def mentions(text: str, term: str) -> bool:
    """Whether `text` names `term`, from a word start, in any of the ways the same thing is written.

    "700-megawatt" is "700 megawatt", "16th" is "16" (but "16" is not "160"), "1600s" is "17th century", "EU"
    is "E.U." or "European Union" (but "US" is not "us"), "Irish" is "Ireland", and "Revolutionary" is met by
    "Revolution": a name in a question is often written a little differently in the document, and each check
    that relies on names would refuse it.
    """
    return _term_pattern(term).search(fold_accents(text)) is not None


# Plural, adjective and demonym endings added to a name: Huguenot-s, Revolution-ary, Europ-ean, Egypt-ian, Asia-n.
_DERIVED = re.compile(r"^(?P<base>[A-Za-z]{5,}?)(?P<suffix>s|es|ary|ian|ean|an|ic|ical|ist|ism|ese|ish|ern)$")
_DERIVED_AFTER_A = re.compile(r"^(?P<base>[A-Za-z]{2,}[ie]a)(?P<suffix>n)$")  # India-n, Korea-n
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th)$", re.IGNORECASE)
_HUNDREDS = re.compile(r"^(1?\d)00s$")  # 1600s: the 17th century (but the 2000s are a decade)
_DASHES = r"[\s\-\u2010-\u2015]+"
# Places the gazetteer below does not join to their adjective: parts of countries, and Britain (which the
# gazetteer only has as "Great Britain").
_REGIONS = (
    ("England", "English"),
    ("Scotland", "Scottish", "Scots"),
    ("Wales", "Welsh"),
    ("Flanders", "Flemish"),
    ("Britain", "British"),
)
_PLACE_NAME = re.compile(r"^[A-Za-z][A-Za-z' \-]{3,}$")


@lru_cache(maxsize=1)
def _same_place() -> dict[str, tuple[str, ...]]:
    """Every name of a place keyed (lowercase) to all its names and its demonym: "Irish" meets "Ireland".

    A question about "Irish cities" is answered by a paragraph on Ireland, "Dutch" by one on Holland or the
    Netherlands, and no ending rule joins such pairs. The countries come from countryinfo's gazetteer
    (offline data: each country's name, other names and demonym); codes such as "IE" are left out, since
    acronyms have their own rule.
    """
    from countryinfo import CountryInfo

    groups: list[tuple[str, ...]] = list(_REGIONS)
    for info in CountryInfo.all().values():
        names = [info.get("name"), *(info.get("altSpellings") or []), info.get("demonym")]
        forms = [fold_accents(n).strip() for n in names if n]
        group = tuple(dict.fromkeys(f for f in forms if _PLACE_NAME.match(f) and not f.isupper()))
        if len(group) > 1:
            groups.append(group)
    table: dict[str, tuple[str, ...]] = {}
    for group in groups:
        for form in group:
            table[form.lower()] = tuple(dict.fromkeys((*table.get(form.lower(), ()), *group)))
    return table


@lru_cache(maxsize=4096)
def _term_pattern(term: str) -> re.Pattern[str]:
    term = fold_accents(term)
    start = r"(?<![A-Za-z0-9])"
    if ordinal := _ORDINAL.match(term):
        return re.compile(rf"{start}{ordinal.group(1)}(?!\d)")
    if hundreds := _HUNDREDS.match(term):
        century = int(hundreds.group(1)) + 1
        nth = r"(?:st|nd|rd|th)"
        and_another = rf"(?:{_DASHES}(?:and|or|to){_DASHES}\d+{nth})?"  # "the 17th and 18th centuries"
        return re.compile(rf"{start}(?:{term}|{century}{nth}{and_another}{_DASHES}centur(?:y|ies))", re.IGNORECASE)
    if forms := _same_place().get(term.lower()):
        # a form may take an ending as any name does: "Iceland" meets "Icelandic" though the gazetteer says "Icelander"
        endings = r"(?:s|es|ary|ian|ean|an|ic|ical|ist|ism|ese|ish|ern)?"
        return re.compile(rf"{start}(?:{'|'.join(map(re.escape, forms))}){endings}(?![A-Za-z])")
    if len(term) > 1 and term.isalpha() and term.isupper():  # an acronym: dotted, spelt out, or as is (not "us")
        dotted = "".join(rf"{letter}\.?" for letter in term)
        spelt_out = r"\s+".join(rf"{letter}[a-z]+" for letter in term)
        return re.compile(rf"{start}(?:{dotted}|{spelt_out})")
    derived = _DERIVED.match(term) or _DERIVED_AFTER_A.match(term)
    if derived:
        core = rf"{re.escape(derived['base'])}(?:{derived['suffix']})?"
    else:
        core = _DASHES.join(re.escape(part) for part in re.split(r"[\-\u2010-\u2015]", term))
    end = r"(?!\d)" if term[-1].isdigit() else ""
    return re.compile(rf"{start}{core}{end}", re.IGNORECASE)
