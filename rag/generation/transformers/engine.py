"""Text generation with a local transformers model, streamed piece by piece.

Two levers make CPU decoding fast (measured by `rag bench`, see docs/BENCHMARKS.md): int4 weights for
decoding (`quantization` beside this module), and prompt lookup: answers copy spans from the passages, so
drafting the next few tokens from an earlier match in the prompt and verifying them in one forward pass
accepts several tokens per pass. Both keep greedy decoding's answer.

Two more set the time to the first token. The system prompt is the same for every question, so its
attention keys and values are computed once and copied into each generation; and the prompt is read
by one plain forward pass that projects only its last position onto the vocabulary. (transformers'
`generate` with prompt lookup ignores a prefilled cache on its first step and projects every prompt
position, ~0.7 s for 350 tokens, which is why the decoding loop is our own: a few lines of greedy
steps over the model's forward pass.) Where the CPU has no bf16 instructions the prompt is read in float32
(`compute_dtype`), since torch's bf16 matrix multiply is several times slower there.
"""

from __future__ import annotations

import copy
import struct
import threading
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag.generation.base import PassageStateEngine
from rag.generation.context import MissingState, Piece, Plan, plan_prompt, state_plan
from rag.generation.greedy import accepted_drafts, prompt_lookup, stream_greedy
from rag.generation.passage_states import PassageState, PassageStateStore
from rag.generation.transformers.prepare import generator_model_dir
from rag.generation.transformers.quantization import Quantization, quantize_linears
from rag.types import Prompt

ComputeDtype = Literal["bfloat16", "float32"]


