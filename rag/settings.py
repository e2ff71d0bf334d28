"""All tunables in one place: defaults, overridden by a TOML file, overridden by RAG_* env vars."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.types import AnswerStyle

CONFIG_ENV = "RAG_CONFIG"
DEFAULT_CONFIG_FILE = "rag.toml"


def _config_file() -> Path | None:
    """RAG_CONFIG names the file explicitly (and must exist); else ./rag.toml if present."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"{CONFIG_ENV}={explicit} does not name a readable file")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", validate_default=True)

    # Where things live
    index_dir: Path = Path("index")
    default_corpus: Path = Path("seeds")
    cache_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rag",
        description="Prepared (converted) models; outside the repo so clones share them.",
    )

    # Models: a name from rag.models.REGISTRY, a local HF folder, or a .gguf path
    embedding_model: str = "all-minilm-l6-v2"
    generator_model: str = "qwen2.5-coder-1.5b"
    threads: int = Field(default=0, ge=0, description="Torch threads; 0 = all cores.")

    # Ingestion
    max_file_mb: float = Field(default=20.0, gt=0)

    # Chunking (characters; boundaries snap to sentences)
    chunk_size: int = Field(default=700, ge=100)
    chunk_overlap: int = Field(default=150, ge=0)

    # Retrieval
    top_k: int = Field(default=4, ge=1, le=20)
    candidate_k: int = Field(default=20, ge=1)
    bm25_weight: float = Field(default=0.4, ge=0, le=1, description="Share of BM25 in the fused score.")
    bm25_k1: float = Field(default=0.9, gt=0, description="BM25 term-frequency saturation (Anserini's default).")
    bm25_b: float = Field(default=0.4, ge=0, le=1, description="BM25 length normalisation (Anserini's default).")
    embed_batch_size: int = Field(default=32, ge=1)

    # Generation
    max_new_tokens: int = Field(default=96, ge=8)
    answer_style: AnswerStyle = Field(
        default="sentence",
        description="sentence: cited sentences for people; short: only the exact phrase that answers (benchmarks).",
    )
    history_turns: int = Field(default=3, ge=0)
    max_question_chars: int = Field(default=2000, ge=10)

    # Citation verification and abstention
    support_threshold: float = Field(default=0.6, ge=0, le=1)
    min_relevance: float = Field(default=0.25, ge=-1, le=1)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    def model_post_init(self, __context: object) -> None:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
