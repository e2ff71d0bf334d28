"""The llama.cpp engine on the tiny SmolLM2 GGUF: the same prompt tokens as transformers, the greedy loop,
the saved prefixes and the context limit (what every engine must do is in test_engines.py)."""

from __future__ import annotations

import pytest
from conftest import MESSAGES, PASSAGE

from rag.generation.llamacpp import LlamaCppEngine, PromptTooLongError
from rag.generation.transformers.engine import TransformersEngine
from rag.settings import Settings
from rag.types import Prompt

CHECK = Prompt(
    [
        {"role": "system", "content": "Reply with yes or no."},
        {"role": "user", "content": f"Passage: {PASSAGE}\n\nDoes the canteen serve fish on Fridays?"},
    ]
)


@pytest.fixture(scope="module")
def engine() -> LlamaCppEngine:
    return LlamaCppEngine("smollm2-135m", Settings().cache_dir, max_new_tokens=40, prompt_lookup_tokens=3)


def test_the_prompt_is_the_tokens_transformers_reads(engine: LlamaCppEngine) -> None:
    transformers = TransformersEngine("smollm2-135m", Settings().cache_dir, max_new_tokens=8)
    tokenizer, _ = transformers._loaded
    for messages, generation in ((MESSAGES, True), (MESSAGES[:1], False), (CHECK.messages, True)):
        expected = tokenizer.apply_chat_template(messages, add_generation_prompt=generation, return_dict=True)
        assert engine._chat_tokens(messages, add_generation_prompt=generation) == expected["input_ids"]
    assert engine.count_tokens(PASSAGE) == transformers.count_tokens(PASSAGE)


def test_lookup_and_the_saved_prefix_change_no_token(engine: LlamaCppEngine) -> None:
    first = "".join(engine.stream(Prompt(MESSAGES)))
    assert first.strip()
    engine.yes_log_odds(CHECK)  # another prefix in between: the first one's state is restored, not recomputed
    again = "".join(engine.stream(Prompt(MESSAGES)))
    engine.prompt_lookup_tokens = 0
    try:
        plain = "".join(engine.stream(Prompt(MESSAGES)))
    finally:
        engine.prompt_lookup_tokens = 3
    assert first == again == plain
    assert len(engine._prefix_states) == 2


def test_a_prompt_longer_than_the_context_is_refused_with_the_numbers(engine: LlamaCppEngine) -> None:
    long = Prompt([MESSAGES[0], {"role": "user", "content": PASSAGE * 200}])
    with pytest.raises(PromptTooLongError, match=r"does not fit in the llama\.cpp context of 4096"):
        "".join(engine.stream(long))
    assert "".join(engine.stream(Prompt(MESSAGES))).strip()  # and the engine still answers afterwards
