"""The llama.cpp engine: the packaged GGUF run as it is by llama-cpp-python, with our own greedy loop.

llama.cpp reads the 4-bit weights directly (1.1 GB in memory instead of 3+ GB), and its prefill runs
on int8 dot products rather than bf16 matrix multiplies, so it keeps its speed on CPUs without bf16
instructions, where torch's bf16 path is many times slower (`rag bench`). The prompt is the same text
transformers sees: the GGUF's own chat template, rendered with jinja2 the way transformers renders it,
and tokenized by llama.cpp (token for token the same on our prompts, checked by the tests).

The decoding loop is the transformers engine's (`rag.generation.greedy`): prompt-lookup drafts
verified in one pass, logits only where they are read. Llama's own `generate` with a draft model
keeps the logits of every position (n_ctx x vocab floats, 2.5 GB here), so it is not used. The fixed
messages' keys and values are saved once per distinct prefix (a few MB of llama.cpp state) and
restored whenever another prefix (the answer check's) was used in between.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rag.generation.base import GenerationEngine
from rag.generation.greedy import accepted_drafts, prompt_lookup, stream_greedy
from rag.models import ModelError, generator_gguf
from rag.types import Prompt

CONTEXT_TOKENS = 4096  # the longest prompt seen (4 whole passages, 3 turns) is ~1,400 tokens
BATCH_TOKENS = 512
FLASH_ATTENTION = True  # measured: SQuAD 1-8 F1 0.520 with it, 0.499 without (docs/SPEED.md)


class PromptTooLongError(ValueError):
    """The prompt and the answer would not fit in the engine's context."""


