from __future__ import annotations

from itertools import pairwise

import pytest
from conftest import SEEDS
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.ingestion.chunking import Chunker, split_sentences
from rag.ingestion.loaders import load_documents
from rag.types import Chunk, Document


def doc(text: str, doc_id: str = "d0c") -> Document:
    return Document(doc_id=doc_id, title="t", source="t.txt", text=text)


def sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]


def check_chunks(text: str, chunks: list[Chunk], chunk_size: int, chunk_overlap: int) -> None:
    """The invariants every consumer relies on."""
    covered = [False] * len(text)
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert chunk.chunk_id == f"{chunk.doc_id}:{index}"
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text and chunk.text == chunk.text.strip()
        assert len(chunk.text) <= chunk_size
        for i in range(chunk.start, chunk.end):
            covered[i] = True
    for previous, chunk in pairwise(chunks):
        assert previous.start < chunk.start and previous.end < chunk.end  # in order, always advancing
        assert previous.end - chunk.start <= chunk_overlap  # overlap never exceeds its budget
    assert all(covered[i] for i, char in enumerate(text) if not char.isspace())


def check_spans(text: str, spans: list[tuple[int, int]]) -> None:
    covered = [False] * len(text)
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end
        assert text[start:end] == text[start:end].strip()
        covered[start:end] = [True] * (end - start)
        previous_end = end
    assert all(covered[i] for i, char in enumerate(text) if not char.isspace())


# --- split_sentences ---------------------------------------------------------------------------


def test_answer_sentences_with_citation_markers() -> None:
    text = "LeCun proposed a shared model [1]. It would be trained globally [2]."
    assert split_sentences(text) == [(0, 34), (35, 68)]
    assert sentences(text) == ["LeCun proposed a shared model [1].", "It would be trained globally [2]."]


def test_citation_marker_after_the_period_stays_with_its_sentence() -> None:
    text = "Meta open-sourced Llama. [1] It was widely used. [2, 3]"
    assert sentences(text) == ["Meta open-sourced Llama. [1]", "It was widely used. [2, 3]"]


@pytest.mark.parametrize(
    "text",
    [
        "Dr. Smith met Mr. Jones in the U.S. Senate on Jan. 5 at 3.5 p.m. today.",
        "Models (e.g. Llama and i.e. others) vs. closed ones are compared in Fig. 3 and No. 4 of Vol. 2.",
        "J. R. R. Tolkien wrote it, cf. the Ph.D. thesis by Smith et al. in 2020.",
        "The price rose to $3.50 per share, about 1.5% more.",
        "Wait... it was not over.",
        'He asked "why?" and left.',
    ],
)
def test_abbreviations_decimals_and_mid_sentence_punctuation_do_not_split(text: str) -> None:
    assert sentences(text) == [text]


def test_reference_abbreviations_only_hold_before_a_number() -> None:
    assert sentences("See No. 5 and Fig. 3 from Jan. 2024.") == ["See No. 5 and Fig. 3 from Jan. 2024."]
    assert sentences("The answer was no. Then it changed.") == ["The answer was no.", "Then it changed."]


def test_sentence_boundaries() -> None:
    text = 'He said "Stop." Then he left! Did it work? Yes… Mostly. Prices hit 3.5. Then fell.'
    assert sentences(text) == [
        'He said "Stop."',
        "Then he left!",
        "Did it work?",
        "Yes…",
        "Mostly.",
        "Prices hit 3.5.",
        "Then fell.",
    ]


def test_curly_quotes_and_emoji() -> None:
    text = "“It works.” She smiled 🚀. ‘Really?’ he asked. Meta’s model is 🔥! Done."  # noqa: RUF001
    expected = ["“It works.”", "She smiled 🚀.", "‘Really?’ he asked.", "Meta’s model is 🔥!", "Done."]  # noqa: RUF001
    assert sentences(text) == expected