class TransformersEngine(PassageStateEngine):
    """Loads the model once, on first use; generations run one at a time (the CPU has no room for two)."""

    name = "transformers"

    def __init__(
        self,
        model_name: str,
        cache_dir: Path,
        max_new_tokens: int,
        threads: int = 0,
        quantization: Quantization = "none",
        prompt_lookup_tokens: int = 0,
        compute_dtype: ComputeDtype = "bfloat16",
        passage_states: PassageStateStore | None = None,
    ) -> None:
        self.model_name = model_name
        self.cache_dir = cache_dir
        self.max_new_tokens = max_new_tokens
        self.threads = threads
        self.quantization = quantization
        self.prompt_lookup_tokens = prompt_lookup_tokens
        self.compute_dtype = compute_dtype
        self.passage_states = passage_states
        self._lock = threading.Lock()
        self._prefix_caches: dict[tuple[int, ...], Any] = {}
        self._cache: Any = None  # the context: a DynamicCache holding the tokens whose identities are in _held
        self._held: list[Any] = []

    @cached_property
    def _loaded(self) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        folder = generator_model_dir(self.model_name, self.cache_dir)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
        model.eval()
        upcast = self.compute_dtype == "float32"
        if upcast and self.quantization == "none":
            model.float()  # nothing is packed: every weight in float32 (twice the memory, no bf16 anywhere)
        packed = self.cache_dir / "packed" / f"{folder.name}-{self.quantization}-torch{torch.__version__}.safetensors"
        quantize_linears(model, self.quantization, packed, upcast)
        return tokenizer, model

    def load(self) -> None:
        _ = self._loaded

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    @cached_property
    def state_id(self) -> str:
        """What a passage state of this engine depends on besides its tokens: the model, its packing, the dtypes."""
        import torch

        _, model = self._loaded
        folder = generator_model_dir(self.model_name, self.cache_dir)
        cache = str(next(model.parameters()).dtype)
        return f"transformers/{folder.name}/{self.quantization}/{self.compute_dtype}/{cache}/torch{torch.__version__}"

    def stream(self, prompt: Prompt, cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the text of a greedy answer as it is decoded; setting `cancel` stops it between steps.

        The keys and values of the prompt's fixed messages are computed once and reused, and so are the
        passages' where their states are kept.
        """
        import torch

        tokenizer, model = self._loaded
        stops = self._stop_tokens(tokenizer, model)
        with self._lock, torch.inference_mode():
            tokens, logits = self._prefill(prompt)
            yield from stream_greedy(
                int(logits.argmax()),
                lambda answer: self._step(model, tokens + answer, stops),
                lambda answer: tokenizer.decode(answer, skip_special_tokens=True),
                stops,
                prompt.max_new_tokens or self.max_new_tokens,
                cancel,
            )

    def yes_log_odds(self, prompt: Prompt) -> float:
        import torch

        tokenizer, _ = self._loaded
        words = {
            w: [tokenizer.encode(f, add_special_tokens=False)[0] for f in (w, w.capitalize())] for w in ("yes", "no")
        }
        with self._lock, torch.inference_mode():
            _, logits = self._prefill(prompt)
        scores = torch.log_softmax(logits.float(), dim=-1)
        return float(torch.logsumexp(scores[words["yes"]], 0) - torch.logsumexp(scores[words["no"]], 0))

    def answer_tokens(self, text: str) -> list[int]:
        return self._tokenize(text)

    def continuation_log_probs(self, prompt: Prompt, continuation: list[int]) -> np.ndarray:
        import torch

        _, model = self._loaded
        with self._lock, torch.inference_mode():
            _, logits = self._prefill(prompt)
            rows = [logits[None].float()]
            forced = continuation[:-1]
            if forced:
                start = self._cache.get_seq_length()
                out = model(input_ids=torch.tensor([forced]), cache=self._cache, logits_to_keep=len(forced)).logits
                rows.append(out[0].float())
                self._held = [*self._held[:start], *forced]
            return torch.log_softmax(torch.cat(rows), dim=-1).numpy()

    def _passage_state(self, missing: MissingState, fixed: int) -> PassageState:
        """The passage's keys and values in every layer (the keys as rotated at the positions it was read at,
        which come first in its data)."""
        import torch

        with torch.inference_mode():
            self._materialize(state_plan(missing, fixed))
            start, end = len(missing.head), len(missing.head) + len(missing.body)
            assert self._cache is not None
            layers = self._cache.layers
            keys = torch.stack([layer.keys[0, :, start:end] for layer in layers]).contiguous()
            values = torch.stack([layer.values[0, :, start:end] for layer in layers]).contiguous()
        data = struct.pack("<I", start) + _tensor_bytes(keys) + _tensor_bytes(values)
        return PassageState(len(missing.body), data)

    # ---- the forward passes ----------------------------------------------------------------

    def _plan(self, prompt: Prompt) -> Plan:
        tokenizer, _ = self._loaded

        def render(messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
            return tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)

        return plan_prompt(prompt, render, self._tokenize, self._token_bytes, self.state_id, self.passage_states)

    def _prefill(self, prompt: Prompt) -> tuple[list[int], Any]:
        """Make the context hold the prompt (reading only what it does not hold yet): its tokens, and the
        next-token logits at its last position, the only one projected onto the vocabulary.

        Callers hold the lock and inference mode.
        """
        plan = self._plan(prompt)
        return plan.tokens, self._materialize(plan)

    def _materialize(self, plan: Plan) -> Any:
        """Keep what the context shares with the plan (`Plan.reusable`), then restore, place or read the rest;
        the last logits."""
        import torch

        _, model = self._loaded
        keep = plan.reusable(self._held, beyond_fixed=self.passage_states is not None)
        if keep < plan.fixed or self._cache is None:
            cache, keep = self._prefix_cache(model, plan.tokens[: plan.fixed]), plan.fixed
        else:
            cache = self._cache
            if cache.get_seq_length() > keep:
                cache.crop(keep - cache.get_seq_length())
        held = plan.identities()[:keep]
        logits = None
        for _, piece in plan.pieces_after(keep):
            if piece.state and self._place(model, cache, piece):
                held += piece.identities()
            else:
                logits = model(input_ids=torch.tensor([piece.tokens]), cache=cache, logits_to_keep=1).logits[0, -1]
                held += piece.tokens
        self._cache, self._held = cache, held
        return logits

    def _place(self, model: Any, cache: Any, piece: Piece) -> bool:
        """Append a passage state's keys and values (the piece's part of them) to the cache, the keys rotated
        from the positions they were computed at to their place here."""
        import torch

        assert self.passage_states is not None
        state = self.passage_states.get(piece.state)
        layers = len(cache.layers)
        if state is None or state.tokens != piece.of:
            return False
        (start,) = struct.unpack_from("<I", state.data)
        dtype = next(model.parameters()).dtype
        tensors = torch.frombuffer(bytearray(state.data[4:]), dtype=dtype)
        if tensors.numel() % (2 * layers * state.tokens):
            return False
        tensors = tensors.view(2, layers, -1, state.tokens, _head_dim(model.config))
        window = slice(piece.first, piece.first + len(piece.tokens))
        keys, values = tensors[0][:, :, window], tensors[1][:, :, window]
        shift = cache.get_seq_length() - (start + piece.first)
        if shift:
            keys = _rotated(model, keys, shift)
        for layer in range(layers):
            cache.update(keys[layer][None], values[layer][None], layer)
        return True

    def _step(self, model: Any, tokens: list[int], stops: set[int]) -> list[int]:
        """Decode from the last token, with prompt-lookup drafts verified in the same forward pass.

        Returns the drafts the model agrees with plus its own next token: greedy decoding's tokens,
        one or more per pass. The cache holds every token but the last one before and after.
        """
        import torch

        cache = self._cache
        start = cache.get_seq_length()
        drafts = prompt_lookup(tokens, self.prompt_lookup_tokens)
        logits = model(
            input_ids=torch.tensor([[tokens[-1], *drafts]]), cache=cache, logits_to_keep=len(drafts) + 1
        ).logits
        predicted = logits[0].argmax(-1).tolist()
        accepted = accepted_drafts(drafts, predicted, stops)
        cache.crop(accepted - len(drafts))  # drop the rejected drafts
        self._held = [*self._held[:start], tokens[-1], *drafts[:accepted]]
        return predicted[: accepted + 1]

    @staticmethod
    def _stop_tokens(tokenizer: Any, model: Any) -> set[int]:
        configured = model.generation_config.eos_token_id
        ids = configured if isinstance(configured, list) else [configured]
        return {i for i in [*ids, tokenizer.eos_token_id] if i is not None}

    def _prefix_cache(self, model: Any, prefix: list[int]) -> Any:
        """A cache holding the fixed messages' keys and values (computed once, copied for each use)."""
        import torch
        from transformers import DynamicCache

        key = tuple(prefix)
        if not prefix:
            return DynamicCache(config=model.config)
        if key not in self._prefix_caches:
            cache = DynamicCache(config=model.config)
            model(input_ids=torch.tensor([prefix]), cache=cache, logits_to_keep=1)
            self._prefix_caches[key] = cache
        return copy.deepcopy(self._prefix_caches[key])

    # ---- text and tokens -------------------------------------------------------------------

    def _tokenize(self, text: str) -> list[int]:
        tokenizer, _ = self._loaded
        return tokenizer(text, add_special_tokens=False).input_ids

    def _token_bytes(self, token: int) -> bytes:
        """A token's text as bytes: byte-level BPE tokens spell bytes with printable stand-ins (GPT-2's table)."""
        tokenizer, _ = self._loaded
        piece = tokenizer.convert_ids_to_tokens(token)
        try:
            return bytes(_BYTE_OF_CHAR[c] for c in piece)
        except KeyError:
            return tokenizer.decode([token]).encode("utf-8")


