"""The llama.cpp engine: the packaged GGUF run as it is by llama-cpp-python, with our own greedy loop.

llama.cpp reads the 4-bit weights directly (1.1 GB in memory instead of 3+ GB), and its prefill runs
on int8 dot products rather than bf16 matrix multiplies, so it keeps its speed on CPUs without bf16
instructions, where torch's bf16 path is many times slower (`rag bench`). The prompt is the same text
transformers sees: the GGUF's own chat template, rendered with jinja2 the way transformers renders it,
and tokenized by llama.cpp (token for token the same on our prompts, checked by the tests).

The decoding loop is the transformers engine's (`rag.generation.greedy`): prompt-lookup drafts
verified in one pass, logits only where they are read. Llama's own `generate` with a draft model
keeps the logits of every position (n_ctx x vocab floats, 2.5 GB here), so it is not used.

What the context holds is tracked piece by piece (`rag.generation.context`): the fixed messages
(their state saved once in memory), passages whose keys and values come from their passage state
(computed once after the prompt's head, kept on disk, placed at their position by llama.cpp's
position shift through a scratch sequence, as in llama.cpp's own examples), and tokens read in place.
A prompt reads only what the context does not already hold, so a check that asks its yes/no question
after the answer's own passages and draft reads just that question.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rag.generation.base import PassageStateEngine
from rag.generation.context import MissingState, Piece, Plan, plan_prompt, state_plan
from rag.generation.greedy import accepted_drafts, prompt_lookup, stream_greedy
from rag.generation.passage_states import PassageState, PassageStateStore
from rag.models import ModelError, generator_gguf
from rag.types import Prompt

CONTEXT_TOKENS = 4096  # the longest prompt seen (4 whole passages, 3 turns) is ~1,400 tokens
BATCH_TOKENS = 512
FLASH_ATTENTION = True  # measured: SQuAD 1-8 F1 0.520 with it, 0.499 without (docs/speed.md)


class PromptTooLongError(ValueError):
    """The prompt and the answer would not fit in the engine's context."""


