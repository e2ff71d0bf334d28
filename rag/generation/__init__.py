"""Generation engines: the open-weights model that writes the answers.

`base.GenerationEngine` is the interface (load, stream with cancel, yes/no log-odds, count tokens); each
engine is a module or package of its own: `transformers/` runs the model with transformers and torch
(int4 packing, the GGUF converted once to bf16), `llamacpp` runs the GGUF as it is with llama.cpp; both
decode with the same greedy loop and prompt lookup (`greedy`). `choice` measures which is faster on
this CPU for `generator_engine = "auto"`. To add an engine (a model server, say), subclass
`GenerationEngine` and name it in `choice.build_engine`. The packaged model files themselves are found
and verified in `rag.models`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.generation.base import GenerationEngine
    from rag.settings import Settings


def create_engine(settings: Settings) -> GenerationEngine:
    """The configured engine, not yet loaded. With "auto" that is the recorded choice for this CPU, which is
    measured first (once, about a minute) if there is none or it is stale."""
    from rag.generation.choice import build_engine, engine_choice

    name = settings.generator_engine
    if name == "auto":
        name = engine_choice(settings).engine
    return build_engine(name, settings)
