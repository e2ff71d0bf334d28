"""Which engine answers fastest on this machine: measured once, recorded, and re-measured when things change.

No single engine is fastest everywhere. transformers reads a prompt fastest on CPUs with bf16
instructions (torch's bf16 GEMM), llama.cpp everywhere else and decodes faster on all of them
(`rag bench`). So with `generator_engine = "auto"` each installed engine runs the same short, fixed
job once per machine: a realistic ~600-token RAG prompt (its system prompt cached, and its passages
read from their states where the engine keeps them, as in use) and 40 decoded tokens. The faster one
is recorded in `cache_dir` with what it depends on (the CPU model and flags, threads, library
versions, the model and its settings); when any of that changes, it is measured again. Each engine is
measured in a process of its own, so the loser's memory is returned.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rag.cpu import cpu_info, fast_dtype
from rag.generation.base import GenerationEngine
from rag.generation.passage_states import PassageStateStore
from rag.settings import Settings
from rag.types import PassageSegment, Prompt

ENGINES = ("transformers", "llama.cpp")
# Prompt-lookup drafts per step where `prompt_lookup_tokens` is not set, as `rag bench` measured them.
LOOKUP_TOKENS = {"transformers": 3, "llama.cpp": 0}
CHOICE_FILE = "engine-choice.json"
CALIBRATION_TOKENS = 40

_SYSTEM = (
    "You answer questions using only the numbered passages you are given. Write the answer itself in one or two "
    "short sentences, in your own words or quoting the passage, and end every sentence with the number of the "
    "passage that supports it, like [1] or [2][3]. Do not talk about the passages or the articles themselves. If "
    "the passages do not say what the question asks (or say it about someone else), reply exactly: The documents "
    "don't say.\n\nExample of the form of an answer:\nQuestion: Where did the company open its new office?\n"
    "Answer: It opened the new office in Lyon, next to its factory [2]."
)
_PASSAGES = (
    (
        "Harbour authority approves the northern quay extension",
        "The harbour authority voted on Tuesday to extend the northern quay by 420 metres, its largest works since "
        "the container terminal opened in 1998. The chair, Maria Lindqvist, said the extension would let two "
        "cruise ships berth at once and take pressure off the ferry piers in the old town. Construction is "
        "planned to start next spring and to last about three years, with most of the dredging done in winter "
        "to spare the spawning season of the herring in the bay.",
    ),
    (
        "Costs and critics of the quay plan",
        "The budget of 310 million euros is shared by the state, the region and the port's own reserves. Critics "
        "on the city council argued that the money would do more for the town if spent on the railway link to "
        "the inland logistics park, which has been postponed twice. Fishermen's associations asked for a "
        "guarantee that the works would not close the inner channel, and the authority promised to keep one "
        "lane open at all times, with night-time pilot services.",
    ),
    (
        "Environmental review of the harbour works",
        "An environmental review found that the new quay would change the currents near the beach of Sandvik only "
        "slightly, but recommended a breakwater to protect the eelgrass meadows south of the harbour. The "
        "authority accepted the recommendation and added a monitoring programme run by the university's marine "
        "station, which will publish measurements of turbidity and fish counts every quarter during the works.",
    ),
    (
        "What the port expects from the extension",
        "According to the port's own forecast, the extension should raise the number of cruise calls from 140 to "
        "about 230 a year by 2032 and create some 300 permanent jobs in handling, services and tourism. The "
        "forecast assumes that the cruise market keeps growing at the pace of the last decade, an assumption "
        "the regional audit office called optimistic in its opinion on the plan.",
    ),
)
_QUESTIONS = (
    "What did the harbour authority decide, who will pay for it, and what do its critics say?",
    "When will the quay works start, how long will they last, and what will the port gain from them?",
    "What did the environmental review find, and what did the authority do about it?",
)


def calibration_prompt(run: int = 0) -> Prompt:
    """The fixed job: a system prompt like the assistant's, four passages like retrieved ones, a question.

    Each run asks another question over the passages in another order, as consecutive questions do, so
    an engine's context holds nothing of it but the fixed messages; the passages are numbered as the
    assistant numbers them, so an engine that keeps passage states reads them from their states.
    """
    shown = _PASSAGES[run % len(_PASSAGES) :] + _PASSAGES[: run % len(_PASSAGES)]
    segments = tuple(
        PassageSegment(("\n\n" if i > 1 else "") + f"[{i}] {title}\n", text)
        for i, (title, text) in enumerate(shown, start=1)
    )
    numbered = "".join(s.lead + s.body for s in segments)
    asked = _QUESTIONS[run % len(_QUESTIONS)]
    question = f"Passages:\n\n{numbered}\n\nQuestion: {asked}\nAnswer in full sentences."
    return Prompt([{"role": "system", "content": _SYSTEM}, {"role": "user", "content": question}], passages=segments)


@dataclass(frozen=True)
class Calibration:
    """One engine's time on the fixed job; `whole_s` (first token plus 40 tokens at its decode rate) decides."""

    engine: str
    first_token_s: float
    decode_tokens_per_s: float
    whole_s: float


