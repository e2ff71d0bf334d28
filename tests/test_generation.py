"""The decoding loop: greedy transformers output token for token, prompt lookup, prefix cache, cancel."""

from __future__ import annotations

import pytest
from conftest import MESSAGES, PASSAGE, float_transformers_engine

from rag.generation.greedy import prompt_lookup
from rag.generation.transformers.engine import TransformersEngine
from rag.types import Prompt


def test_prompt_lookup_continues_the_latest_longest_match() -> None:
    tokens = [1, 2, 3, 9, 1, 2, 3, 4, 5, 6, 7, 2, 3]
    assert prompt_lookup(tokens, 3) == [4, 5, 6]  # "2 3" last seen before "4 5 6"
    assert prompt_lookup([5, 6, 7, 8], 3) == []  # nothing repeats
    assert prompt_lookup([4, 5, 4], 3) == [5, 4]  # the match may run into the tail itself
    assert prompt_lookup(tokens, 0) == []


@pytest.fixture(scope="module")
def float_generator() -> TransformersEngine:
    return float_transformers_engine()


def _transformers_greedy(generator: TransformersEngine, messages: list[dict[str, str]] = MESSAGES) -> str:
    import torch

    tokenizer, model = generator._loaded
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=40, do_sample=False, temperature=None, top_p=None, top_k=None)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_answer_is_transformers_greedy_answer_with_and_without_lookup(float_generator: TransformersEngine) -> None:
    expected = _transformers_greedy(float_generator)
    assert expected.strip()
    first = "".join(float_generator.stream(Prompt(MESSAGES)))
    again = "".join(float_generator.stream(Prompt(MESSAGES)))  # now from the cached system prefix
    float_generator.prompt_lookup_tokens = 0
    try:
        plain = "".join(float_generator.stream(Prompt(MESSAGES)))
    finally:
        float_generator.prompt_lookup_tokens = 3
    assert first == again == plain == expected
    assert len(float_generator._prefix_caches) == 1


def test_worked_examples_are_cached_with_the_system_prompt_and_change_nothing(
    float_generator: TransformersEngine,
) -> None:
    example = [
        {"role": "user", "content": f"Passage: {PASSAGE}\n\nQuestion: What does it serve on Fridays?"},
        {"role": "assistant", "content": "Fish."},
    ]
    messages = MESSAGES[:1] + example + MESSAGES[1:]
    expected = _transformers_greedy(float_generator, messages)
    before = set(float_generator._prefix_caches)
    assert "".join(float_generator.stream(Prompt(messages, fixed=3))) == expected
    (added,) = set(float_generator._prefix_caches) - before
    tokenizer, _ = float_generator._loaded
    assert list(added) == tokenizer.apply_chat_template(messages[:3], return_dict=True)["input_ids"]
    assert "".join(float_generator.stream(Prompt(messages, fixed=3))) == expected  # from that cache
