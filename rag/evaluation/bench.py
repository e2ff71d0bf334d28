"""`rag bench`: how fast each stage is, every variant measured side by side in one run.

Variants are interleaved (A, B, A, B, ...) so that a machine whose load changes during the run
slows them alike; results are ratios to the baseline plus medians with [min, max]. The report
starts with the machine's measured memory bandwidth and bf16 GEMM rate, because decoding is bound
by the first (every weight is read once per token) and reading the prompt by the second.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rag.answering.prompts import build_prompt
from rag.assistant import Assistant
from rag.embedding.embedder import Embedder
from rag.generation.transformers.engine import TransformersEngine
from rag.models import generator_gguf
from rag.settings import Settings
from rag.store.dense import build_dense_index
from rag.types import Answer

LECUN = "What did LeCun propose in Paris?"
GENERATION_QUESTIONS = (LECUN, "What did Meta announce about its next AI models?", "Who owns PyTorch now?")
SYNTHETIC_SIZES = (10_000, 100_000, 1_000_000)
SECTIONS = ("machine", "generation", "embedding", "retrieval", "end-to-end")


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


def _ratio(value: float, base: float) -> str:
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


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


# ---- machine -----------------------------------------------------------------------------


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


def bf16_gemm_gflops(tokens: int = 512, reps: int = 5) -> Series:
    """bf16 matrix-multiply rate at prompt-reading shapes (GFLOP/s): the ceiling for prefill."""
    import torch

    weight = torch.randn(8960, 1536, dtype=torch.bfloat16)
    x = torch.randn(tokens, 1536, dtype=torch.bfloat16)
    torch.nn.functional.linear(x, weight)
    series = Series()
    for _ in range(reps):
        started = time.perf_counter()
        torch.nn.functional.linear(x, weight)
        series.values.append(2 * tokens * weight.numel() / (time.perf_counter() - started) / 1e9)
    return series


def machine(report: Report, settings: Settings) -> tuple[float, float]:
    import torch

    bandwidth, gemm = memory_bandwidth_gbs(), bf16_gemm_gflops()
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.processor())
    report.add("## Machine", "")
    report.table(
        ["what", "value"],
        [
            ["CPU", f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"],
            ["load average at start", _load()],
            ["memory read bandwidth (GB/s, 512 MiB sum)", bandwidth.cell(1)],
            ["bf16 GEMM (GFLOP/s, 512x1536 by 1536x8960)", gemm.cell(0)],
        ],
    )
    return bandwidth.median, gemm.median


# ---- generation --------------------------------------------------------------------------


@dataclass
class Run:
    first_token_s: float
    total_s: float
    tokens: int

    @property
    def decode_tps(self) -> float:
        return (self.tokens - 1) / (self.total_s - self.first_token_s) if self.tokens > 1 else float("nan")


def _timed(pieces: Iterator[str], count_tokens: Callable[[str], int]) -> Run:
    started = time.perf_counter()
    first = None
    text = []
    for piece in pieces:
        if first is None and piece:
            first = time.perf_counter() - started
        text.append(piece)
    total = time.perf_counter() - started
    return Run(first if first is not None else total, total, count_tokens("".join(text)))


@contextmanager
def _variant(generator: TransformersEngine, name: str) -> Iterator[None]:
    """`baseline`: bf16 weights (streamed by `_transformers_stream`); `no-lookup`: shipped minus prompt lookup."""
    from rag.generation.transformers.quantization import bf16_only

    _, model = generator._loaded
    lookup = generator.prompt_lookup_tokens
    if name != "shipped":
        generator.prompt_lookup_tokens = 0
    try:
        if name == "baseline":
            with bf16_only(model):
                yield
        else:
            yield
    finally:
        generator.prompt_lookup_tokens = lookup


def _collecting(pieces: Iterator[str], collected: list[str]) -> Iterator[str]:
    for piece in pieces:
        collected.append(piece)
        yield piece


def transformers_engine(assistant: Assistant) -> TransformersEngine:
    """The assistant's engine, which the transformers variants (bf16 `generate`, lookup off) need to be."""
    engine = assistant.generator
    if not isinstance(engine, TransformersEngine):
        raise ValueError(f"the generation bench measures the transformers engine, not {type(engine).__name__}")
    return engine


