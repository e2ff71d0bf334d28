"""What every bench section shares: repeated measurements, the Markdown report, runs in a fresh process, and
servers started for the run.

A fresh process is how a section measures a CPU without bf16 on one that has it (torch reads
`ONEDNN_MAX_CPU_ISA` and `ATEN_CPU_CAPABILITY` once, at start) and how it reads one variant's peak
memory alone.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

# A CPU with AVX-512 and VNNI but no bf16 (the Intel Xeons seen here), as torch and oneDNN see it.
WITHOUT_BF16 = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI", "ATEN_CPU_CAPABILITY": "avx512"}


@dataclass
class Series:
    """Repeated measurements of one quantity for one variant."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def cell(self, digits: int = 2) -> str:
        if not self.values:
            return "n/a"
        return f"{self.median:.{digits}f} [{min(self.values):.{digits}f}, {max(self.values):.{digits}f}]"

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.values, q))


def ratio(value: float, base: float) -> str:
    return f"x{value / base:.2f}" if base and value == value else "n/a"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)
        for line in lines:
            print(line, file=sys.stderr, flush=True)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        self.add(*("| " + " | ".join(row) + " |" for row in rows))
        self.add("")


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def in_fresh_process(function: str, *args: Any, env: dict[str, str] | None = None) -> Any:
    """Call `module:function(*args)` (JSON in, JSON out) in a new Python process, with `env` added."""
    module, name = function.split(":")
    code = (
        "import json, sys; from importlib import import_module; "
        f"result = getattr(import_module({module!r}), {name!r})(*json.loads(sys.argv[1])); "
        "print('\\n' + json.dumps(result))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{function} failed in a fresh process:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def high_water_rss_gib() -> float:
    """VmHWM of this process; unlike ru_maxrss it is not inherited from the parent that forked it."""
    return process_high_water_gib(os.getpid())


def process_high_water_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def free_port() -> int:
    """A free port on loopback, for a server started for the run."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(
    command: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None, timeout_s: float = 600
) -> Iterator[None]:
    """A server process started for the run, once `ready_url` answers 200; stopped on leaving."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[:3]} did not start: {log.read_text()[-1500:]}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)
