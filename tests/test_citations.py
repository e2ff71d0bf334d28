from __future__ import annotations

import pytest
from conftest import SEEDS

from rag.answering.citations import CitationVerifier
from rag.embedding.embedder import Embedder
from rag.ingestion.chunking import Chunker
from rag.ingestion.loaders import load_documents
from rag.lexical import content_stems
from rag.settings import Settings
from rag.types import Document, Passage

PARIS = "003_242d03d61eec7c62.txt"
LECUN_PROFILE = "001_a18a02b6292ce8e7.txt"


@pytest.fixture(scope="module")
def documents() -> dict[str, Document]:
    docs, errors = load_documents([SEEDS], max_bytes=10**7)
    assert not errors
    return {d.source.rsplit("/", 1)[-1]: d for d in docs}


def _passage(document: Document, needle: str) -> Passage:
    chunk = next(c for c in Chunker(700, 150).split(document) if needle in c.text)
    return Passage(chunk=chunk, title=document.title, source=document.source, score=1.0, relevance=0.5)


@pytest.fixture(scope="module")
def passages(documents: dict[str, Document]) -> list[Passage]:
    return [
        _passage(documents[LECUN_PROFILE], "Chief AI Scientist at Meta"),
        _passage(documents[PARIS], "repository of all human knowledge"),
        _passage(documents[PARIS], "international agency"),
    ]


@pytest.fixture(scope="module")
def verifier(embedder: Embedder) -> CitationVerifier:
    return CitationVerifier(embedder, threshold=Settings().support_threshold)


def test_correct_citation_is_kept_with_exact_spans(
    verifier: CitationVerifier, passages: list[Passage], documents: dict[str, Document]
) -> None:
    result = verifier.verify(
        "LeCun proposed a common model that would be a repository of all human knowledge [2].",
        passages,
        "What did LeCun propose in Paris?",
    )
    assert result.supported
    assert result.text == "LeCun proposed a common model that would be a repository of all human knowledge [2]."
    [citation] = result.citations
    assert citation.n == 2
    assert citation.source.endswith(PARIS)
    paris = documents[PARIS]
    assert paris.text[citation.start : citation.end] == citation.text
    assert citation.start <= citation.quote_start < citation.quote_end <= citation.end
    assert "repository of all human knowledge" in paris.text[citation.quote_start : citation.quote_end]


def test_marker_to_no_passage_is_reattributed(verifier: CitationVerifier, passages: list[Passage]) -> None:
    result = verifier.verify("LeCun wants a common model, a repository of all human knowledge [7].", passages)
    assert [c.n for c in result.citations] == [2]
    assert "[7]" not in result.text


def test_marker_to_an_unsupporting_passage_is_reattributed(verifier: CitationVerifier, passages: list[Passage]) -> None:
    result = verifier.verify(
        "Altman proposed an international agency looking at the most powerful systems [1].", passages
    )
    assert [c.n for c in result.citations] == [3]
    assert result.text.endswith("[3].")


def test_supported_sentence_without_marker_gets_one(verifier: CitationVerifier, passages: list[Passage]) -> None:
    result = verifier.verify(
        "Yann LeCun is the Chief AI Scientist at Meta.", passages, "Who is Meta's chief AI scientist?"
    )
    assert result.text == "Yann LeCun is the Chief AI Scientist at Meta [1]."


def test_claim_attributed_to_the_wrong_person_is_unsupported(
    verifier: CitationVerifier, passages: list[Passage]
) -> None:
    result = verifier.verify(
        "LeCun called for an international agency looking at the most powerful systems [3].",
        passages,
        "What did LeCun say about an international agency?",
    )
    assert not result.supported


def test_unsupported_trailing_sentence_is_removed(verifier: CitationVerifier, passages: list[Passage]) -> None:
    result = verifier.verify(
        "LeCun proposed a common model, a repository of all human knowledge [2]. "
        "He also plans to move to Mars in 2031 [2].",
        passages,
    )
    assert result.supported
    assert "Mars" not in result.text
    assert [c.n for c in result.citations] == [2]


def test_markers_after_the_period_and_lists_of_numbers(verifier: CitationVerifier, passages: list[Passage]) -> None:
    result = verifier.verify(
        "Yann LeCun is Meta's Chief AI Scientist. [1, 2] Altman wants an international agency. [3]", passages
    )
    assert [c.n for c in result.citations] == [1, 3]
    assert result.text == "Yann LeCun is Meta's Chief AI Scientist [1]. Altman wants an international agency [3]."


