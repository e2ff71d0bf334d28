"""Passage states: the store on disk (keys, checksums, budget) and the llama.cpp engine placing them, on the
tiny SmolLM2 GGUF (the default model's path is in test_e2e.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rag.answering.prompts import build_prompt, passage_segments
from rag.generation.llamacpp import LlamaCppEngine
from rag.generation.passage_states import PassageState, PassageStateStore, StateWorker, state_key
from rag.generation.transformers.engine import TransformersEngine
from rag.settings import Settings
from rag.types import Chunk, Passage, Prompt

CANTEEN = (
    "The canteen on the third floor opens at noon every weekday and closes at half past two. "
    "On Fridays it serves fish, and the coffee machine next to it is free for visitors."
)
PARKING = "Visitors park in the north car park; the barrier opens with the code printed on the invitation."


def _passage(text: str, title: str, n: int) -> Passage:
    return Passage(Chunk(f"d{n}:0", f"d{n}", 0, text, 0, len(text)), title, f"doc{n}.txt", 1.0, 1.0)


PASSAGES = [_passage(CANTEEN, "Canteen hours", 1), _passage(PARKING, "Parking for visitors", 2)]


# ---- the store ------------------------------------------------------------------------------


def test_a_state_comes_back_as_it_was_written(tmp_path: Path) -> None:
    store = PassageStateStore(tmp_path, 10_000)
    key = state_key("engine", [1, 2, 3], [4, 5])
    assert store.get(key) is None and not store.has(key)
    store.put(key, PassageState(2, b"keys and values"))
    assert store.has(key) and store.get(key) == PassageState(2, b"keys and values")
    assert store.count() == 1 and store.size_bytes() > len(b"keys and values")


def test_keys_change_with_the_engine_the_head_and_the_text() -> None:
    key = state_key("engine", [1, 2, 3], [4, 5])
    assert len({key, state_key("other", [1, 2, 3], [4, 5]), state_key("engine", [1, 2], [3, 4, 5])}) == 3
    assert state_key("engine", [1, 2, 3], [4, 6]) != key
    assert state_key("engine", [1, 2, 3], [4, 5]) == key


def test_a_damaged_or_half_written_state_is_never_read(tmp_path: Path) -> None:
    store = PassageStateStore(tmp_path, 10_000)
    key = state_key("engine", [1], [2])
    store.put(key, PassageState(1, b"0123456789" * 10))
    path = next(tmp_path.glob("*/*.kv"))
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # one flipped byte
    path.write_bytes(bytes(raw))
    assert store.get(key) is None
    assert not path.exists()  # deleted: the passage is read in full and its state made again
    path.write_bytes(bytes(raw[: len(raw) // 2]))  # cut off mid-write (a crash before the rename)
    assert store.get(key) is None
    # a write in progress is under another name, which is never read
    store.put(key, PassageState(1, b"x"))
    assert [p.suffix for p in tmp_path.glob("*/*")] == [".kv"]


def test_the_least_recently_used_states_leave_first_when_the_budget_is_full(tmp_path: Path) -> None:
    store = PassageStateStore(tmp_path, 3 * 1100)
    keys = [state_key("engine", [], [i]) for i in range(4)]
    for n, key in enumerate(keys[:3]):
        store.put(key, PassageState(1, bytes(1000)))
        stamp = 1_000_000 + n
        os.utime(store._path(key), (stamp, stamp))
    assert store.get(keys[0]) is not None  # used now: the most recent
    store.put(keys[3], PassageState(1, bytes(1000)))
    assert store.has(keys[0]) and store.has(keys[3])
    assert not store.has(keys[1])  # the least recently used went first
    assert store.size_bytes() <= 3 * 1100
    store.put(state_key("engine", [], [9]), PassageState(1, bytes(5000)))  # larger than the whole budget
    assert store.count() <= 3


def test_the_worker_runs_jobs_in_the_background(tmp_path: Path) -> None:
    done = []
    worker = StateWorker()
    try:
        assert worker.submit(lambda stop: done.append(1))
        worker.submit(lambda stop: 1 / 0)  # a failed job is only a state not made
        worker.submit(lambda stop: done.append(2))
        worker.join()
        assert done == [1, 2] and worker.idle()
    finally:
        worker.close()


# ---- the engine -----------------------------------------------------------------------------


Engine = LlamaCppEngine | TransformersEngine


@pytest.fixture(params=["llama.cpp", "transformers"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    store = PassageStateStore(tmp_path / "states", 1024**3)
    if request.param == "llama.cpp":
        return LlamaCppEngine("smollm2-135m", Settings().cache_dir, 24, passage_states=store)
    return TransformersEngine("smollm2-135m", Settings().cache_dir, 24, passage_states=store)


def _counting_reads(engine: Engine) -> list[int]:
    """The number of tokens of each forward pass over the prompt the engine makes from now on."""
    reads: list[int] = []
    if isinstance(engine, LlamaCppEngine):
        llama = engine._llama
        original = llama.eval

        def counted(tokens: list[int]) -> None:
            reads.append(len(tokens))
            original(tokens)

        llama.eval = counted
    else:
        _, model = engine._loaded
        forward = model.forward

        def counted_forward(*args, input_ids, **kwargs):  # type: ignore[no-untyped-def]
            reads.append(input_ids.shape[1])
            return forward(*args, input_ids=input_ids, **kwargs)

        model.forward = counted_forward
    return reads


def _logits(engine: Engine, prompt) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    with engine._lock, torch.inference_mode():
        logits = engine._prefill(prompt)[1]
    return logits if isinstance(logits, np.ndarray) else logits.float().numpy()


def _text(engine: Engine, tokens: list[int]) -> str:
    if isinstance(engine, LlamaCppEngine):
        return engine._text(tokens)
    tokenizer, _ = engine._loaded
    return tokenizer.decode(tokens)


def test_with_states_a_question_reads_only_the_passage_leads_and_its_own_words(engine: Engine) -> None:
    prompt = build_prompt("When does the canteen open?", PASSAGES, [])
    assert engine.missing_passage_states(prompt) == 2
    assert engine.store_passage_states(prompt) == 2
    assert engine.missing_passage_states(prompt) == 0 and engine.store_passage_states(prompt) == 0
    plan = engine._plan(prompt)
    from_states = sum(len(p.tokens) for p in plan.pieces if p.state)
    engine._held = []  # an empty context but for what the engine keeps in memory
    reads = _counting_reads(engine)
    with engine._lock:
        _ = engine._materialize(plan) if isinstance(engine, LlamaCppEngine) else _logits_unlocked(engine, plan)
    assert from_states > 40
    assert sum(reads) <= len(plan.tokens) - from_states  # the bodies were placed, not read
    assert "".join(engine.stream(prompt)).strip()
    # One passage: its state (made right after the head) placed after its "[1] title" line reads almost as the
    # passage read in place after that line does.
    single = build_prompt("When does the canteen open?", PASSAGES[:1], [])
    engine._held = []
    placed = _logits(engine, single)
    engine._held = []
    read = _logits(engine, _without_states(single))
    assert int(placed.argmax()) == int(read.argmax())
    assert _cosine(placed, read) > 0.98


def _logits_unlocked(engine: TransformersEngine, plan):  # type: ignore[no-untyped-def]
    import torch

    with torch.inference_mode():
        return engine._materialize(plan)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _without_states(prompt):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(prompt, passages=())


def test_placed_states_move_to_any_rank_and_past_a_conversation(engine: Engine) -> None:
    """Ranked second, or after earlier turns, a body's keys are rotated to its new place: the model still reads it."""
    from rag.types import Turn

    swapped = list(reversed(PASSAGES))
    history = [Turn("Where is the canteen?", "On the third floor [1].")]
    for prompt in (
        build_prompt("When does the canteen open?", swapped, []),
        build_prompt("And when does it open?", swapped, history),
    ):
        engine.store_passage_states(prompt)
        assert engine.missing_passage_states(prompt) == 0
        engine._held = []
        stitched = _logits(engine, prompt)
        engine._held = []
        read = _logits(engine, _without_states(prompt))
        assert _cosine(stitched, read) > 0.95


