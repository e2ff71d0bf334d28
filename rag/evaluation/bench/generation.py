"""Generation: every engine on the Assistant's own prompts, on this CPU and as a CPU without bf16.

Rows: plain transformers `generate` (bf16, the baseline), our transformers engine and the llama.cpp
engine, each with and without prompt lookup. The emulated run repeats the transformers rows in a fresh
process that sees a CPU without bf16 (plus llama.cpp, which that emulation does not touch), so one
report shows both worlds. Decoding is compared with its ceiling: bandwidth / bytes read per token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.answering.prompts import build_prompt
from rag.assistant import Assistant
from rag.cpu import cpu_info, fast_dtype
from rag.evaluation.bench.machine import Machine
from rag.evaluation.bench.report import (
    WITHOUT_BF16,
    Report,
    Series,
    high_water_rss_gib,
    in_fresh_process,
    ratio,
)
from rag.generation.choice import build_engine, installed_engines, lookup_tokens
from rag.generation.llamacpp import LlamaCppEngine
from rag.models import generator_gguf
from rag.settings import Settings
from rag.types import Prompt

LECUN = "What did LeCun propose in Paris?"
GENERATION_QUESTIONS = (LECUN, "What did Meta announce about its next AI models?", "Who owns PyTorch now?")


@dataclass(frozen=True)
class Variant:
    """One way of generating: an engine, with or without prompt lookup; the baseline is plain `generate`."""

    name: str
    engine: str
    lookup: int | None = None  # prompt-lookup drafts per step; None: as shipped for that engine
    baseline: bool = False  # transformers' own `generate` on the bf16 weights
    bf16_prefill: bool = False  # the prompt read in bf16 whatever the CPU (as shipped before)


BASELINE = Variant("transformers generate (bf16 baseline)", "transformers", lookup=0, baseline=True)
VARIANTS = {
    v.name: v
    for v in (
        BASELINE,
        Variant("transformers", "transformers"),
        Variant("transformers, no lookup", "transformers", lookup=0),
        Variant("transformers, bf16 prefill", "transformers", bf16_prefill=True),
        Variant("llama.cpp", "llama.cpp"),
        Variant("llama.cpp, lookup 3", "llama.cpp", lookup=3),
    )
}
NATIVE = (BASELINE.name, "transformers", "transformers, no lookup", "llama.cpp", "llama.cpp, lookup 3")
EMULATED = (BASELINE.name, "transformers, bf16 prefill", "transformers", "llama.cpp")


def assistant_prompts(assistant: Assistant, questions: tuple[str, ...]) -> list[Prompt]:
    """The prompts the Assistant itself would send: retrieved, trimmed passages under the system prompt."""
    settings = assistant.settings
    return [
        build_prompt(q, assistant.trimmer.trim(q, assistant.retrieve(q, settings.top_k)), [], settings.answer_style)
        for q in questions
    ]


def measure_generation(settings_json: str, names: list[str], questions: list[str], reps: int) -> dict[str, Any]:
    """Interleaved runs of each variant on each question (the first round warms up); JSON for a fresh process."""
    settings = Settings.model_validate_json(settings_json)
    assistant = Assistant(settings)
    prompts = assistant_prompts(assistant, tuple(questions))
    variants = [VARIANTS[n] for n in names if VARIANTS[n].engine in installed_engines()]
    engines: dict[str, Any] = {}
    for name in dict.fromkeys(v.engine for v in variants):
        engines[name] = build_engine(name, settings)
        engines[name].load()
    runs: dict[str, list[dict[str, float]]] = {v.name: [] for v in variants}
    answers: dict[str, list[str]] = {v.name: [] for v in variants}
    for rep in range(reps + 1):
        for prompt in prompts:
            for variant in variants:
                engine = engines[variant.engine]
                with _configured(engine, variant):
                    pieces = _baseline_stream(engine, prompt) if variant.baseline else engine.stream(prompt)
                    run, text = _timed(pieces, engine)
                if rep:
                    runs[variant.name].append(run)
                if rep == reps:
                    answers[variant.name].append(text.strip())
    return {
        "runs": runs,
        "lookup": {v.name: engines[v.engine].prompt_lookup_tokens if v.lookup is None else v.lookup for v in variants},
        "answers": answers,
        "prompt_tokens": [_prompt_tokens(next(iter(engines.values())), p) for p in prompts],
        "bytes_per_token": _bytes_per_token(engines, settings),
    }


def _prompt_tokens(engine: Any, prompt: Prompt) -> int:
    """Prompt length in tokens (both engines tokenize the chat template alike; tests/test_llamacpp.py)."""
    if isinstance(engine, LlamaCppEngine):
        return len(engine._chat_tokens(prompt.messages, add_generation_prompt=True))
    tokenizer, _ = engine._loaded
    tokens = tokenizer.apply_chat_template(prompt.messages, add_generation_prompt=True, return_dict=True)
    return len(tokens["input_ids"])


@contextmanager
def _configured(engine: Any, variant: Variant) -> Iterator[None]:
    """The engine set up as the variant says for the duration of one run, then as it was."""
    from rag.generation.transformers.quantization import PackedLinear, bf16_only

    lookup = engine.prompt_lookup_tokens
    if variant.lookup is not None:
        engine.prompt_lookup_tokens = variant.lookup
    packed = [m for m in engine._loaded[1].modules() if isinstance(m, PackedLinear)] if variant.bf16_prefill else []
    upcast = [m.upcast for m in packed]
    for module in packed:
        module.upcast = False
    try:
        if variant.baseline:
            with bf16_only(engine._loaded[1]):
                yield
        else:
            yield
    finally:
        engine.prompt_lookup_tokens = lookup
        for module, value in zip(packed, upcast, strict=True):
            module.upcast = value


def _baseline_stream(engine: Any, prompt: Prompt) -> Iterator[str]:
    """Plain transformers: greedy `generate` on the whole prompt, streamed by its TextIteratorStreamer."""
    import torch
    from transformers import TextIteratorStreamer

    tokenizer, model = engine._loaded
    inputs = tokenizer.apply_chat_template(
        prompt.messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with torch.inference_mode():
                model.generate(
                    **inputs,
                    max_new_tokens=engine.max_new_tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    streamer=streamer,
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                )
        except BaseException as exc:  # raised in the caller's thread below, after ending the stream
            errors.append(exc)
            streamer.end()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    yield from streamer
    worker.join()
    if errors:
        raise errors[0]


def _timed(pieces: Iterator[str], engine: Any) -> tuple[dict[str, float], str]:
    started = time.perf_counter()
    first = None
    text = []
    for piece in pieces:
        if first is None and piece:
            first = time.perf_counter() - started
        text.append(piece)
    total = time.perf_counter() - started
    answer = "".join(text)
    tokens = engine.count_tokens(answer) + 1  # + the end-of-answer token
    return {"first": first if first is not None else total, "total": total, "tokens": tokens}, answer


def _decode_rate(run: dict[str, float]) -> float:
    spent = run["total"] - run["first"]
    return (run["tokens"] - 1) / spent if run["tokens"] > 1 and spent > 0 else float("nan")


def _bytes_per_token(engines: dict[str, Any], settings: Settings) -> dict[str, int]:
    """Weights read per decoded token: by the baseline (bf16), our transformers engine (int4), llama.cpp (GGUF)."""
    from rag.generation.transformers.quantization import bf16_only, weight_bytes_per_token

    result = {}
    if "transformers" in engines:
        model = engines["transformers"]._loaded[1]
        result["transformers"] = weight_bytes_per_token(model)
        with bf16_only(model):
            result[BASELINE.name] = weight_bytes_per_token(model)
    if "llama.cpp" in engines:
        result["llama.cpp"] = gguf_bytes_per_token(generator_gguf(settings.generator_model, settings.cache_dir))
    return result


def gguf_bytes_per_token(path: Path | None) -> int:
    """Every tensor of the GGUF but the token embedding table, of which one row is read (when the output
    projection has a tensor of its own)."""
    import gguf

    tensors = gguf.GGUFReader(str(path)).tensors
    skip = "token_embd.weight" if any(t.name == "output.weight" for t in tensors) else ""
    return sum(int(t.n_bytes) for t in tensors if t.name != skip)


def peak_rss_gib(settings_json: str, name: str) -> float:
    """Peak RSS of a fresh process that holds the Assistant with one variant's engine and answers once."""
    settings = Settings.model_validate_json(settings_json)
    variant = VARIANTS[name]
    update: dict[str, Any] = {"generator_engine": variant.engine}
    if variant.baseline:
        update |= {"generator_quantization": "none", "prompt_lookup_tokens": 0}
    assistant = Assistant(settings.model_copy(update=update))
    [prompt] = assistant_prompts(assistant, (LECUN,))
    engine = assistant.generator
    "".join(_baseline_stream(engine, prompt) if variant.baseline else engine.stream(prompt))
    return high_water_rss_gib()


