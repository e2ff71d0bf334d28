"""The model-server path: what reaching llama.cpp over the OpenAI API costs against running it in-process.

The same GGUF, the Assistant's own prompts: the local llama.cpp engine and the openai engine talking to
llama-cpp-python's server on loopback (started for the run, or `engine_url` if set), interleaved, the
first round a warm-up. Only one of them runs at a time, so the server's threads and ours never compete.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.assistant import Assistant
from rag.evaluation.bench.generation import GENERATION_QUESTIONS, _timed, assistant_prompts
from rag.evaluation.bench.report import Report, Series, free_port, serving
from rag.generation.llamacpp import LlamaCppEngine
from rag.generation.openai_compatible import OpenAIEngine
from rag.models import generator_gguf
from rag.settings import Settings


def model_server(report: Report, settings: Settings, reps: int) -> None:
    assistant = Assistant(settings)
    prompts = assistant_prompts(assistant, GENERATION_QUESTIONS)
    local = LlamaCppEngine(settings.generator_model, settings.cache_dir, settings.max_new_tokens, settings.threads)
    local.load()
    first = {
        "llama.cpp in-process": Series(),
        "openai engine → llama.cpp server": Series(),
        "openai engine → llama.cpp server, logits_all off": Series(),
    }
    total = {name: Series() for name in first}
    same = 0
    with _server(settings) as (url, where), _server(settings, logits_all=False) as (lean_url, _):
        engines = [local]
        for address in (url, lean_url):
            engines.append(OpenAIEngine(address, settings.engine_model, None, settings.max_new_tokens))
            engines[-1].load()
        for rep in range(reps + 1):
            for prompt in prompts:
                texts = []
                for name, engine in zip(first, engines, strict=True):
                    run, text = _timed(engine.stream(prompt), engine)
                    texts.append(text.strip())
                    if rep:
                        first[name].values.append(run["first"] * 1000)
                        total[name].values.append(run["total"])
                same += rep == reps and len(set(texts)) == 1
    base = first["llama.cpp in-process"].median
    report.add(
        "## Generation on a model server",
        "",
        f"The packaged GGUF in-process (llama.cpp engine) against the openai engine on {where}, on the "
        f"Assistant's prompts for {len(prompts)} questions, {reps} interleaved rounds after a warm-up. The server "
        "reuses the prompt prefix it evaluated last (llama-cpp-python's cache); the in-process engine keeps the "
        "system prompt's state. llama-cpp-python's server computes the logits of every prompt token by default "
        "(`logits_all`, which its `logprobs` need: the yes/no checks' margins); started with `--logits_all false` "
        "it computes the last one only, as the in-process engine does, and the checks read a one-token reply. "
        f"Same answer text from all three on {same} of {len(prompts)} prompts.",
        "",
    )
    report.table(
        ["engine", "first token (ms)", "added to first token (ms)", "whole answer (s)"],
        [[name, first[name].cell(0), f"{first[name].median - base:+.0f}", total[name].cell(2)] for name in first],
    )


@contextmanager
def _server(settings: Settings, logits_all: bool = True) -> Iterator[tuple[str, str]]:
    """The configured model server, or llama-cpp-python's on the packaged GGUF for the run; and its description."""
    if settings.engine_url:
        yield settings.engine_url, f"the configured server at {settings.engine_url}"
        return
    gguf = generator_gguf(settings.generator_model, settings.cache_dir)
    if gguf is None:
        raise ValueError(f"{settings.generator_model} has no GGUF to serve")
    with (
        tempfile.TemporaryDirectory() as folder,
        llama_cpp_server(
            gguf, settings.engine_model, settings.threads or os.cpu_count() or 1, Path(folder, "server.log"), logits_all
        ) as url,
    ):
        yield url, "llama-cpp-python's server (0.3.36) on 127.0.0.1, started for the run"


@contextmanager
def llama_cpp_server(gguf: Path, alias: str, threads: int, log: Path, logits_all: bool = True) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port; yields its /v1 URL.

    `logits_all` is its default and what its `logprobs` need; it also makes every prefill compute and copy
    the logits of each prompt token (vocabulary 151,936 wide), which the model-server section measures.
    """
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--flash_attn", "true"]
    command += ["--n_threads", str(threads)]  # its default decodes on half the cores
    command += ["--logits_all", str(logits_all).lower()]
    url = f"http://127.0.0.1:{port}/v1"
    with serving(command, f"{url}/models", log, timeout_s=180):
        yield url
