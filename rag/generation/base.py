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

from rag.generation.passage_states import PassageStateStore
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