def generation(
    report: Report, settings: Settings, reps: int, machine: Machine, questions: tuple[str, ...] = GENERATION_QUESTIONS
) -> None:
    native = measure_generation(settings.model_dump_json(), list(NATIVE), list(questions), reps)
    rss = {
        name: in_fresh_process("rag.evaluation.bench.generation:peak_rss_gib", settings.model_dump_json(), name)
        for name in native["runs"]
        if VARIANTS[name].lookup is None or VARIANTS[name].baseline
    }
    report.add(
        "## Generation",
        "",
        f"Model `{settings.generator_model}`, greedy, up to {settings.max_new_tokens} new tokens, on the Assistant's "
        f"own prompts (top-{settings.top_k} seeds passages cut to excerpts) for {len(questions)} "
        f"questions: {', '.join(map(repr, questions))}; prompt tokens {native['prompt_tokens']}. "
        f"{reps} interleaved rounds after one warm-up round, on {cpu_info().describe()}. `{BASELINE.name}` is plain "
        "transformers `generate` with a TextIteratorStreamer; `transformers` is our engine as shipped (int4 decode, "
        f"prompt read in {fast_dtype(settings.generator_dtype)}, cached system prompt, prompt lookup "
        f"{lookup_tokens('transformers', settings)}); `llama.cpp` runs the same GGUF through llama-cpp-python with "
        f"the same greedy loop and cached system prompt, prompt lookup {lookup_tokens('llama.cpp', settings)}; the "
        "other rows change one thing. Peak RSS: a fresh process holding the Assistant with that engine, after one "
        "answer.",
        "",
    )
    _table(report, native, rss)
    answers = native["answers"]
    if "transformers" in answers and "llama.cpp" in answers:
        same = sum(a == b for a, b in zip(answers["transformers"], answers["llama.cpp"], strict=True))
        total = len(answers["llama.cpp"])
        report.add(f"transformers and llama.cpp answers identical, word for word: {same}/{total}.", "")
    _ceilings(report, native, machine)
    if not machine.emulated_gflops:
        return
    emulated = in_fresh_process(
        "rag.evaluation.bench.generation:measure_generation",
        settings.model_dump_json(),
        list(EMULATED),
        [LECUN],
        reps,
        env=WITHOUT_BF16,
    )
    report.add(
        "### Generation on a CPU without bf16 (emulated)",
        "",
        f"The same, in a process with {' '.join(f'{k}={v}' for k, v in WITHOUT_BF16.items())} (bf16 GEMM "
        f"{machine.emulated_gflops['bfloat16']:.0f} GFLOP/s, float32 {machine.emulated_gflops['float32']:.0f}), on "
        "the LeCun question. There `transformers` reads the prompt in float32 (`generator_dtype = auto`); "
        "`transformers, bf16 prefill` is what shipped before: bf16 whatever the CPU.",
        "",
    )
    _table(report, emulated, {})