class LlamaCppEngine(PassageStateEngine):
    """Loads the GGUF once, on first use; generations run one at a time."""

    name = "llama.cpp"

    def __init__(
        self,
        model_name: str,
        cache_dir: Path,
        max_new_tokens: int,
        threads: int = 0,
        prompt_lookup_tokens: int = 0,
        passage_states: PassageStateStore | None = None,
    ) -> None:
        self.model_name = model_name
        self.cache_dir = cache_dir
        self.max_new_tokens = max_new_tokens
        self.threads = threads or os.cpu_count() or 1
        self.prompt_lookup_tokens = prompt_lookup_tokens
        self.passage_states = passage_states
        self._lock = threading.Lock()
        self._prefix_states: dict[tuple[int, ...], Any] = {}
        self._held: list[Any] = []  # the identity of every token the context holds (rag.generation.context)

    @cached_property
    def _llama(self) -> Any:
        import llama_cpp
        from llama_cpp import Llama
        from llama_cpp._internals import LlamaContext

        gguf = generator_gguf(self.model_name, self.cache_dir)
        if gguf is None:
            raise ModelError(f"the llama.cpp engine needs a GGUF model; {self.model_name!r} is not one")
        llama = Llama(
            model_path=str(gguf),
            n_ctx=CONTEXT_TOKENS,
            n_batch=BATCH_TOKENS,
            n_ubatch=BATCH_TOKENS,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            flash_attn=FLASH_ATTENTION,
            verbose=False,
        )
        # A second sequence, sharing the one cache (unified), is where a passage state is loaded and shifted to
        # its place before it joins the answer's sequence; Llama has no parameter for it, so its context is
        # made again with one (the first is freed first: the cache is ~100 MB).
        params = llama.context_params
        params.n_seq_max = 2
        params.kv_unified = True
        llama._ctx.close()
        llama._ctx = llama._stack.enter_context(
            contextlib.closing(LlamaContext(model=llama._model, params=params, verbose=False))
        )
        if llama_cpp.llama_n_seq_max(llama._ctx.ctx) < 2:
            raise ModelError("llama.cpp made a context without the second sequence that passage states need")
        return llama

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

    @cached_property
    def state_id(self) -> str:
        """What a passage state of this engine depends on besides its tokens: the model file and the cache's layout."""
        gguf = generator_gguf(self.model_name, self.cache_dir)
        stat = gguf.stat() if gguf else None
        params = self._llama.context_params
        cache = f"k{params.type_k}v{params.type_v}fa{int(FLASH_ATTENTION)}"
        return f"llama.cpp/{gguf and gguf.name}/{stat and stat.st_size}/{cache}"

    def load(self) -> None:
        _ = self._llama, self._template, self._stops

    def count_tokens(self, text: str) -> int:
        return len(self.answer_tokens(text))

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

    def answer_tokens(self, text: str) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def continuation_log_probs(self, prompt: Prompt, continuation: list[int]) -> np.ndarray:
        with self._lock:
            _, logits = self._prefill(prompt)
            rows = [logits[None]]
            llama = self._llama
            forced = continuation[:-1]
            for first in range(0, len(forced), BATCH_TOKENS):
                batch = forced[first : first + BATCH_TOKENS]
                start = llama.n_tokens
                rows.append(self._decode(batch))
                llama.n_tokens = start + len(batch)
                self._held = self._held[:start] + batch
        scores = np.concatenate(rows).astype(np.float32)
        return scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)

    def _passage_state(self, missing: MissingState, fixed: int) -> PassageState | None:
        """The passage's cells, copied to the scratch sequence and saved from there."""
        import llama_cpp

        self._materialize(state_plan(missing, fixed))
        llama = self._llama
        ctx, memory = llama._ctx.ctx, llama._ctx.memory
        start = len(missing.head)
        llama_cpp.llama_memory_seq_cp(memory, 0, 1, start, start + len(missing.body))
        state = (ctypes.c_uint8 * llama_cpp.llama_state_seq_get_size(ctx, 1))()
        written = llama_cpp.llama_state_seq_get_data(ctx, state, len(state), 1)
        llama_cpp.llama_memory_seq_rm(memory, 1, -1, -1)
        return PassageState(len(missing.body), bytes(state)[:written]) if written else None

    # ---- the forward passes ----------------------------------------------------------------

    def _plan(self, prompt: Prompt) -> Plan:
        plan = plan_prompt(prompt, self._render, self._tokenize, self._token_bytes, self.state_id, self.passage_states)
        answer_tokens = prompt.max_new_tokens or self.max_new_tokens
        if len(plan.tokens) + answer_tokens > CONTEXT_TOKENS:
            raise PromptTooLongError(
                f"the prompt is {len(plan.tokens)} tokens; with {answer_tokens} for the answer it does not fit "
                f"in the llama.cpp context of {CONTEXT_TOKENS} (fewer passages or a shorter conversation would)"
            )
        return plan

    def _prefill(self, prompt: Prompt) -> tuple[list[int], np.ndarray]:
        """Make the context hold the prompt (reading only what it does not hold yet): its tokens, and the
        next-token logits at its last position. Callers hold the lock."""
        plan = self._plan(prompt)
        self._materialize(plan)
        return plan.tokens, self._logits(1)[0]

    def _materialize(self, plan: Plan) -> None:
        """Keep what the context shares with the plan (`Plan.reusable`), then restore, place or read the rest,
        piece by piece; a state that cannot be read is read in place."""
        llama = self._llama
        keep = plan.reusable(self._held, beyond_fixed=self.passage_states is not None)
        if keep < plan.fixed:
            keep = self._restore_prefix(plan.tokens[: plan.fixed])
        llama.n_tokens = keep
        llama._ctx.kv_cache_seq_rm(-1, keep, -1)
        held = self._held[:keep]
        for _, piece in plan.pieces_after(keep):
            if piece.state and self._place(piece):
                held += piece.identities()
            else:
                llama.eval(piece.tokens)
                held += piece.tokens
        self._held = held

    def _place(self, piece: Piece) -> bool:
        """Put a passage state's keys and values (the piece's part of them) right after what the context holds:
        loaded into the scratch sequence 1, cut to the piece, shifted to its place (llama.cpp rotates the keys),
        then joined to sequence 0."""
        import llama_cpp

        assert self.passage_states is not None
        state = self.passage_states.get(piece.state)
        if state is None or state.tokens != piece.of:
            return False
        llama = self._llama
        ctx, memory = llama._ctx.ctx, llama._ctx.memory
        data = (ctypes.c_uint8 * len(state.data)).from_buffer_copy(state.data)
        if llama_cpp.llama_state_seq_set_data(ctx, data, len(data), 1) == 0:
            llama_cpp.llama_memory_seq_rm(memory, 1, -1, -1)
            return False
        start = llama_cpp.llama_memory_seq_pos_min(memory, 1) + piece.first
        end = start + len(piece.tokens)
        llama_cpp.llama_memory_seq_rm(memory, 1, -1, start)  # an excerpt: the text around it goes
        llama_cpp.llama_memory_seq_rm(memory, 1, end, -1)
        if llama.n_tokens != start:
            llama_cpp.llama_memory_seq_add(memory, 1, -1, -1, llama.n_tokens - start)
        llama_cpp.llama_memory_seq_cp(memory, 1, 0, -1, -1)
        llama_cpp.llama_memory_seq_rm(memory, 1, -1, -1)
        position = llama.n_tokens
        llama.input_ids[position : position + len(piece.tokens)] = piece.tokens
        llama.n_tokens = position + len(piece.tokens)
        return True

    def _restore_prefix(self, prefix: list[int]) -> int:
        """Put the fixed messages' keys and values in an empty context; returns how many tokens they are.

        Only the sequence's own state is saved (llama_state_seq_*: its keys and values, ~4 MB for the
        system prompt); Llama.save_state would also copy a logits row per token (~80 MB).
        """
        import llama_cpp

        llama = self._llama
        llama._ctx.kv_cache_clear()
        llama.n_tokens = 0
        self._held = []
        if not prefix:
            return 0
        key = tuple(prefix)
        ctx = llama._ctx.ctx
        if key in self._prefix_states:
            state = self._prefix_states[key]
            if llama_cpp.llama_state_seq_set_data(ctx, state, len(state), 0) == 0:
                raise RuntimeError("llama.cpp refused the saved state of the fixed messages")
            llama.input_ids[: len(prefix)] = prefix
        else:
            llama.eval(prefix)
            state = (ctypes.c_uint8 * llama_cpp.llama_state_seq_get_size(ctx, 0))()
            llama_cpp.llama_state_seq_get_data(ctx, state, len(state), 0)
            self._prefix_states[key] = state
        self._held = list(prefix)
        return len(prefix)

    def _step(self, tokens: list[int]) -> list[int]:
        """Decode from the last token with prompt-lookup drafts in the same pass; the context holds every token
        but the last before and after (as in the transformers engine)."""
        llama = self._llama
        drafts = prompt_lookup(tokens, self.prompt_lookup_tokens)
        batch = [tokens[-1], *drafts]
        start = llama.n_tokens
        predicted = self._decode(batch).argmax(axis=1).tolist()
        accepted = accepted_drafts(drafts, predicted, self._stops)
        llama.n_tokens = start + 1 + accepted
        llama._ctx.kv_cache_seq_rm(-1, llama.n_tokens, -1)  # drop the rejected drafts
        self._held = self._held[:start] + batch[: accepted + 1]
        return predicted[: accepted + 1]

    def _decode(self, batch: list[int]) -> np.ndarray:
        """Read `batch` right after what the context holds, with the logits of every position; the caller sets
        how many of its tokens the context keeps (`n_tokens`, `_held`)."""
        llama = self._llama
        start = llama.n_tokens
        llama._batch.set_batch(batch=batch, n_past=start, logits_all=True)
        llama._ctx.decode(llama._batch)
        llama.input_ids[start : start + len(batch)] = batch
        return self._logits(len(batch))

    def _logits(self, rows: int) -> np.ndarray:
        """The logits of the last pass's `rows` output positions, copied out of llama.cpp's buffer."""
        pointer = self._llama._ctx.get_logits()
        return np.ctypeslib.as_array(pointer, shape=(rows, self._llama.n_vocab())).copy()

    # ---- text and tokens -------------------------------------------------------------------

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt)

    def _chat_tokens(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> list[int]:
        return self._tokenize(self._render(messages, add_generation_prompt))

    def _tokenize(self, text: str) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def _token_bytes(self, token: int) -> bytes:
        return self._llama.detokenize([token])

    def _text(self, tokens: list[int]) -> str:
        return self._llama.detokenize(tokens).decode("utf-8", errors="replace")

    def _token(self, word: str) -> int:
        return self._llama.tokenize(word.encode("utf-8"), add_bos=False, special=False)[0]
