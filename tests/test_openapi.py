"""The OpenAPI document at /openapi.json is true: schemathesis, against the running server (SmolLM2), sends
requests generated from it to every route and checks every response (`--checks all`: no 5xx, each status
and body as documented, schema-valid requests accepted, invalid ones refused, the API key enforced)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import SEEDS, running_server

from rag.assistant import Assistant
from rag.serving.app import create_app, prepared_assistant
from rag.settings import Settings

API_KEY = "test-api-key"
ADMIN_TOKEN = "test-admin-token"
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    folder = tmp_path_factory.mktemp("openapi")
    settings = Settings(
        index_dir=folder / "index",
        default_corpus=SEEDS,
        generator_model="smollm2-135m",
        api_key=API_KEY,
        admin_token=ADMIN_TOKEN,
        max_auth_failures=1_000_000,  # schemathesis sends wrong keys on purpose, many times
    )
    return prepared_assistant(settings)


@pytest.fixture(scope="module")
def url(keyed: Assistant) -> Iterator[str]:
    with running_server(create_app(keyed)) as base:
        yield base


def test_the_document_states_security_statuses_and_constraints(url: str) -> None:
    schema = httpx.get(f"{url}/openapi.json", timeout=30).json()
    paths = schema["paths"]
    assert {"/api/ask", "/api/ask/stream", "/api/documents", "/api/documents/{doc_id}"} <= set(paths)
    assert {"/v1/models", "/v1/chat/completions", "/metrics"} <= set(paths)
    upload = paths["/api/documents"]["post"]
    assert upload["security"] == [{"ApiKey": [], "AdminToken": []}, {"Bearer": [], "AdminToken": []}]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    ask = paths["/api/ask"]["post"]
    assert {"200", "400", "401", "403", "413", "422", "429", "500", "503"} <= set(ask["responses"])
    assert "X-Request-ID" in ask["responses"]["200"]["headers"]
    assert "Retry-After" in ask["responses"]["503"]["headers"]
    question = schema["components"]["schemas"]["AskRequest"]["properties"]["question"]
    assert question["pattern"] == r"\S" and question["maxLength"] == 2000
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    chat = paths["/v1/chat/completions"]["post"]["responses"]
    assert chat["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIErrorOut")


def test_schemathesis_finds_no_failure_on_any_route(url: str, tmp_path: Path) -> None:
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json"),
        *("--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", "1"),
        *("--header", f"X-API-Key: {API_KEY}", "--header", f"X-Admin-Token: {ADMIN_TOKEN}"),
        *("--request-timeout", "120", "--no-color", "--suppress-health-check", "all"),
        # Its own default is a 10 s limit per response; an answer (and its checks) on two slow cores under a full
        # test run can take longer. What this test checks is each response's shape and status; latency is measured
        # by `rag bench` and the soak run, so the limit is the request's own timeout.
        *("--max-response-time", "120"),
    ]
    # In a folder of its own: schemathesis keeps its crash cache under the working directory.
    run = subprocess.run(command, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    print(run.stdout[-20000:], run.stderr[-5000:])
    assert run.returncode == 0, run.stdout[-20000:]