def test_invented_answer_is_unsupported(verifier: CitationVerifier, passages: list[Passage]) -> None:
    result = verifier.verify("Canberra is the capital of Australia [1].", passages, "What is the capital of Australia?")
    assert not result.supported
    assert result.citations == []


def test_an_answer_that_only_restates_the_question_is_unsupported(
    verifier: CitationVerifier, passages: list[Passage]
) -> None:
    question = "What did LeCun propose as a repository of all human knowledge?"
    result = verifier.verify("LeCun proposed a repository of all human knowledge [2].", passages, question)
    assert not result.supported


def test_a_sentence_drawing_on_two_passages_is_checked_against_both(
    verifier: CitationVerifier, passages: list[Passage]
) -> None:
    answer = (
        "LeCun wants a common model as a repository of all human knowledge, while Altman wants an "
        "international agency looking at the most powerful systems [2][3]."
    )
    result = verifier.verify(answer, passages, "How do LeCun's and Altman's proposals differ?")
    assert result.supported
    assert [c.n for c in result.citations] == [2, 3]


def test_names_count_in_the_title_the_model_was_shown(
    verifier: CitationVerifier, passages: list[Passage], documents: dict[str, Document]
) -> None:
    profile = passages[0]
    assert "Meta" not in passages[1].chunk.text and "Meta" in passages[1].title
    result = verifier.verify(
        "The article on Meta says LeCun wants a common model, a repository of all human knowledge [2].",
        [profile, passages[1]],
        "What does LeCun want?",
    )
    assert result.supported and [c.n for c in result.citations] == [2]


@pytest.mark.parametrize(
    ("answer", "quoted"),
    [("Chief AI Scientist [1]", "Chief AI Scientist"), ("the chief AI scientist [1].", "Chief AI Scientist")],
)
def test_a_phrase_copied_from_the_passage_is_supported(
    verifier: CitationVerifier, passages: list[Passage], answer: str, quoted: str
) -> None:
    result = verifier.verify(answer, passages, "What is LeCun's role?")
    assert result.supported, result
    [citation] = result.citations
    assert citation.n == 1
    assert quoted in passages[0].chunk.text[citation.quote_start - citation.start : citation.quote_end - citation.start]


def test_a_copied_phrase_of_stopwords_only_is_still_a_claim(embedder: Embedder) -> None:
    """Short answers such as "both" or "more" have no content word; being the passage's own words is enough."""
    document = Document("d1", "Engines", "engines.txt", "Both engines failed during the second test flight.")
    chunk = Chunker(700, 150).split(document)[0]
    passage = Passage(chunk=chunk, title=document.title, source=document.source, score=1.0, relevance=0.5)
    verifier = CitationVerifier(embedder, threshold=Settings().support_threshold)
    assert not content_stems("both") and not content_stems("few")
    assert verifier.verify("Both [1]", [passage], "Which engines failed?").supported
    assert not verifier.verify("few [1]", [passage], "Which engines failed?").supported


def test_a_direct_answer_the_score_drops_stands_when_the_judge_finds_it_stated(
    verifier: CitationVerifier, passages: list[Passage]
) -> None:
    """The judge is asked only about the direct answer, over the passages it cites, and only when the score fails."""
    asked: list[tuple[str, list[int]]] = []

    def judge(claim: str, cited: list[Passage]) -> bool:
        asked.append((claim, [passages.index(p) + 1 for p in cited]))
        return True

    question = "What is the capital of Australia?"
    result = verifier.verify("Canberra is the capital of Australia [3].", passages, question, judge=judge)
    assert asked == [("Canberra is the capital of Australia.", [3])]
    assert result.supported and [c.n for c in result.citations] == [3]
    assert result.text == "Canberra is the capital of Australia [3]."

    asked.clear()
    supported = verifier.verify("Yann LeCun is Meta's Chief AI Scientist [1].", passages, "Who is LeCun?", judge=judge)
    assert supported.supported and asked == []  # the score alone let it through: nothing to ask


def test_a_direct_answer_the_judge_rejects_stays_unsupported(
    verifier: CitationVerifier, passages: list[Passage]
) -> None:
    result = verifier.verify(
        "Canberra is the capital of Australia.", passages, "What is the capital of Australia?", judge=lambda c, p: False
    )
    assert not result.supported and result.citations == []