def _transformers_stream(generator: TransformersEngine, messages: list[dict[str, str]]) -> Iterator[str]:
    """The baseline: transformers' own greedy `generate` on the whole prompt, streamed by its TextIteratorStreamer."""
    import threading

    import torch
    from transformers import TextIteratorStreamer

    tokenizer, model = generator._loaded
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)

    errors: list[BaseException] = []

    def run() -> None:
        try:
            with torch.inference_mode():
                model.generate(
                    **inputs,
                    max_new_tokens=generator.max_new_tokens,
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


def _llama(settings: Settings) -> object | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    gguf = generator_gguf(settings.generator_model, settings.cache_dir)
    if gguf is None:
        return None
    import torch

    return Llama(model_path=str(gguf), n_ctx=4096, n_threads=torch.get_num_threads(), verbose=False)


def _llama_stream(llama: object, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]:
    for chunk in llama.create_chat_completion(  # type: ignore[attr-defined]
        messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True
    ):
        yield chunk["choices"][0]["delta"].get("content", "")


def peak_rss_gib(settings_json: str, variant: str) -> float:
    """Peak RSS of a fresh process that loads one variant and answers once (runs in a subprocess)."""
    settings = Settings.model_validate_json(settings_json)
    if variant == "baseline":
        settings = settings.model_copy(update={"generator_quantization": "none", "prompt_lookup_tokens": 0})
    assistant = Assistant(settings)
    prompt = build_prompt(LECUN, assistant.retriever.retrieve(LECUN, settings.top_k), [])
    if variant == "llama.cpp":
        llama = _llama(settings)
        assert llama is not None
        "".join(_llama_stream(llama, prompt.messages, settings.max_new_tokens))
    elif variant == "baseline":
        "".join(_transformers_stream(transformers_engine(assistant), prompt.messages))
    else:
        "".join(assistant.generator.stream(prompt))
    return _high_water_rss_gib()


def _high_water_rss_gib() -> float:
    """VmHWM of this process; unlike ru_maxrss it is not inherited from the parent that forked it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _peak_rss(settings: Settings, variant: str) -> float:
    code = "import sys; from rag.evaluation.bench import peak_rss_gib; print(peak_rss_gib(sys.argv[1], sys.argv[2]))"
    out = subprocess.run(
        [sys.executable, "-c", code, settings.model_dump_json(), variant],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def generation(report: Report, assistant: Assistant, reps: int, bandwidth_gbs: float, gemm_gflops: float) -> None:
    from rag.generation.transformers.quantization import bf16_only, weight_bytes_per_token

    settings = assistant.settings
    generator = transformers_engine(assistant)
    tokenizer, model = generator._loaded
    prompts = [build_prompt(q, assistant.retriever.retrieve(q, settings.top_k), []) for q in GENERATION_QUESTIONS]
    prompt_tokens = [
        len(tokenizer.apply_chat_template(p.messages, add_generation_prompt=True, return_dict=True)["input_ids"])
        for p in prompts
    ]

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1  # + the end-of-answer token

    variants = ["baseline", "shipped"] + (["no-lookup"] if generator.prompt_lookup_tokens else [])
    llama = _llama(settings)
    if llama is not None:
        variants.append("llama.cpp")
    runs: dict[str, list[Run]] = {v: [] for v in variants}
    answers: dict[str, list[str]] = {v: [] for v in variants}
    for rep in range(reps + 1):  # the first round warms up every variant and is not counted
        for prompt in prompts:
            for name in variants:
                if name == "llama.cpp":
                    run = _timed(_llama_stream(llama, prompt.messages, settings.max_new_tokens), count)
                else:
                    with _variant(generator, name):
                        collected: list[str] = []
                        pieces = (
                            _transformers_stream(generator, prompt.messages)
                            if name == "baseline"
                            else generator.stream(prompt)
                        )
                        run = _timed(_collecting(pieces, collected), count)
                        if rep == reps:
                            answers[name].append("".join(collected).strip())
                if rep:
                    runs[name].append(run)

    with bf16_only(model):
        bf16_bytes = weight_bytes_per_token(model)
    shipped_bytes = weight_bytes_per_token(model)
    rss = {name: _peak_rss(settings, name) for name in variants if name != "no-lookup"}
    rss["no-lookup"] = rss["shipped"]  # the same process, only the number of draft tokens differs

    base_decode = Series([r.decode_tps for r in runs["baseline"]]).median
    base_first = Series([r.first_token_s for r in runs["baseline"]]).median
    report.add(
        "## Generation",
        "",
        f"Model `{settings.generator_model}`, greedy, up to {settings.max_new_tokens} new tokens, on the Assistant's "
        f"own prompts (top-{settings.top_k} seeds passages) for {len(prompts)} questions: "
        f"{', '.join(map(repr, GENERATION_QUESTIONS))}; "
        f"prompt tokens {prompt_tokens}. {reps} interleaved rounds after one warm-up round. `baseline` is plain "
        "transformers bf16 `generate` with a TextIteratorStreamer; `shipped` is the configured default "
        f"(`generator_quantization={settings.generator_quantization}`, `prompt_lookup_tokens="
        f"{settings.prompt_lookup_tokens}`, our greedy loop: cached system prompt, one plain prefill, "
        "then lookup drafts); `no-lookup` is shipped without prompt lookup; `llama.cpp` runs the "
        "same GGUF through llama-cpp-python. Load average during the run: " + _load() + ".",
        "",
    )
    report.table(
        ["variant", "first token (s)", "decode (tokens/s)", "decode vs baseline", "whole answer (s)", "peak RSS (GiB)"],
        [
            [
                name,
                Series([r.first_token_s for r in runs[name]]).cell(),
                Series([r.decode_tps for r in runs[name]]).cell(1),
                _ratio(Series([r.decode_tps for r in runs[name]]).median, base_decode),
                Series([r.total_s for r in runs[name]]).cell(),
                f"{rss[name]:.2f}",
            ]
            for name in variants
        ],
    )
    without_lookup = "no-lookup" if "no-lookup" in runs else "shipped"
    same = sum(a == b for a, b in zip(answers["shipped"], answers["baseline"], strict=True))
    flops = (
        2 * sum(p.numel() for n, p in model.named_parameters() if "embed" not in n) * statistics.median(prompt_tokens)
    )
    report.add(
        f"Shipped answers identical to the baseline's: {same}/{len(prompts)}.",
        "",
        "Physical limits: decoding reads every weight once per token, so tokens/s <= bandwidth / bytes per token; "
        "reading the prompt is compute-bound, so first token >= prompt FLOPs / GEMM rate.",
        "",
    )
    report.table(
        ["", "weights read per token", "decode ceiling at measured bandwidth", "measured median"],
        [
            [
                "bf16",
                f"{bf16_bytes / 1e9:.2f} GB",
                f"{bandwidth_gbs * 1e9 / bf16_bytes:.1f} tokens/s",
                f"{base_decode:.1f} tokens/s",
            ],
            [
                settings.generator_quantization,
                f"{shipped_bytes / 1e9:.2f} GB",
                f"{bandwidth_gbs * 1e9 / shipped_bytes:.1f} tokens/s",
                f"{Series([r.decode_tps for r in runs[without_lookup]]).median:.1f} tokens/s ({without_lookup})",
            ],
            [
                "prefill",
                f"{flops / 1e12:.2f} TFLOP for {statistics.median(prompt_tokens):.0f} prompt tokens",
                f"first token >= {flops / (gemm_gflops * 1e9):.2f} s at {gemm_gflops:.0f} GFLOP/s",
                f"{base_first:.2f} s (baseline)",
            ],
        ],
    )
    if llama is None:
        report.add("llama.cpp: not installed (`pip install -e .[llama]`), so its row is absent.", "")


# ---- embedding ---------------------------------------------------------------------------


def embedding(report: Report, assistant: Assistant, reps: int) -> None:
    settings = assistant.settings
    texts = [c.text for doc in assistant.documents() for c in assistant.chunker.split(doc)]
    batch = (texts * (256 // max(len(texts), 1) + 1))[:256]
    default = Embedder(settings.embedding_model, settings.embed_batch_size)
    variants = {"float32 (sentence-transformers default)": default}
    variants[f"{settings.embedding_dtype} (shipped)"] = Embedder(
        settings.embedding_model, settings.embed_batch_size, settings.embedding_dtype
    )
    rates: dict[str, Series] = {name: Series() for name in variants}
    for embedder in variants.values():
        embedder.encode(batch[:8])
    for _ in range(reps):
        for name, embedder in variants.items():
            started = time.perf_counter()
            embedder.encode(batch)
            rates[name].values.append(len(batch) / (time.perf_counter() - started))
    (ref_name, ref), (ship_name, shipped) = variants.items()
    cosines = (ref.encode(texts) * shipped.encode(texts)).sum(axis=1)
    agree = []
    for question in (*GENERATION_QUESTIONS, "Who is Meta's chief AI scientist?", "What is open source AI?"):
        a, b = ref.encode([question]) @ ref.encode(texts).T, shipped.encode([question]) @ shipped.encode(texts).T
        k = settings.top_k
        agree.append(len(set(np.argsort(-a[0])[:k]) & set(np.argsort(-b[0])[:k])) / k)
    base = rates[ref_name].median
    report.add(
        "## Embedding",
        "",
        f"`{settings.embedding_model}` on {len(batch)} seeds chunks (mean {np.mean([len(t) for t in batch]):.0f} "
        f"characters), batch {settings.embed_batch_size}, {reps} interleaved rounds.",
        "",
    )
    report.table(
        ["variant", "chunks/s", "vs float32"],
        [[name, rates[name].cell(1), _ratio(rates[name].median, base)] for name in variants],
    )
    report.add(
        f"Quality: cosine of {ship_name} vectors to float32 ones, min {cosines.min():.4f}, mean {cosines.mean():.4f}; "
        f"dense top-{settings.top_k} overlap with float32 on {len(agree)} questions: {np.mean(agree):.2f}.",
        "",
    )


# ---- retrieval ---------------------------------------------------------------------------


def synthetic_vectors(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors in clusters (topics) of ~100, like chunk embeddings; real corpora this large we do not ship."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(rows // 100, 1), dim), dtype=np.float32)
    vectors = np.empty((rows, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, rows, step):
        end = min(rows, start + step)
        owners = rng.integers(0, len(centers), end - start)
        vectors[start:end] = centers[owners] + 0.8 * rng.standard_normal((end - start, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def retrieval(report: Report, settings: Settings, sizes: tuple[int, ...], queries: int = 200) -> None:
    import faiss

    rows_out = []
    dim = 384
    for rows in sizes:
        vectors = synthetic_vectors(rows, dim)
        rng = np.random.default_rng(1)
        picks = rng.choice(rows, queries, replace=False)
        qs = vectors[picks] + 0.6 * rng.standard_normal((queries, dim), dtype=np.float32) / np.sqrt(dim)
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        exact = faiss.IndexFlatIP(dim)
        exact.add(vectors)
        started = time.perf_counter()
        shipped = build_dense_index(vectors, settings.ivf_min_chunks, settings.ivf_nprobe)
        build_s = time.perf_counter() - started
        if shipped is exact or isinstance(shipped, faiss.IndexFlat):
            shipped_kind = "exact (flat)"
        else:
            shipped_kind = f"IVF{shipped.nlist}, nprobe {shipped.nprobe}"
        latency = {"exact": Series(), "shipped": Series()}
        found = []
        for q in qs:  # one query at a time, as the assistant asks them; interleaved
            for name, index in (("exact", exact), ("shipped", shipped)):
                started = time.perf_counter()
                _, ids = index.search(q[None, :], 10)
                latency[name].values.append((time.perf_counter() - started) * 1000)
                found.append(ids[0])
        recall = np.mean([len(set(found[i]) & set(found[i + 1])) / 10 for i in range(0, len(found), 2)])
        memory = faiss.serialize_index(shipped).nbytes / 2**30
        for name, kind in (("exact", "exact (flat)"), ("shipped", shipped_kind)):
            series = latency[name]
            rows_out.append(
                [
                    f"{rows:,}",
                    f"{name}: {kind}",
                    f"{series.percentile(50):.2f}",
                    f"{series.percentile(95):.2f}",
                    "1.000" if name == "exact" else f"{recall:.3f}",
                    "" if name == "exact" else f"{build_s:.1f}",
                    "" if name == "exact" else f"{memory:.2f}",
                ]
            )
        del vectors, exact, shipped
    report.add(
        "## Retrieval at scale",
        "",
        "Dense search only (BM25 is loaded once per index generation and never rebuilt per query). Vectors are "
        "synthetic: 384-d unit vectors in clusters of ~100 around random centers; queries are perturbed corpus "
        f"vectors; {queries} single-vector queries per size, the two indexes interleaved. Recall@10 is against "
        f"exact search. The shipped index is exact below `ivf_min_chunks={settings.ivf_min_chunks:,}` chunks, "
        "IVF from there.",
        "",
    )
    report.table(["chunks", "index", "p50 (ms)", "p95 (ms)", "recall@10", "build (s)", "index memory (GiB)"], rows_out)


# ---- end to end --------------------------------------------------------------------------


def end_to_end(report: Report, assistant: Assistant, reps: int) -> None:
    """The LeCun question as users ask it, with passages cut to excerpts (shipped) and whole, interleaved."""
    shipped_chars = assistant.trimmer.max_chars
    variants = {"shipped": shipped_chars, "whole passages": 0} if shipped_chars else {"shipped": 0}
    answers: dict[str, list[Answer]] = {name: [] for name in variants}
    tokens: dict[str, int] = {}
    for rep in range(reps + 1):  # the first round warms up and is not counted
        for name, chars in variants.items():
            assistant.trimmer.max_chars = chars
            answer = assistant.ask(LECUN)
            if rep:
                answers[name].append(answer)
            tokens[name] = _prompt_tokens(assistant, answer)
    assistant.trimmer.max_chars = shipped_chars
    env = {
        **os.environ,
        "RAG_INDEX_DIR": str(assistant.settings.index_dir),
        "RAG_GENERATOR_MODEL": assistant.settings.generator_model,
    }
    started = time.perf_counter()
    cold = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ask", "--json", LECUN], capture_output=True, text=True, env=env, check=True
    )
    cold_s = time.perf_counter() - started
    cold_answer = json.loads(cold.stdout.strip().splitlines()[-1])
    report.add(
        "## End to end",
        "",
        f"`rag ask {LECUN!r}` through the one Assistant pipeline (retrieval, excerpts, generation, citation checks), "
        f"model loaded once, {reps} interleaved runs per variant after a warm-up round. `shipped` cuts each passage "
        f"to at most `excerpt_chars={shipped_chars}` characters around its sentences closest to the question; "
        "`whole passages` sends the chunks as retrieved. Shipped answer: "
        f"{answers['shipped'][-1].answer!r}",
        "",
    )
    report.table(
        ["variant", "prompt tokens", "retrieval (ms)", "first token (s)", "whole answer (s)"],
        [
            [
                name,
                str(tokens[name]),
                Series([a.timings.retrieve_ms for a in runs]).cell(1),
                Series([a.timings.first_token_ms / 1000 for a in runs]).cell(),
                Series([a.timings.total_ms / 1000 for a in runs]).cell(),
            ]
            for name, runs in answers.items()
        ],
    )
    report.add(
        f"Cold `rag ask` process, start to exit, one run: {cold_s:.1f} s, of which answering "
        f"{cold_answer['timings']['total_ms'] / 1000:.1f} s.",
        "",
    )


def _prompt_tokens(assistant: Assistant, answer: Answer) -> int:
    tokenizer, _ = transformers_engine(assistant)._loaded
    messages = build_prompt(answer.question, answer.passages, [], assistant.settings.answer_style).messages
    return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])


# ---- the command -------------------------------------------------------------------------


def run_bench(
    settings: Settings,
    output: Path | None,
    reps: int = 3,
    sections: tuple[str, ...] = SECTIONS,
    sizes: tuple[int, ...] = SYNTHETIC_SIZES,
) -> str:
    """Run the chosen sections on the seeds corpus (indexed into a temporary folder) and return the Markdown."""
    import torch

    if settings.threads:  # before the machine section, so its GEMM rate is the one generation gets
        torch.set_num_threads(settings.threads)
    report = Report()
    report.add(
        "# Benchmarks",
        "",
        f"Written by `rag bench` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. Medians with [min, max]; "
        "variants interleaved in one run, ratios against the baseline of the same run.",
        "",
    )
    bandwidth, gemm = machine(report, settings) if "machine" in sections else (float("nan"), float("nan"))
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings.model_copy(update={"index_dir": Path(tmp) / "index"})
        assistant = Assistant(settings)
        assistant.index()
        if "generation" in sections:
            if bandwidth != bandwidth:
                bandwidth, gemm = memory_bandwidth_gbs().median, bf16_gemm_gflops().median
            generation(report, assistant, reps, bandwidth, gemm)
        if "embedding" in sections:
            embedding(report, assistant, reps)
        if "end-to-end" in sections:
            assistant.warm_up()
            end_to_end(report, assistant, reps)
    if "retrieval" in sections:
        retrieval(report, settings, sizes)
    text = "\n".join(report.lines).rstrip() + "\n"
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    return text