@dataclass(frozen=True)
class EngineChoice:
    engine: str
    measured: tuple[Calibration, ...]
    unavailable: dict[str, str]  # engine -> why it was not measured
    fingerprint: dict[str, Any]

    def summary(self) -> str:
        """One line for people: which engine, and by how much."""
        chosen = next(c for c in self.measured if c.engine == self.engine)
        others = [c for c in self.measured if c.engine != self.engine]
        line = f"engine: {self.engine}"
        if others:
            slowest = max(others, key=lambda c: c.whole_s)
            line += f", {slowest.whole_s / chosen.whole_s:.1f}x faster than {slowest.engine} on this CPU"
        line += f" ({chosen.first_token_s:.1f} s to the first token, {chosen.decode_tokens_per_s:.0f} tokens/s)"
        for engine, why in self.unavailable.items():
            line += f"; {engine} not measured: {why}"
        return line


def build_engine(name: str, settings: Settings, max_new_tokens: int | None = None) -> GenerationEngine:
    """The named engine with the settings' model, threads and decoding options, not yet loaded."""
    new_tokens = max_new_tokens or settings.max_new_tokens
    if name == "llama.cpp":
        from rag.generation.llamacpp import LlamaCppEngine

        return LlamaCppEngine(
            settings.generator_model,
            settings.cache_dir,
            new_tokens,
            settings.threads,
            lookup_tokens(name, settings),
            passage_state_store(settings),
        )
    if name == "transformers":
        from rag.generation.transformers.engine import TransformersEngine

        return TransformersEngine(
            settings.generator_model,
            settings.cache_dir,
            new_tokens,
            settings.threads,
            settings.generator_quantization,
            lookup_tokens(name, settings),
            fast_dtype(settings.generator_dtype),
            passage_state_store(settings),
        )
    if name == "openai":
        from rag.generation.openai_compatible import OpenAIEngine

        assert settings.engine_url is not None  # Settings refuses openai without one
        key = settings.engine_api_key.get_secret_value() if settings.engine_api_key else None
        return OpenAIEngine(
            settings.engine_url,
            settings.engine_model,
            key,
            new_tokens,
            settings.engine_connect_timeout_s,
            settings.engine_read_timeout_s,
        )
    raise ValueError(f"unknown generation engine {name!r}; choose from {', '.join((*ENGINES, 'openai'))}")


def passage_state_store(settings: Settings) -> PassageStateStore | None:
    if not settings.passage_states:
        return None
    return PassageStateStore(
        settings.passage_states_folder,
        int(settings.passage_state_gb * 1024**3),
        settings.passage_state_reread_tokens,
    )


def lookup_tokens(engine: str, settings: Settings) -> int:
    return LOOKUP_TOKENS[engine] if settings.prompt_lookup_tokens is None else settings.prompt_lookup_tokens


def installed_engines() -> list[str]:
    return ["transformers"] + (["llama.cpp"] if importlib.util.find_spec("llama_cpp") else [])


def fingerprint(settings: Settings) -> dict[str, Any]:
    """Everything the measured speeds depend on; a record made under another fingerprint is stale."""
    cpu = cpu_info()

    def version(distribution: str) -> str | None:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "cpu": cpu.model,
        "flags": sorted(cpu.flags),
        "threads": settings.threads or cpu.cores,
        "model": settings.generator_model,
        "generator_dtype": fast_dtype(settings.generator_dtype),
        "generator_quantization": settings.generator_quantization,
        "prompt_lookup_tokens": settings.prompt_lookup_tokens,
        "passage_states": settings.passage_states,
        "versions": {d: version(d) for d in ("torch", "transformers", "llama-cpp-python")},
        "llama.cpp build": _llama_cpp_build(),
    }


