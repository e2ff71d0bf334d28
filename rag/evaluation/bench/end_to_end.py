"""End to end: the LeCun question through the one Assistant, per engine, with where the time goes.

Each run is timed at every event a user sees: the passages being read (`Sources`), the first token,
the last token, and the checked answer (citations verified, the answer check asked). The same runs in
a fresh process as a CPU without bf16, and the server's own peak memory is read with each engine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

from rag.assistant import Assistant
from rag.cpu import cpu_info
from rag.evaluation.bench.generation import LECUN
from rag.evaluation.bench.report import (
    WITHOUT_BF16,
    Report,
    Series,
    in_fresh_process,
    process_high_water_gib,
)
from rag.generation.choice import engine_choice, installed_engines
from rag.settings import Settings
from rag.types import Answer, Sources

WHOLE = "whole passages"
STATES = "passage states"


def staged(assistant: Assistant, question: str) -> tuple[dict[str, float], Answer]:
    """One answer, timed at each event: sources, first token, last token, the checked answer."""
    started = time.perf_counter()
    marks: dict[str, float] = {}
    for event in assistant.ask_stream(question):
        now = time.perf_counter() - started
        if isinstance(event, Sources):
            marks["sources"] = now
        elif isinstance(event, str):
            marks.setdefault("first", now)
            marks["last"] = now
        else:
            marks["answer"] = now
            return {**marks, "retrieve": event.timings.retrieve_ms / 1000}, event
    raise RuntimeError("the answer stream ended without an answer")


def measure_end_to_end(settings_json: str, engines: list[str], reps: int, whole_passages: bool) -> dict[str, Any]:
    """Interleaved LeCun answers per engine (and, for the chosen one, with whole passages), and with passage
    states for each engine that keeps them (every state made first, as `rag index` makes them); JSON for a
    fresh process. Also says which engine `auto` picks here."""
    settings = Settings.model_validate_json(settings_json)
    auto = engine_choice(settings).engine
    assistants = {e: Assistant(settings.model_copy(update={"generator_engine": e})) for e in engines}
    for engine in engines:
        stateful = Assistant(settings.model_copy(update={"generator_engine": engine, "passage_states": True}))
        if stateful.generator.passage_states is not None:
            stateful.store_passage_states()
            assistants[f"{engine}, {STATES}"] = stateful
    for assistant in assistants.values():
        assistant.warm_up()
    variants = [(name, name, None) for name in assistants]
    if whole_passages and auto in assistants:
        variants.append((f"{auto}, {WHOLE}", auto, 0))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    answers: dict[str, str] = {}
    for rep in range(reps + 1):  # the first round warms up and is not counted
        for name, engine, chars in variants:
            trimmer = assistants[engine].trimmer
            shipped = trimmer.max_chars
            trimmer.max_chars = shipped if chars is None else chars
            try:
                marks, answer = staged(assistants[engine], LECUN)
            finally:
                trimmer.max_chars = shipped
            if rep:
                runs[name].append(marks)
            answers[name] = answer.answer
    return {"auto": auto, "runs": runs, "answers": answers, "cpu": cpu_info().describe()}


def server_peak_rss_gib(settings: Settings, engine: str) -> float:
    """Peak RSS of a real `python app.py` with one engine, after it has answered the LeCun question over HTTP."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "RAG_INDEX_DIR": str(settings.index_dir),
        "RAG_DEFAULT_CORPUS": str(settings.default_corpus),
        "RAG_GENERATOR_MODEL": settings.generator_model,
        "RAG_GENERATOR_ENGINE": engine,
        "RAG_CACHE_DIR": str(settings.cache_dir),
        "RAG_PORT": str(port),
    }
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; from rag.serving.app import main; sys.exit(main([]))"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server with {engine} did not start")
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        request = urllib.request.Request(
            f"{base}/api/ask",
            data=json.dumps({"question": LECUN}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=600).read()
        return process_high_water_gib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)