def test_an_excerpt_is_placed_from_its_whole_passage_state(engine: Engine) -> None:
    """A question's excerpt of a passage (its sentences nearest the question) is the part of the whole passage's
    state that covers it: no other state is made, and the model reads it as it reads the excerpt in place."""
    whole = build_prompt("", PASSAGES, [])
    engine.store_passage_states(whole)
    sentence = CANTEEN.index("On Fridays")
    text = CANTEEN[sentence:]
    excerpt = Passage(Chunk("d1:0", "d1", 0, text, sentence, len(CANTEEN)), "Canteen hours", "doc1.txt", 1.0, 1.0)
    question = "What does the canteen serve on Fridays?"
    prompt = build_prompt(question, [excerpt, PASSAGES[1]], [], whole=PASSAGES)
    assert prompt.passages[0].body == text and prompt.passages[0].source == CANTEEN
    assert engine.missing_passage_states(prompt) == 0
    plan = engine._plan(prompt)
    placed = next(p for p in plan.pieces if p.state)
    assert placed.first > 0 and len(placed.tokens) < placed.of  # a part of the whole passage's state
    assert _text(engine, placed.tokens).strip() == text
    engine._held = []
    stitched = _logits(engine, prompt)
    engine._held = []
    read = _logits(engine, _without_states(prompt))
    assert _cosine(stitched, read) > 0.95


