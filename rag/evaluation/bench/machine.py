"""The machine: its CPU and flags, memory bandwidth and GEMM rates, natively and as a CPU without bf16.

Decoding is bound by memory bandwidth (every weight is read once per token) and reading the prompt
by the matrix-multiply rate, so these set the physical limits the other sections are compared with.
The emulated rates show that the emulation bites: bf16 should fall far below float32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rag.cpu import cpu_info
from rag.evaluation.bench.report import WITHOUT_BF16, Report, Series, in_fresh_process, load_average


def memory_bandwidth_gbs(mib: int = 512, reps: int = 7) -> Series:
    """Read bandwidth of a large tensor sum (GB/s): the ceiling for reading weights while decoding."""
    import torch

    data = torch.ones(mib * 2**20 // 4, dtype=torch.float32)
    series = Series()
    for _ in range(reps):
        started = time.perf_counter()
        data.sum()
        series.values.append(data.numel() * 4 / (time.perf_counter() - started) / 1e9)
    return series


def gemm_gflops(dtype: str, tokens: int = 512, reps: int = 5) -> Series:
    """Matrix-multiply rate at prompt-reading shapes (GFLOP/s, 512x1536 by 1536x8960): the ceiling for prefill."""
    import torch

    weight = torch.randn(8960, 1536, dtype=getattr(torch, dtype))
    x = torch.randn(tokens, 1536, dtype=getattr(torch, dtype))
    torch.nn.functional.linear(x, weight)
    series = Series()
    for _ in range(reps):
        started = time.perf_counter()
        torch.nn.functional.linear(x, weight)
        series.values.append(2 * tokens * weight.numel() / (time.perf_counter() - started) / 1e9)
    return series


def gemm_rates() -> dict[str, list[float]]:
    """bf16 and float32 GEMM rates, for a fresh (possibly emulated) process."""
    return {dtype: gemm_gflops(dtype).values for dtype in ("bfloat16", "float32")}


@dataclass(frozen=True)
class Machine:
    bandwidth_gbs: float
    gemm_gflops: dict[str, float]  # "bfloat16"/"float32" -> GFLOP/s on this CPU
    emulated_gflops: dict[str, float]  # the same as a CPU without bf16 (empty when this CPU has none)


def machine(report: Report) -> Machine:
    import torch

    cpu = cpu_info()
    bandwidth = memory_bandwidth_gbs()
    native = {dtype: Series(values) for dtype, values in gemm_rates().items()}
    emulated = (
        {d: Series(v) for d, v in in_fresh_process("rag.evaluation.bench.machine:gemm_rates", env=WITHOUT_BF16).items()}
        if cpu.has_bf16
        else {}
    )
    rows = [
        ["CPU", f"{cpu.describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads"],
        ["bf16 instructions", "yes" if cpu.has_bf16 else "no"],
        ["load average at start", load_average()],
        ["memory read bandwidth (GB/s, 512 MiB sum)", bandwidth.cell(1)],
        ["bf16 GEMM (GFLOP/s, 512x1536 by 1536x8960)", native["bfloat16"].cell(0)],
        ["float32 GEMM (GFLOP/s, same shapes)", native["float32"].cell(0)],
    ]
    if emulated:
        flags = " ".join(f"{k}={v}" for k, v in WITHOUT_BF16.items())
        rows += [
            [f"bf16 GEMM emulating a CPU without bf16 ({flags})", emulated["bfloat16"].cell(0)],
            ["float32 GEMM emulating a CPU without bf16", emulated["float32"].cell(0)],
        ]
    report.add("## Machine", "")
    report.table(["what", "value"], rows)
    if emulated:
        report.add(
            f"The emulation bites: bf16 runs at {emulated['bfloat16'].median / native['bfloat16'].median:.2f}x of its "
            f"native rate and {emulated['bfloat16'].median / emulated['float32'].median:.2f}x of float32 there, "
            "as on the Intel Xeons without avx512_bf16 seen here.",
            "",
        )
    return Machine(
        bandwidth.median,
        {d: s.median for d, s in native.items()},
        {d: s.median for d, s in emulated.items()},
    )
