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
import threading
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from rag.generation.base import GenerationEngine
from rag.generation.greedy import accepted_drafts, prompt_lookup, stream_greedy
from rag.generation.transformers.prepare import generator_model_dir
from rag.generation.transformers.quantization import Quantization, quantize_linears
from rag.types import Prompt

ComputeDtype = Literal["bfloat16", "float32"]


class TransformersEngine(GenerationEngine):
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
    ) -> None:
        self.model_name = model_name
        self.cache_dir = cache_dir
        self.max_new_tokens = max_new_tokens
        self.threads = threads
        self.quantization = quantization
        self.prompt_lookup_tokens = prompt_lookup_tokens
        self.compute_dtype = compute_dtype
        self._lock = threading.Lock()
        self._prefix_caches: dict[tuple[int, ...], Any] = {}

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
        tokenizer, _ = self._loaded
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    def stream(self, prompt: Prompt, cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the text of a greedy answer as it is decoded; setting `cancel` stops it between steps.

        The keys and values of the prompt's fixed messages are computed once and reused.
        """
        import torch

        tokenizer, model = self._loaded
        stops = self._stop_tokens(tokenizer, model)
        with self._lock, torch.inference_mode():
            tokens, cache, logits = self._prefill(prompt)
            yield from stream_greedy(
                int(logits.argmax()),
                lambda answer: self._step(model, cache, tokens + answer, stops),
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
            _, _, logits = self._prefill(prompt)
        scores = torch.log_softmax(logits.float(), dim=-1)
        return float(torch.logsumexp(scores[words["yes"]], 0) - torch.logsumexp(scores[words["no"]], 0))

    def _prefill(self, prompt: Prompt) -> tuple[list[int], Any, Any]:
        """Read the prompt (its fixed messages from their cache): its tokens, the cache now holding all of them,
        and the next-token logits at its last position, the only one projected onto the vocabulary.

        Callers hold the lock and inference mode.
        """
        import torch

        tokenizer, model = self._loaded
        messages = prompt.messages
        tokens = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
        prefix = tokenizer.apply_chat_template(messages[: prompt.fixed], return_dict=True)["input_ids"]
        cache, done = self._prefix_cache(model, prefix, tokens)
        logits = model(input_ids=torch.tensor([tokens[done:]]), cache=cache, logits_to_keep=1).logits
        return tokens, cache, logits[0, -1]

    def _step(self, model: Any, cache: Any, tokens: list[int], stops: set[int]) -> list[int]:
        """Decode from the last token, with prompt-lookup drafts verified in the same forward pass.

        Returns the drafts the model agrees with plus its own next token: greedy decoding's tokens,
        one or more per pass. The cache holds every token but the last one before and after.
        """
        import torch

        drafts = prompt_lookup(tokens, self.prompt_lookup_tokens)
        logits = model(
            input_ids=torch.tensor([[tokens[-1], *drafts]]), cache=cache, logits_to_keep=len(drafts) + 1
        ).logits
        predicted = logits[0].argmax(-1).tolist()
        accepted = accepted_drafts(drafts, predicted, stops)
        cache.crop(accepted - len(drafts))  # drop the rejected drafts
        return predicted[: accepted + 1]

    @staticmethod
    def _stop_tokens(tokenizer: Any, model: Any) -> set[int]:
        configured = model.generation_config.eos_token_id
        ids = configured if isinstance(configured, list) else [configured]
        return {i for i in [*ids, tokenizer.eos_token_id] if i is not None}

    def _prefix_cache(self, model: Any, prefix: list[int], tokens: list[int]) -> tuple[Any, int]:
        """A cache already holding the fixed messages' keys and values (computed once), and how many tokens it holds."""
        from transformers import DynamicCache

        if len(prefix) >= len(tokens) or tokens[: len(prefix)] != prefix:
            return DynamicCache(config=model.config), 0
        key = tuple(prefix)
        if key not in self._prefix_caches:
            import torch

            cache = DynamicCache(config=model.config)
            model(input_ids=torch.tensor([prefix]), cache=cache, logits_to_keep=1)
            self._prefix_caches[key] = cache
        return copy.deepcopy(self._prefix_caches[key]), len(prefix)
