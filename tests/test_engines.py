"""What every generation engine promises the Assistant (rag.generation.base), checked on each engine for real:
whole characters streamed, cancel between steps, and a finite, repeatable yes/no verdict."""

from __future__ import annotations

import threading

import pytest
from conftest import MESSAGES, PASSAGE, float_transformers_engine

from rag.generation.base import GenerationEngine
from rag.generation.llamacpp import LlamaCppEngine
from rag.settings import Settings
from rag.types import Prompt

CHECK = Prompt(
    [
        {"role": "system", "content": "Reply with yes or no."},
        {"role": "user", "content": f"Passage: {PASSAGE}\n\nDoes the canteen serve fish on Fridays?"},
    ]
)
# How close a verdict from the cached prefix is to the first: float32 torch is exact to rounding; llama.cpp
# restores its saved state and re-reads the rest with its own kernels.
REPEAT_TOLERANCE = {"transformers": 1e-4, "llama.cpp": 1e-3}


@pytest.fixture(scope="module", params=["transformers", "llama.cpp"])
def engine(request: pytest.FixtureRequest) -> GenerationEngine:
    if request.param == "transformers":
        return float_transformers_engine()
    return LlamaCppEngine("smollm2-135m", Settings().cache_dir, max_new_tokens=40, prompt_lookup_tokens=3)


def test_pieces_are_whole_characters_and_cancel_stops_between_steps(engine: GenerationEngine) -> None:
    cancel = threading.Event()
    pieces = []
    for piece in engine.stream(Prompt(MESSAGES), cancel):
        pieces.append(piece)
        cancel.set()
    assert len(pieces) == 1 and pieces[0]
    full = list(engine.stream(Prompt(MESSAGES)))
    assert len(full) > 1 and all("\ufffd" not in p for p in full)


def test_yes_log_odds_is_a_finite_verdict_again_from_the_cached_prefix(engine: GenerationEngine) -> None:
    first = engine.yes_log_odds(CHECK)
    assert first == first and abs(first) < 50  # a number, not nan or inf
    assert engine.yes_log_odds(CHECK) == pytest.approx(first, abs=REPEAT_TOLERANCE[engine.name])
