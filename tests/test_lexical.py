from __future__ import annotations

from rag.lexical import content_stems, fold_accents, mentions, salient_terms


def test_accents_do_not_hide_a_name() -> None:
    passage = "Thomas de Maizière serves as Federal Minister of the Interior."
    assert fold_accents("Maizière, Ångström, café") == "Maiziere, Angstrom, cafe"
    assert mentions(passage, "Maiziere")
    assert mentions(passage, "Maizière")
    assert salient_terms("What role does Thomas de Maiziere have?") == ["Thomas", "Maiziere"]
    assert content_stems("Maizière") == content_stems("Maiziere") == {"maizier"}
