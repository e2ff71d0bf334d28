from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.embedding import Embedder
from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated from the developer's env and config, with a private index dir."""
    return Settings(index_dir=tmp_path / "index", default_corpus=SEEDS)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder(Settings().embedding_model)