def test_rereading_each_passages_first_tokens_reads_them_in_place_and_places_the_rest(engine: Engine) -> None:
    """With `reread_tokens`, each passage's first tokens are read after the passages before it, the rest of its
    state placed after them: the prompt's tokens are unchanged, and the model reads it as the prompt read whole."""
    prompt = build_prompt("When does the canteen open?", PASSAGES, [])
    engine.store_passage_states(prompt)
    assert engine.passage_states is not None
    base = engine._plan(prompt)
    engine.passage_states.reread_tokens = 8
    plan = engine._plan(prompt)
    assert plan.tokens == base.tokens
    placed = [p for p in plan.pieces if p.state]
    assert len(placed) == 2 and all(p.first == 8 for p in placed)
    assert sum(len(p.tokens) for p in placed) == sum(len(p.tokens) for p in base.pieces if p.state) - 16
    engine._held = []
    repaired = _logits(engine, prompt)
    engine._held = []
    read = _logits(engine, _without_states(prompt))
    assert _cosine(repaired, read) > 0.95


def test_a_damaged_state_is_read_in_place_with_the_same_result(engine: Engine, tmp_path: Path) -> None:
    prompt = build_prompt("When does the canteen open?", PASSAGES, [])
    engine.store_passage_states(prompt)
    for path in (tmp_path / "states").glob("*/*.kv"):
        path.write_bytes(path.read_bytes()[:-10])  # every state cut short
    engine._held = []
    damaged = _logits(engine, prompt)
    assert engine.missing_passage_states(prompt) == 2  # found damaged, deleted
    engine._held = []
    assert np.allclose(damaged, _logits(engine, prompt))  # the same as reading every passage in place


def test_a_check_after_the_answer_reads_only_its_own_question(engine: Engine) -> None:
    prompt = build_prompt("When does the canteen open?", PASSAGES, [])
    engine.store_passage_states(prompt)
    draft = "".join(engine.stream(prompt)).strip()
    reads = _counting_reads(engine)
    ask = "Does passage [1] answer the question? Reply yes or no."
    follow = Prompt(
        [*prompt.messages, {"role": "assistant", "content": draft}, {"role": "user", "content": ask}],
        prompt.fixed,
        passages=prompt.passages,
    )
    after_answer = engine.yes_log_odds(follow)
    ask_tokens = engine.count_tokens(follow.messages[-1]["content"])
    assert sum(reads) <= ask_tokens + 12  # the question, its turn markers and what the draft's end re-reads
    engine._held = []  # the same check on an empty context: everything placed or read again
    assert abs(engine.yes_log_odds(follow) - after_answer) < 0.5


def test_segments_are_the_prompt_text_and_a_body_is_the_same_at_every_rank() -> None:
    prompt = build_prompt("When does the canteen open?", PASSAGES, [])
    text = prompt.messages[-1]["content"]
    assert "".join(s.lead + s.body for s in prompt.passages) in text
    assert text.startswith("Passages:\n\n[1] Canteen hours\n" + CANTEEN + "\n\n[2] Parking")
    first, second = passage_segments([("A", "x"), ("B", "y")]), passage_segments([("B", "y"), ("A", "x")])
    assert first[0].body == second[1].body
    assert first[0].lead != second[1].lead