def _table(report: Report, measured: dict[str, Any], rss: dict[str, float]) -> None:
    runs = measured["runs"]
    base_decode = Series([_decode_rate(r) for r in runs.get(BASELINE.name, [])]).median
    rows = []
    for name, values in runs.items():
        speed = Series([_decode_rate(r) for r in values])
        rows.append(
            [
                name,
                Series([r["first"] for r in values]).cell(),
                speed.cell(1),
                ratio(speed.median, base_decode),
                Series([r["total"] for r in values]).cell(),
                f"{rss[name]:.2f}" if name in rss else "",
            ]
        )
    header = ["variant", "first token (s)", "decode (tokens/s)", "decode vs baseline", "whole answer (s)"]
    report.table([*header, "peak RSS (GiB)"], rows)


def _reads_weights_as(name: str, weights: str) -> bool:
    """Whether a variant decodes with those weights: the baseline's bf16, the int4 engine's, or the GGUF."""
    variant = VARIANTS[name]
    if weights == BASELINE.name:
        return variant.baseline
    return variant.engine == weights and not variant.baseline


def _ceilings(report: Report, measured: dict[str, Any], machine: Machine) -> None:
    """Decode without lookup against bandwidth / bytes per token (lookup may pass the ceiling)."""
    runs, per_token = measured["runs"], measured["bytes_per_token"]
    rows = []
    for engine in per_token:
        plain = next((n for n in runs if _reads_weights_as(n, engine) and measured["lookup"][n] == 0), None)
        if plain is not None:
            speed = Series([_decode_rate(r) for r in runs[plain]]).median
            ceiling = machine.bandwidth_gbs * 1e9 / per_token[engine]
            rows.append(
                [
                    engine,
                    f"{per_token[engine] / 1e9:.2f} GB",
                    f"{ceiling:.1f} tokens/s",
                    f"{speed:.1f} tokens/s",
                    f"{speed / ceiling:.0%}",
                ]
            )
    report.add(
        "Physical limits: decoding reads every weight once per token, so without prompt lookup tokens/s <= "
        f"bandwidth ({machine.bandwidth_gbs:.1f} GB/s, measured above) / bytes read per token.",
        "",
    )
    report.table(["engine", "weights read per token", "decode ceiling", "measured, no lookup", "of the ceiling"], rows)
