"""The openai engine against a real model server: llama-cpp-python's, serving the packaged GGUF on loopback.

Greedy answers and yes/no verdicts must be the local llama.cpp engine's (same weights, same template),
a cancelled answer must stop the server's generation, and a wrong address or model must say so.
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import MESSAGES, PASSAGE

from rag.evaluation.bench.model_server import llama_cpp_server
from rag.generation.llamacpp import LlamaCppEngine
from rag.generation.openai_compatible import REPLY_LOG_ODDS, OpenAIEngine, _log_odds
from rag.models import ModelError, generator_gguf
from rag.settings import Settings
from rag.types import Prompt

pytestmark = pytest.mark.e2e

CHECKS = [
    Prompt(
        [
            {"role": "system", "content": "Reply with yes or no."},
            {"role": "user", "content": f"Passage: {PASSAGE}\n\n{question}"},
        ]
    )
    for question in ("Does the canteen serve fish on Fridays?", "Is the canteen on the tenth floor?")
]


@pytest.fixture(scope="module")
def remote(model_server: str) -> OpenAIEngine:
    engine = OpenAIEngine(model_server, Settings().generator_model, None, max_new_tokens=40)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def local() -> LlamaCppEngine:
    settings = Settings()
    return LlamaCppEngine(settings.generator_model, settings.cache_dir, max_new_tokens=40)


def test_the_server_answers_as_the_local_engine_does(remote: OpenAIEngine, local: LlamaCppEngine) -> None:
    answer = "".join(remote.stream(Prompt(MESSAGES)))
    assert "noon" in answer
    assert answer == "".join(local.stream(Prompt(MESSAGES)))


def test_yes_no_verdicts_come_from_logprobs_and_agree_with_the_local_engine(
    remote: OpenAIEngine, local: LlamaCppEngine
) -> None:
    remote_odds = [remote.yes_log_odds(p) for p in CHECKS]
    local_odds = [local.yes_log_odds(p) for p in CHECKS]
    assert remote.yes_no_method == "logprobs"
    assert remote_odds[0] > 0 > remote_odds[1]
    assert remote_odds == pytest.approx(local_odds, abs=0.5)


def test_a_server_without_logprobs_gives_verdicts_by_a_one_token_reply(
    tmp_path: Path, local: LlamaCppEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    """llama-cpp-python's server started with --logits_all false refuses logprobs outright."""
    gguf = generator_gguf(local.model_name, local.cache_dir)
    assert gguf is not None
    with llama_cpp_server(gguf, local.model_name, os.cpu_count() or 1, tmp_path / "log", logits_all=False) as url:
        lean = OpenAIEngine(url, local.model_name, None, max_new_tokens=40)
        odds = [lean.yes_log_odds(p) for p in CHECKS]
        assert lean.yes_no_method == "reply"
        assert odds == [REPLY_LOG_ODDS, -REPLY_LOG_ODDS]
        assert "gives no logprobs" in capsys.readouterr().err
        assert "noon" in "".join(lean.stream(Prompt(MESSAGES)))


def test_cancel_closes_the_stream_and_the_server_goes_on_serving(remote: OpenAIEngine) -> None:
    cancel = threading.Event()
    long = Prompt([{"role": "user", "content": "Count from 1 to 500, one number per line."}], max_new_tokens=400)
    started = time.perf_counter()
    pieces = []
    for piece in remote.stream(long, cancel):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()
    assert 3 <= len(pieces) <= 4
    # the server stopped: the next answer does not wait behind 400 tokens of counting (~25 s here)
    assert "noon" in "".join(remote.stream(Prompt(MESSAGES)))
    assert time.perf_counter() - started < 20


def test_a_wrong_model_or_address_is_named(model_server: str) -> None:
    with pytest.raises(ModelError, match=r"serves qwen2\.5-coder-1\.5b, not 'llama-70b'"):
        OpenAIEngine(model_server, "llama-70b", None, 8).load()
    with pytest.raises(ModelError, match=r"at http://127\.0\.0\.1:9/v1 did not answer"):
        OpenAIEngine("http://127.0.0.1:9/v1", "m", None, 8).load()


def test_the_server_counts_tokens_as_the_local_engine(remote: OpenAIEngine, local: LlamaCppEngine) -> None:
    assert remote.count_tokens(PASSAGE) == local.count_tokens(PASSAGE)


def test_log_odds_without_logprobs_is_none_and_missing_words_get_the_lowest_listed() -> None:
    def reply(top: list[tuple[str, float]] | None) -> SimpleNamespace:
        content = (
            None
            if top is None
            else [SimpleNamespace(top_logprobs=[SimpleNamespace(token=t, logprob=p) for t, p in top])]
        )
        return SimpleNamespace(
            choices=[SimpleNamespace(logprobs=None if top is None else SimpleNamespace(content=content))]
        )

    assert _log_odds(reply(None)) is None
    assert _log_odds(reply([("Yes", -0.1), (" yes", -3.0), ("No", -4.0)])) == pytest.approx(
        math.log(math.exp(-0.1) + math.exp(-3.0)) + 4.0
    )
    assert _log_odds(reply([("No", -0.2), ("Maybe", -6.0)])) == pytest.approx(-6.0 + 0.2)


def test_without_a_tokenize_endpoint_tokens_are_estimated() -> None:
    assert OpenAIEngine("http://127.0.0.1:9/v1", "m", None, 8).count_tokens("twelve chars") == 3
