"""What every generation engine offers the pipeline: stream a greedy answer, and judge a yes/no question.

The `Assistant` and the evaluation depend on this interface only, so an engine is swapped by settings.
An engine is cheap to construct; the model loads in `load` or on first use. Generations run one at a
time per engine (the caller queues them), and every engine caches the keys and values of a prompt's
`fixed` leading messages, which are the same for every question. The in-process engines also keep
passage states (rag.generation.passage_states): each passage's keys and values, computed once; an
engine without them (a model server, whose own prefix cache does this work) reads prompts whole.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from rag.generation.context import MissingState, Plan
from rag.generation.passage_states import PassageState, PassageStateStore
from rag.types import Prompt


class GenerationEngine(ABC):
    """One way of running the generator model; `name` is its `generator_engine` setting."""

    name: ClassVar[str]
    passage_states: PassageStateStore | None = None  # where this engine keeps passage states; None: it keeps none

    @abstractmethod
    def load(self) -> None:
        """Pay the load cost now (e.g. at server start) rather than on the first question."""

    @abstractmethod
    def stream(self, prompt: Prompt, cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the text of the greedy answer as it is decoded; setting `cancel` stops it between tokens."""

    @abstractmethod
    def yes_log_odds(self, prompt: Prompt) -> float:
        """log P(yes) - log P(no) for the first token of the reply: the model's verdict on a yes/no question."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens in `text` by this model's tokenizer, e.g. to turn a streamed answer's time into tokens/s."""

    def answer_tokens(self, text: str) -> list[int]:
        """`text` as this model's tokens, for reading a recorded answer again (`continuation_log_probs`)."""
        raise NotImplementedError(f"the {self.name} engine does not show its tokens")

    def continuation_log_probs(self, prompt: Prompt, continuation: list[int]) -> np.ndarray:
        """Teacher forcing: row i is log P(next token | prompt, continuation[:i]) over the whole vocabulary.

        What `rag eval fidelity` compares between two readings of the same prompt (full reading against
        passage states, say); an engine without next-token scores (a model server) cannot be measured so.
        """
        raise NotImplementedError(f"the {self.name} engine gives no next-token scores to measure fidelity with")

    def ping(self) -> None:
        """Raise `DependencyUnavailable` if the engine cannot answer now (`/readyz`); an engine in this process
        always can once loaded."""
        return None

    def missing_passage_states(self, prompt: Prompt) -> int:
        """How many of the prompt's passages would be read in full for want of a state (0 without states)."""
        return 0

    def store_passage_states(self, prompt: Prompt, cancel: threading.Event | None = None) -> int:
        """Compute and keep the states the prompt's passages lack; how many were computed (0 without states)."""
        return 0


class PassageStateEngine(GenerationEngine):
    """An engine in this process that keeps passage states: what is shared by how it plans a prompt and makes
    the states it lacks; each engine says how it plans (`_plan`) and how it reads one passage's state out of
    its own cache (`_passage_state`)."""

    _lock: threading.Lock  # one generation or passage reading at a time

    @abstractmethod
    def _plan(self, prompt: Prompt) -> Plan:
        """The prompt as pieces: what the context may keep, place from a state, or must read."""

    @abstractmethod
    def _passage_state(self, missing: MissingState, fixed: int) -> PassageState | None:
        """Read `missing`'s passage after its head and return its keys and values (None if the engine could
        not take them out); the caller holds the lock."""

    def missing_passage_states(self, prompt: Prompt) -> int:
        with self._lock:
            return len(self._plan(prompt).missing)

    def store_passage_states(self, prompt: Prompt, cancel: threading.Event | None = None) -> int:
        """Compute and keep the state of each of the prompt's passages that has none; how many were computed.

        The lock is taken for one passage at a time, so a question waits for at most one passage's reading.
        """
        if self.passage_states is None:
            return 0
        with self._lock:
            plan = self._plan(prompt)
        done = 0
        for missing in plan.missing:
            if cancel is not None and cancel.is_set():
                break
            with self._lock:
                if self.passage_states.has(missing.key):
                    continue
                state = self._passage_state(missing, plan.fixed)
            if state is not None:
                self.passage_states.put(missing.key, state)
                done += 1
        return done
