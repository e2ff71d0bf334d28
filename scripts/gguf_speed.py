"""How fast llama.cpp reads the default model's GGUF as packaged and requantized, on this CPU.

Usage: .venv/bin/python scripts/gguf_speed.py [--types q4_0 q8_0]
Each type is made from the packaged file with llama-cpp-python's own `llama_model_quantize` (in a temporary
folder), then timed as the engine reads: a 1,500-token prompt in one pass, and passes of 1 to 64 tokens
after 1,200 tokens of context (what passage states leave to read: titles, the question). Medians; run it
alone on the machine, and name the CPU (`lscpu`) with its figures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import llama_cpp
from llama_cpp import Llama

from rag.generation.llamacpp import BATCH_TOKENS, CONTEXT_TOKENS, FLASH_ATTENTION
from rag.models import generator_gguf
from rag.settings import Settings

TYPES = {"q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}
SMALL_PASSES = (1, 4, 22, 64)
CONTEXT = 1200


def requantize(source: Path, target: Path, ftype: int) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params) != 0:
        raise RuntimeError(f"llama.cpp could not write {target}")


def median_seconds(run: Callable[[], None], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_gguf(path: Path, tokens: list[int], threads: int) -> list[float]:
    """Seconds for the whole prompt in one pass, then for each small pass after `CONTEXT` tokens."""
    llama = Llama(
        model_path=str(path),
        n_ctx=CONTEXT_TOKENS,
        n_batch=BATCH_TOKENS,
        n_ubatch=BATCH_TOKENS,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=FLASH_ATTENTION,
        verbose=False,
    )

    def read_from(start: int, count: int) -> Callable[[], None]:
        def run() -> None:
            llama.n_tokens = start
            llama.eval(tokens[start : start + count])

        return run

    whole = median_seconds(read_from(0, len(tokens)), 2)
    llama.n_tokens = 0
    llama.eval(tokens[:CONTEXT])
    return [whole] + [median_seconds(read_from(CONTEXT, n), 5) for n in SMALL_PASSES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", nargs="*", default=list(TYPES), choices=list(TYPES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    settings = Settings()
    packaged = generator_gguf(settings.generator_model, settings.cache_dir)
    if packaged is None:
        raise SystemExit(f"{settings.generator_model} has no GGUF; run `rag prepare` first")
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted(settings.default_corpus.glob("*"))[:2])
    with tempfile.TemporaryDirectory() as folder:
        files = {"packaged": packaged}
        for name in args.types:
            files[name] = Path(folder) / f"{name}.gguf"
            requantize(packaged, files[name], TYPES[name])
        tokenizer = Llama(model_path=str(packaged), vocab_only=True, verbose=False)
        tokens = tokenizer.tokenize(text.encode(), add_bos=False)[:1500]
        print(
            f"| weights | size | {len(tokens)} tokens in one pass | "
            + " | ".join(f"{n} after {CONTEXT}" for n in SMALL_PASSES)
            + " |"
        )
        print("|---|---|---|" + "---|" * len(SMALL_PASSES))
        for name, path in files.items():
            whole, *small = time_gguf(path, tokens, args.threads)
            cells = " | ".join(f"{s * 1000:.0f} ms" for s in small)
            size = path.stat().st_size / 1e9
            print(
                f"| {name} | {size:.2f} GB | {whole:.1f} s ({len(tokens) / whole:.0f} tokens/s) | {cells} |", flush=True
            )


if __name__ == "__main__":
    main()