class LlamaCppEngine(GenerationEngine):
    """Loads the GGUF once, on first use; generations run one at a time."""

    name = "llama.cpp"

    def __init__(
        self,
        model_name: str,
        cache_dir: Path,
        max_new_tokens: int,
        threads: int = 0,
        prompt_lookup_tokens: int = 0,
    ) -> None:
        self.model_name = model_name
        self.cache_dir = cache_dir
        self.max_new_tokens = max_new_tokens
        self.threads = threads or os.cpu_count() or 1
        self.prompt_lookup_tokens = prompt_lookup_tokens
        self._lock = threading.Lock()
        self._prefix_states: dict[tuple[int, ...], Any] = {}

    @cached_property
    def _llama(self) -> Any:
        from llama_cpp import Llama

        gguf = generator_gguf(self.model_name, self.cache_dir)
        if gguf is None:
            raise ModelError(f"the llama.cpp engine needs a GGUF model; {self.model_name!r} is not one")
        return Llama(
            model_path=str(gguf),
            n_ctx=CONTEXT_TOKENS,
            n_batch=BATCH_TOKENS,
            n_ubatch=BATCH_TOKENS,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            flash_attn=FLASH_ATTENTION,
            verbose=False,
        )

    @cached_property
    def _template(self) -> Any:
        """The GGUF's chat template, compiled as transformers compiles chat templates."""
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        source = self._llama.metadata.get("tokenizer.chat_template")
        if not source:
            raise ModelError(f"{self.model_name} has no chat template in its GGUF metadata")
        return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)

    @cached_property
    def _stops(self) -> set[int]:
        """Every end-of-generation token of the vocabulary (end of text, end of turn, ...)."""
        import llama_cpp

        vocab = self._llama._model.vocab
        return {t for t in range(self._llama.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)}

    def load(self) -> None:
        _ = self._llama, self._template, self._stops

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream(self, prompt: Prompt, cancel: threading.Event | None = None) -> Iterator[str]:
        with self._lock:
            tokens, logits = self._prefill(prompt)
            yield from stream_greedy(
                int(np.argmax(logits)),
                lambda answer: self._step(tokens + answer),
                self._text,
                self._stops,
                prompt.max_new_tokens or self.max_new_tokens,
                cancel,
            )

    def yes_log_odds(self, prompt: Prompt) -> float:
        words = {w: [self._token(f) for f in (w, w.capitalize())] for w in ("yes", "no")}
        with self._lock:
            _, logits = self._prefill(prompt)
        scores = logits.astype(np.float64)
        scores -= np.logaddexp.reduce(scores)  # log-softmax
        return float(np.logaddexp.reduce(scores[words["yes"]]) - np.logaddexp.reduce(scores[words["no"]]))

    # ---- the forward passes ----------------------------------------------------------------

    def _prefill(self, prompt: Prompt) -> tuple[list[int], np.ndarray]:
        """Read the prompt after its fixed messages (restored from their saved state): its tokens, and the
        next-token logits at its last position. Callers hold the lock."""
        tokens = self._chat_tokens(prompt.messages, add_generation_prompt=True)
        answer_tokens = prompt.max_new_tokens or self.max_new_tokens
        if len(tokens) + answer_tokens > CONTEXT_TOKENS:
            raise PromptTooLongError(
                f"the prompt is {len(tokens)} tokens; with {answer_tokens} for the answer it does not fit "
                f"in the llama.cpp context of {CONTEXT_TOKENS} (fewer passages or a shorter conversation would)"
            )
        prefix = self._chat_tokens(prompt.messages[: prompt.fixed], add_generation_prompt=False)
        llama = self._llama
        llama.n_tokens = self._restore_prefix(prefix, tokens)
        llama.eval(tokens[llama.n_tokens :])  # drops whatever the context held past the prefix first
        return tokens, self._logits(1)[0]

    def _restore_prefix(self, prefix: list[int], tokens: list[int]) -> int:
        """Put the fixed messages' keys and values in the context; returns how many prompt tokens they are.

        Only the sequence's own state is saved (llama_state_seq_*: its keys and values, ~4 MB for the
        system prompt); Llama.save_state would also copy a logits row per token (~80 MB).
        """
        import llama_cpp

        llama = self._llama
        if len(prefix) >= len(tokens) or tokens[: len(prefix)] != prefix:
            return 0
        if llama.n_tokens >= len(prefix) and llama.input_ids[: len(prefix)].tolist() == prefix:
            return len(prefix)  # still in the context from the last prompt
        key = tuple(prefix)
        ctx = llama._ctx.ctx
        if key in self._prefix_states:
            state = self._prefix_states[key]
            llama._ctx.kv_cache_clear()
            if llama_cpp.llama_state_seq_set_data(ctx, state, len(state), 0) == 0:
                raise RuntimeError("llama.cpp refused the saved state of the fixed messages")
            llama.input_ids[: len(prefix)] = prefix
        else:
            llama.n_tokens = 0
            llama.eval(prefix)
            state = (ctypes.c_uint8 * llama_cpp.llama_state_seq_get_size(ctx, 0))()
            llama_cpp.llama_state_seq_get_data(ctx, state, len(state), 0)
            self._prefix_states[key] = state
        return len(prefix)

    def _step(self, tokens: list[int]) -> list[int]:
        """Decode from the last token with prompt-lookup drafts in the same pass; the context holds every token
        but the last before and after (as in the transformers engine)."""
        llama = self._llama
        drafts = prompt_lookup(tokens, self.prompt_lookup_tokens)
        batch = [tokens[-1], *drafts]
        start = llama.n_tokens
        llama._batch.set_batch(batch=batch, n_past=start, logits_all=True)
        llama._ctx.decode(llama._batch)
        llama.input_ids[start : start + len(batch)] = batch
        predicted = self._logits(len(batch)).argmax(axis=1).tolist()
        accepted = accepted_drafts(drafts, predicted, self._stops)
        llama.n_tokens = start + 1 + accepted
        llama._ctx.kv_cache_seq_rm(-1, llama.n_tokens, -1)  # drop the rejected drafts
        return predicted[: accepted + 1]

    def _logits(self, rows: int) -> np.ndarray:
        """The logits of the last pass's `rows` output positions, copied out of llama.cpp's buffer."""
        pointer = self._llama._ctx.get_logits()
        return np.ctypeslib.as_array(pointer, shape=(rows, self._llama.n_vocab())).copy()

    # ---- text and tokens -------------------------------------------------------------------

    def _chat_tokens(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> list[int]:
        text = self._template.render(messages=messages, add_generation_prompt=add_generation_prompt)
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def _text(self, tokens: list[int]) -> str:
        return self._llama.detokenize(tokens).decode("utf-8", errors="replace")

    def _token(self, word: str) -> int:
        return self._llama.tokenize(word.encode("utf-8"), add_bos=False, special=False)[0]