def _llama_cpp_build() -> str | None:
    """Which compiled llama.cpp is installed: a rebuild for other instruction sets runs at another speed."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    libraries = sorted((Path(spec.origin).parent / "lib").glob("*.so*"))
    stamps = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in libraries]
    return hashlib.sha256("\n".join(stamps).encode()).hexdigest()[:16]


def engine_choice(settings: Settings, remeasure: bool = False, verbose: bool = False) -> EngineChoice:
    """The recorded choice for this machine and model, measured now if there is none or it is stale.

    Its summary goes to stderr when it was measured now, or always with `verbose`.
    """
    path = settings.cache_dir / CHOICE_FILE
    records = _read_records(path)
    current = fingerprint(settings)
    key = _record_key(current)
    record = records.get(key)
    if record and not remeasure:
        choice = _from_json(record)
        if verbose:
            print(f"rag: {choice.summary()} (measured before)", file=sys.stderr, flush=True)
        return choice
    print(
        f"rag: measuring the generation engines on this CPU for {settings.generator_model} "
        f"(once per machine and version; about a minute) ...",
        file=sys.stderr,
        flush=True,
    )
    measured, unavailable = [], {}
    for engine in installed_engines():
        try:
            measured.append(_measure_in_subprocess(engine, settings))
        except RuntimeError as exc:
            unavailable[engine] = str(exc)
    for engine in ENGINES:
        if engine not in installed_engines():
            unavailable[engine] = "not installed (scripts/install.sh builds it)"
    if not measured:
        raise RuntimeError(f"no generation engine could run {settings.generator_model}: {unavailable}")
    fastest = min(measured, key=lambda c: c.whole_s)
    choice = EngineChoice(fastest.engine, tuple(measured), unavailable, current)
    records[key] = asdict(choice)
    _write_atomically(path, records)
    print(f"rag: {choice.summary()}", file=sys.stderr, flush=True)
    return choice


def measure(engine_name: str, settings: Settings) -> Calibration:
    """Run the fixed job on one engine in this process: a warm-up (loading, the cached prefix), then two timed runs.

    An engine that keeps passage states has them for the job's passages first, as `rag index` makes them.
    """
    engine = build_engine(engine_name, settings, CALIBRATION_TOKENS)
    engine.load()
    engine.store_passage_states(calibration_prompt())
    runs = []
    for run in range(3):
        started = time.perf_counter()
        first, pieces = None, []
        for piece in engine.stream(calibration_prompt(run)):
            first = first if first is not None else time.perf_counter() - started
            pieces.append(piece)
        runs.append((first or 0.0, time.perf_counter() - started, engine.count_tokens("".join(pieces))))
    first, total, tokens = min(runs[1:], key=lambda run: run[1])  # the first run warms up
    rate = (tokens - 1) / (total - first) if tokens > 1 and total > first else float("inf")
    whole = first + CALIBRATION_TOKENS / rate
    return Calibration(engine_name, round(first, 3), round(rate, 2), round(whole, 3))


def _measure_in_subprocess(engine: str, settings: Settings) -> Calibration:
    code = "import sys; from rag.generation.choice import _main; _main(sys.argv[1], sys.argv[2])"
    result = subprocess.run(
        [sys.executable, "-c", code, engine, settings.model_dump_json()],
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"it exited with status {result.returncode}"])[-1]
        raise RuntimeError(last)
    return Calibration(**json.loads(result.stdout.strip().splitlines()[-1]))


def _main(engine: str, settings_json: str) -> None:
    print(json.dumps(asdict(measure(engine, Settings.model_validate_json(settings_json)))))


def _record_key(fingerprint: dict[str, Any]) -> str:
    """Records are kept per fingerprint, so a CPU emulated by `rag bench` does not replace the real one's."""
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    return f"{fingerprint['model']}/{digest}"


def _read_records(path: Path) -> dict[str, Any]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


def _from_json(record: dict[str, Any]) -> EngineChoice:
    return EngineChoice(
        record["engine"],
        tuple(Calibration(**c) for c in record["measured"]),
        dict(record.get("unavailable", {})),
        record["fingerprint"],
    )


def _write_atomically(path: Path, records: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    os.replace(staging, path)
