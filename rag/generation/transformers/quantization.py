"""Weight-only int4/int8 linear layers for CPU decoding, on kernels that ship with torch itself.

Decoding one token reads every weight once, so on a CPU it is bound by memory bandwidth: int4
weights (with a bf16 scale and zero per 32) read 3.2x fewer bytes than bf16. The packed kernels
(`_weight_int4pack_mm_for_cpu`, `_weight_int8pack_mm`) cost grows with the number of rows and
they lose to the bf16 GEMM beyond ~10 rows, so the prompt (prefill) still goes through the bf16
weight and only short calls (decoding, verifying a few prompt-lookup drafts) take the packed path.
On a CPU without bf16 instructions torch's bf16 GEMM is ~6x slower than float32 (`rag bench`), so
there the prompt's GEMMs run in float32 on the bf16 weight upcast per call (`upcast`): the weights
stay bf16 in memory, and the upcast costs ~2% of the prefill.

The default generator is a Q4_K GGUF: its weights are 4-bit in blocks of 32 with a scale and a
minimum each, so int4 with groups of 32 and min/max per group re-encodes most of them exactly.
Packing 1.5B weights takes 30-60 s, so the packed tensors are cached next to the model.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

Quantization = Literal["none", "int8", "int4"]
GROUP_SIZE = 32
INNER_K_TILES = 2  # required by the packing op's signature; the CPU layout does not depend on it
MAX_PACKED_ROWS = 8  # measured: int4 at 11 rows costs what bf16 does, and 4x bf16 at 1 row


class PackedLinear(nn.Module):
    """A linear layer with an int4 or int8 copy of its weight for short inputs and the bf16 one for long inputs."""

    def __init__(
        self, linear: nn.Linear, bits: int, packed: torch.Tensor, scales: torch.Tensor, upcast: bool = False
    ) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.bits = bits
        self.upcast = upcast
        self.register_buffer("packed", packed, persistent=False)
        self.register_buffer("scales", scales, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if rows > MAX_PACKED_ROWS or x.dtype != torch.bfloat16:
            if self.upcast:
                bias = None if self.bias is None else self.bias.float()
                return nn.functional.linear(x.float(), self.weight.float(), bias).to(x.dtype)
            return nn.functional.linear(x, self.weight, self.bias)
        flat = x.reshape(rows, self.in_features)
        if self.bits == 4:
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, GROUP_SIZE, self.scales)
        else:
            out = torch._weight_int8pack_mm(flat, self.packed, self.scales)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int{self.bits}"


def pack_int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Min/max per group of 32, in the kernel's form w = (q - 8) * scale + zero."""
    out_features, in_features = weight.shape
    groups = weight.float().reshape(out_features, in_features // GROUP_SIZE, GROUP_SIZE)
    low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
    scale = ((high - low) / 15).clamp(min=1e-8)
    q = torch.round((groups - low) / scale).clamp(0, 15).to(torch.int32).reshape(out_features, in_features)
    zero = low + 8 * scale
    scales_and_zeros = torch.cat([scale, zero], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, INNER_K_TILES), scales_and_zeros


def pack_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric, one scale per output channel."""
    scale = (weight.float().abs().amax(dim=1) / 127).clamp(min=1e-8)
    q = torch.round(weight.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scale.to(torch.bfloat16)


def quantize_linears(
    model: nn.Module, quantization: Quantization, cache_file: Path | None = None, upcast: bool = False
) -> int:
    """Give every nn.Linear a packed copy of its weight, read from `cache_file` or packed and saved there.

    With `upcast`, long inputs multiply in float32. Returns how many layers were swapped.
    """
    if quantization == "none":
        return 0
    bits = 4 if quantization == "int4" else 8
    pack = pack_int4 if bits == 4 else pack_int8
    targets = [
        (parent, child_name, f"{parent_name}.{child_name}".lstrip("."), child)
        for parent_name, parent in model.named_modules()
        for child_name, child in parent.named_children()
        if type(child) is nn.Linear and child.in_features % GROUP_SIZE == 0
    ]
    cached = load_file(cache_file) if cache_file is not None and cache_file.is_file() else {}
    fresh: dict[str, torch.Tensor] = {}
    for parent, child_name, name, linear in targets:
        if f"{name}.packed" in cached:
            packed, scales = cached[f"{name}.packed"], cached[f"{name}.scales"]
        else:
            packed, scales = pack(linear.weight.detach())
        fresh[f"{name}.packed"], fresh[f"{name}.scales"] = packed, scales
        setattr(parent, child_name, PackedLinear(linear, bits, packed, scales, upcast))
    if cache_file is not None and fresh.keys() != cached.keys():
        _save_atomically(fresh, cache_file)
    return len(targets)


def _save_atomically(tensors: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    os.close(handle)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, staging)
        os.replace(staging, path)
    finally:
        Path(staging).unlink(missing_ok=True)


def weight_bytes_per_token(model: nn.Module) -> int:
    """Bytes of weights one decoded token reads: memory bandwidth divided by this bounds tokens/s."""
    total = 0
    for module in model.modules():
        if isinstance(module, PackedLinear):
            total += module.packed.numel() * module.packed.element_size()
            total += module.scales.numel() * module.scales.element_size()
        elif type(module) is nn.Linear:
            total += module.weight.numel() * module.weight.element_size()
    return total


@contextmanager
def bf16_only(model: nn.Module) -> Iterator[None]:
    """Temporarily put plain nn.Linear layers (sharing the bf16 weights) back, e.g. to measure the baseline."""
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, PackedLinear):
                linear = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None, device="meta")
                linear.weight, linear.bias = child.weight, child.bias
                setattr(parent, name, linear)
                swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
