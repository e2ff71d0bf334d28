"""The processor this runs on: its model name and instruction-set flags, which decide what runs fast.

torch's bf16 matrix multiply is fast only on CPUs with bf16 instructions (avx512_bf16 or AMX); elsewhere
it falls back to a path ~6-30x slower than float32 (measured by `rag bench`). Emulating another CPU
(`ONEDNN_MAX_CPU_ISA`, `ATEN_CPU_CAPABILITY`, as `rag bench` does) is honoured: the flags then read as
that CPU's would.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# The oneDNN ISA names below AVX512_CORE_BF16: capping oneDNN there emulates a CPU without bf16.
_ISAS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"}


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]
    cores: int

    @property
    def has_bf16(self) -> bool:
        """Whether torch's bf16 kernels run at full speed here (or in the CPU being emulated)."""
        return bool(self.flags & BF16_FLAGS)

    def describe(self) -> str:
        wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
        shown = " ".join(f for f in wanted if f in self.flags) or "no AVX2"
        return f"{self.model}, {self.cores} cores ({shown})"


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU, as /proc/cpuinfo reports it, with bf16 removed when bf16 is being emulated away."""
    fields: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first processor speaks for all
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    if emulating_without_bf16():
        flags -= BF16_FLAGS
    return CpuInfo(model, frozenset(flags), os.cpu_count() or 1)


def fast_dtype(choice: str) -> Literal["bfloat16", "float32"]:
    """A dtype setting resolved for this CPU: "auto" is bfloat16 where bf16 runs at full speed, else float32."""
    if choice == "auto":
        return "bfloat16" if cpu_info().has_bf16 else "float32"
    if choice not in ("bfloat16", "float32"):
        raise ValueError(f"unknown dtype {choice!r}")
    return choice  # type: ignore[return-value]


def emulating_without_bf16() -> bool:
    """Whether oneDNN is capped below its bf16 instructions (the emulation `rag bench` uses)."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in _ISAS_WITHOUT_BF16