def test_paragraphs_bullets_and_headings_are_boundaries() -> None:
    text = (
        "# Title\nIntro without a period\n\nMeta aims to:\n  • Encourage collaboration\n"
        "  • Enhance transparency\n1. Numbered item\n- dash item\n\nLast paragraph\nwraps here."
    )
    assert sentences(text) == [
        "# Title",
        "Intro without a period",
        "Meta aims to:",
        "• Encourage collaboration",
        "• Enhance transparency",
        "1. Numbered item",
        "- dash item",
        "Last paragraph\nwraps here.",  # a single line break inside a paragraph is not a boundary
    ]


def test_cjk_full_stops() -> None:
    assert sentences("你好。再见！好吗？") == ["你好。", "再见！", "好吗？"]  # noqa: RUF001


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t "])
def test_no_sentences_in_blank_text(text: str) -> None:
    assert split_sentences(text) == []


def test_short_strings() -> None:
    assert sentences("Yes.") == ["Yes."]
    assert sentences("  ok  ") == ["ok"]
    assert split_sentences("  ok  ") == [(2, 4)]
    assert sentences("a") == ["a"]


WORDS = st.sampled_from(
    ["Meta", "open", "model", "e.g.", "Mr.", "U.S.", "3.5", "...", "“quoted.”", "🚀", "[1].", "x", "—", "Ünïcode"]
)
PUNCT = st.sampled_from([" ", " ", " ", ". ", "! ", "? ", "\n", "\n\n", "\n- ", "\n# ", "\t", "\r\n", "… "])
REALISTIC = st.lists(st.tuples(WORDS, PUNCT), max_size=80).map(lambda parts: "".join(w + p for w, p in parts))
ANY_TEXT = st.one_of(REALISTIC, st.text(max_size=300), st.text(alphabet=" \n.!?a\u00a0\u2028x", max_size=200))


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_sentence_spans_are_trimmed_ordered_and_cover_the_text(text: str) -> None:
    check_spans(text, split_sentences(text))


# --- Chunker -----------------------------------------------------------------------------------


def seed_documents() -> list[Document]:
    documents, errors = load_documents([SEEDS], max_bytes=10_000_000)
    assert documents and not errors
    return documents


@pytest.mark.parametrize(("chunk_size", "chunk_overlap"), [(700, 150), (300, 100), (100, 0), (120, 119)])
def test_seed_chunks_slice_back_exactly(chunk_size: int, chunk_overlap: int) -> None:
    chunker = Chunker(chunk_size, chunk_overlap)
    for document in seed_documents():
        chunks = chunker.split(document)
        assert chunks
        check_chunks(document.text, chunks, chunk_size, chunk_overlap)
        assert all(chunk.doc_id == document.doc_id for chunk in chunks)


def test_seed_chunks_start_and_end_on_sentence_boundaries() -> None:
    for document in seed_documents():
        boundaries = {edge for span in split_sentences(document.text) for edge in span}
        for chunk in Chunker(700, 150).split(document):
            assert chunk.start in boundaries and chunk.end in boundaries


def test_deterministic() -> None:
    document = seed_documents()[0]
    assert Chunker(300, 80).split(document) == Chunker(300, 80).split(document)


def test_overlap_is_the_trailing_sentences_that_fit() -> None:
    text = " ".join(f"Sentence number {i:02d} ends." for i in range(12))  # 25-char sentences
    chunks = Chunker(100, 60).split(doc(text))
    check_chunks(text, chunks, 100, 60)
    for previous, chunk in pairwise(chunks):
        overlap = text[chunk.start : previous.end]
        assert sentences(overlap) == sentences(previous.text)[-2:]  # 2 sentences = 51 chars <= 60


def test_no_overlap_when_overlap_is_zero() -> None:
    text = " ".join(f"Sentence number {i:02d} ends." for i in range(12))
    chunks = Chunker(100, 0).split(doc(text))
    check_chunks(text, chunks, 100, 0)
    assert all(previous.end < chunk.start for previous, chunk in pairwise(chunks))
    assert " ".join(chunk.text for chunk in chunks) == text