def _byte_level_table() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: each byte as a printable character (the tokenizers' own table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[chr(byte)] = byte
        else:
            table[chr(256 + extra)] = byte
            extra += 1
    return table


_BYTE_OF_CHAR = _byte_level_table()


def _tensor_bytes(tensor: Any) -> bytes:
    import torch

    return tensor.view(torch.uint8).numpy().tobytes() if tensor.dtype == torch.bfloat16 else tensor.numpy().tobytes()


def _head_dim(config: Any) -> int:
    """Qwen2's config names `head_dim` only in some transformers versions; it is the hidden size per head."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _rotated(model: Any, keys: Any, shift: int) -> Any:
    """Keys (layers, heads, tokens, head_dim) as rotary embedding would have them `shift` positions later:
    rotations compose, so rotating a rotated key by the shift's angle moves it there."""
    import torch

    rotary = model.model.rotary_emb
    probe = torch.zeros(1, dtype=torch.float32)
    cos, sin = rotary(probe, torch.tensor([[shift]]))
    cos, sin = cos[0, 0].float(), sin[0, 0].float()
    half = keys.shape[-1] // 2
    k = keys.float()
    turned = torch.cat((-k[..., half:], k[..., :half]), dim=-1)
    return (k * cos + turned * sin).to(keys.dtype)
