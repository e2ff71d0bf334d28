"""Weight-only int4/int8 layers: close to bf16, bf16 for long inputs, cached packing, and the real generator."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from rag.generation.transformers.engine import TransformersEngine
from rag.generation.transformers.quantization import (
    MAX_PACKED_ROWS,
    PackedLinear,
    bf16_only,
    pack_int4,
    pack_int8,
    quantize_linears,
    weight_bytes_per_token,
)
from rag.settings import Settings
from rag.types import Prompt


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 64, bias=False)).to(torch.bfloat16)


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.detach().float() - ref.detach().float()).norm() / ref.detach().float().norm())


@pytest.mark.parametrize(("bits", "pack", "tolerance"), [(4, pack_int4, 0.12), (8, pack_int8, 0.02)])
def test_packed_decoding_matches_bf16(bits: int, pack: object, tolerance: float) -> None:
    linear = _model()[0]
    layer = PackedLinear(linear, bits, *pack(linear.weight.detach()))  # type: ignore[operator]
    x = torch.randn(1, 1, 128, dtype=torch.bfloat16)
    assert _relative_error(layer(x), linear(x)) < tolerance


def test_long_inputs_take_the_bf16_weight_exactly() -> None:
    linear = _model()[0]
    layer = PackedLinear(linear, 4, *pack_int4(linear.weight.detach()))
    prompt = torch.randn(1, MAX_PACKED_ROWS + 1, 128, dtype=torch.bfloat16)
    assert torch.equal(layer(prompt), linear(prompt))


def test_packing_is_cached_and_reloaded_identically(tmp_path: Path) -> None:
    cache = tmp_path / "packed.safetensors"
    first, second = _model(), _model()
    assert quantize_linears(first, "int4", cache) == 2
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    assert quantize_linears(second, "int4", cache) == 2
    assert cache.stat().st_mtime_ns == stamp  # read, not rewritten
    x = torch.randn(1, 1, 128, dtype=torch.bfloat16)
    assert torch.equal(first(x), second(x))


def test_int4_reads_fewer_bytes_and_bf16_only_restores_the_layers() -> None:
    model = _model()
    plain_bytes = weight_bytes_per_token(model)
    quantize_linears(model, "int4")
    assert weight_bytes_per_token(model) < plain_bytes / 3
    with bf16_only(model):
        assert weight_bytes_per_token(model) == plain_bytes
        assert not any(isinstance(m, PackedLinear) for m in model.modules())
    assert isinstance(model[0], PackedLinear)


def test_none_leaves_the_model_alone() -> None:
    model = _model()
    assert quantize_linears(model, "none") == 0
    assert type(model[0]) is nn.Linear


def test_tiny_generator_streams_with_int4_and_prompt_lookup() -> None:
    cache = Settings().cache_dir
    generator = TransformersEngine(
        "smollm2-135m", cache, max_new_tokens=12, quantization="int4", prompt_lookup_tokens=3
    )
    messages = [{"role": "user", "content": "Repeat after me: the canteen opens at noon every day."}]
    pieces = list(generator.stream(Prompt(messages), threading.Event()))
    assert pieces and "".join(pieces).strip()
    _, model = generator._loaded
    assert any(isinstance(m, PackedLinear) for m in model.modules())