def test_no_overlap_when_last_sentence_is_longer_than_overlap() -> None:
    long_sentence = "This sentence is deliberately longer than the overlap budget allows."
    text = " ".join([long_sentence] * 6)
    chunks = Chunker(150, 40).split(doc(text))
    check_chunks(text, chunks, 150, 40)
    assert all(previous.end < chunk.start for previous, chunk in pairwise(chunks))


def test_long_sentence_is_split_at_word_boundaries() -> None:
    words = [f"word{i}" for i in range(300)]
    text = "Short first sentence. " + " ".join(words) + ". Short last sentence."
    chunks = Chunker(100, 30).split(doc(text))
    check_chunks(text, chunks, 100, 30)
    for chunk in chunks:
        assert chunk.start == 0 or text[chunk.start - 1].isspace()
        assert chunk.end == len(text) or text[chunk.end].isspace()
    assert " ".join(text[c.start : c.end] for c in chunks).split() == text.split()


def test_unbroken_text_longer_than_chunk_size_is_hard_cut() -> None:
    text = "x" * 1050
    chunks = Chunker(100, 10).split(doc(text))
    check_chunks(text, chunks, 100, 10)
    assert [len(chunk.text) for chunk in chunks] == [100] * 10 + [50]


def test_prefers_to_end_at_a_paragraph_break_near_the_end() -> None:
    first = "First paragraph sentence one is here. It has a second, longer sentence."
    second = "Next one. It continues for a while longer. And ends."
    text = f"{first}\n\n{second}"
    assert len(first) >= 70 and len(first) + len("\n\nNext one.") <= 100
    chunks = Chunker(100, 0).split(doc(text))
    check_chunks(text, chunks, 100, 0)
    assert chunks[0].text == first  # not "...too.\n\nSecond paragraph starts here."


def test_does_not_end_a_chunk_on_a_heading() -> None:
    text = (
        "Some opening sentence that runs on. Another sentence of body text here."
        "\n\nNext Section Heading\n\nBody of the next section follows here. It goes on."
    )
    chunks = Chunker(100, 0).split(doc(text))
    check_chunks(text, chunks, 100, 0)
    assert not chunks[0].text.endswith("Heading")
    assert chunks[1].text.startswith("Next Section Heading")


def test_unicode_text() -> None:
    text = "“Open models matter,” said LeCun 🚀. Meta’s Llama—widely used—is open. Emoji 👩‍💻 stay whole. " * 8  # noqa: RUF001
    chunks = Chunker(120, 40).split(doc(text))
    check_chunks(text, chunks, 120, 40)


def test_blank_document_has_no_chunks() -> None:
    assert Chunker(100, 10).split(doc("  \n\n \t")) == []
    assert Chunker(100, 10).split(doc("")) == []


def test_chunk_ids_and_offsets_on_a_small_document() -> None:
    text = "  One sentence.  "
    assert Chunker(100, 10).split(doc(text, "abc")) == [
        Chunk(chunk_id="abc:0", doc_id="abc", index=0, text="One sentence.", start=2, end=15)
    ]


@pytest.mark.parametrize(("chunk_size", "chunk_overlap"), [(0, 0), (100, 100), (100, -1)])
def test_invalid_sizes(chunk_size: int, chunk_overlap: int) -> None:
    with pytest.raises(ValueError):
        Chunker(chunk_size, chunk_overlap)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT, st.integers(min_value=1, max_value=120), st.data())
def test_chunk_invariants_on_arbitrary_text(text: str, chunk_size: int, data: st.DataObject) -> None:
    chunk_overlap = data.draw(st.integers(min_value=0, max_value=chunk_size - 1))
    check_chunks(text, Chunker(chunk_size, chunk_overlap).split(doc(text)), chunk_size, chunk_overlap)