def end_to_end(report: Report, settings: Settings, reps: int, emulate: bool) -> None:
    engines = installed_engines()
    native = measure_end_to_end(settings.model_dump_json(), engines, reps, whole_passages=settings.excerpt_chars > 0)
    rss = {engine: server_peak_rss_gib(settings, engine) for engine in engines}
    report.add(
        "## End to end",
        "",
        f"`rag ask {LECUN!r}` through the one Assistant pipeline (retrieval, excerpts, generation, citation checks, "
        f"the answer check), model loaded once, {reps} interleaved runs per engine after a warm-up round, on "
        f"{native['cpu']}. `auto` (shipped) picks **{native['auto']}** here. `{native['auto']}, {WHOLE}` sends the "
        f"chunks as retrieved instead of excerpts of at most `excerpt_chars={settings.excerpt_chars}`; `{STATES}` "
        "places each excerpt's keys and values from its chunk's state and reads only the passages' number-and-title "
        "lines and the question in place. Peak RSS is a real `python app.py` with that engine after answering "
        "over HTTP.",
        "",
    )
    _tables(report, native, rss)
    started = time.perf_counter()
    cold = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ask", "--json", LECUN],
        capture_output=True,
        text=True,
        env={**os.environ, "RAG_INDEX_DIR": str(settings.index_dir), "RAG_GENERATOR_MODEL": settings.generator_model},
        check=True,
    )
    cold_s = time.perf_counter() - started
    cold_answer = json.loads(cold.stdout.strip().splitlines()[-1])
    report.add(
        f"Cold `rag ask` process (engine `auto`), start to exit, one run: {cold_s:.1f} s, of which answering "
        f"{cold_answer['timings']['total_ms'] / 1000:.1f} s.",
        "",
    )
    if emulate:
        emulated = in_fresh_process(
            "rag.evaluation.bench.end_to_end:measure_end_to_end",
            settings.model_dump_json(),
            engines,
            reps,
            False,
            env=WITHOUT_BF16,
        )
        report.add(
            "### End to end on a CPU without bf16 (emulated)",
            "",
            f"The same in a process with {' '.join(f'{k}={v}' for k, v in WITHOUT_BF16.items())}; `auto` picks "
            f"**{emulated['auto']}** there.",
            "",
        )
        _tables(report, emulated, {})


def _tables(report: Report, measured: dict[str, Any], rss: dict[str, float]) -> None:
    runs = measured["runs"]

    def series(name: str, key: str, since: str | None = None) -> Series:
        return Series([r[key] - (r[since] if since else 0.0) for r in runs[name] if key in r])

    fastest = min(series(n, "answer").median for n in runs)
    rows = []
    for name in runs:
        whole = series(name, "answer")
        shipped = " (auto)" if name == measured["auto"] else ""
        rows.append(
            [
                f"{name}{shipped}",
                series(name, "first").cell(),
                whole.cell(),
                f"x{whole.median / fastest:.2f}",
                f"{rss[name]:.2f}" if name in rss else "",
            ]
        )
    report.table(["engine", "first token (s)", "whole answer (s)", "vs fastest", "server peak RSS (GiB)"], rows)
    report.add("Where the time goes (medians, seconds from the question):", "")
    report.table(
        ["engine", "retrieval", "sources shown", "reading the prompt", "writing", "checks (citations, answer check)"],
        [
            [
                name,
                f"{series(name, 'retrieve').median:.3f}",
                f"{series(name, 'sources').median:.3f}",
                f"{series(name, 'first', 'sources').median:.2f}",
                f"{series(name, 'last', 'first').median:.2f}",
                f"{series(name, 'answer', 'last').median:.2f}",
            ]
            for name in runs
        ],
    )
    report.add(*(f"- `{name}` answered: {answer!r}" for name, answer in measured["answers"].items()), "")
