"""Text generation with a local transformers model, streamed piece by piece.

Two levers make CPU decoding fast (measured by `rag bench`, see docs/BENCHMARKS.md): int4 weights for
decoding (rag.quantization), and prompt lookup: answers copy spans from the passages, so drafting the
next few tokens from an earlier match in the prompt and verifying them in one forward pass accepts
several tokens per pass. Both keep greedy decoding's answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from rag.models import generator_model_dir
from rag.quantization import Quantization, quantize_linears


class Generator:
    """Loads the model once, on first use; generations run one at a time (the CPU has no room for two)."""

    def __init__(
        self,
        model_name: str,
        cache_dir: Path,
        max_new_tokens: int,
        threads: int = 0,
        quantization: Quantization = "none",
        prompt_lookup_tokens: int = 0,
    ) -> None:
        self.model_name = model_name
        self.cache_dir = cache_dir
        self.max_new_tokens = max_new_tokens
        self.threads = threads
        self.quantization = quantization
        self.prompt_lookup_tokens = prompt_lookup_tokens
        self._lock = threading.Lock()

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
        packed = self.cache_dir / "packed" / f"{folder.name}-{self.quantization}-torch{torch.__version__}.safetensors"
        quantize_linears(model, self.quantization, packed)
        return tokenizer, model

    def load(self) -> None:
        """Pay the load cost now (e.g. at server start) rather than on the first question."""
        _ = self._loaded

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` by this model's tokenizer, e.g. to turn a streamed answer's time into tokens/s."""
        tokenizer, _ = self._loaded
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    def stream(self, messages: list[dict[str, str]], cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield decoded text pieces of a greedy answer; setting `cancel` stops generation early."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        tokenizer, model = self._loaded
        cancel = cancel or threading.Event()

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> bool:
                return cancel.is_set()

        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(
            **inputs,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_Cancelled()]),
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
        if self.prompt_lookup_tokens:
            kwargs["prompt_lookup_num_tokens"] = self.prompt_lookup_tokens
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    model.generate(**kwargs)
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
                streamer.end()

        with self._lock:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            try:
                yield from streamer
            finally:
                cancel.set()
                worker.join()
        if errors:
            raise errors[0]
