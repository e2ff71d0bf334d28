"""Generation engines: the open-weights model that writes the answers.

`base.GenerationEngine` is the interface (load, stream with cancel, yes/no log-odds, count tokens); each
engine is a module or package of its own: `transformers/` runs the model with transformers and torch
(our decoding loop, int4 packing, the GGUF converted once to bf16). To add an engine (llama.cpp, a model
server), subclass `GenerationEngine` and construct it in `create_engine`. The packaged model files
themselves are found and verified in `rag.models`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.generation.base import GenerationEngine
    from rag.settings import Settings


def create_engine(settings: Settings) -> GenerationEngine:
    """The configured engine, not yet loaded (it loads on first use, or on `load()`)."""
    from rag.generation.transformers.engine import TransformersEngine

    return TransformersEngine(
        settings.generator_model,
        settings.cache_dir,
        settings.max_new_tokens,
        settings.threads,
        settings.generator_quantization,
        settings.prompt_lookup_tokens,
    )
