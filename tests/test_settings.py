from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rag.settings import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("RAG_CONFIG", "RAG_TOP_K", "RAG_INDEX_DIR", "RAG_GENERATOR_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_name_the_packaged_models() -> None:
    settings = Settings()
    assert settings.generator_model == "qwen2.5-coder-1.5b"
    assert settings.embedding_model == "all-minilm-l6-v2"
    assert settings.index_dir == Path("index")


def test_env_overrides_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "custom.toml"
    config.write_text('top_k = 6\nindex_dir = "/srv/idx"\n')
    monkeypatch.setenv("RAG_CONFIG", str(config))
    assert Settings().top_k == 6
    assert Settings().index_dir == Path("/srv/idx")
    monkeypatch.setenv("RAG_TOP_K", "3")
    assert Settings().top_k == 3


def test_rag_toml_in_working_dir_is_read(tmp_path: Path) -> None:
    (tmp_path / "rag.toml").write_text('generator_model = "smollm2-135m"\n')
    assert Settings().generator_model == "smollm2-135m"


def test_missing_explicit_config_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAG_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        Settings()


@pytest.mark.parametrize(
    "overrides",
    [
        {"top_k": 0},
        {"chunk_size": 300, "chunk_overlap": 300},
        {"support_threshold": 1.5},
        {"no_such_setting": 1},
        {"generator_quantization": "int3"},
        {"embedding_dtype": "float16"},
        {"prompt_lookup_tokens": -1},
        {"store": "postgres"},  # without database_url
        {"generator_engine": "openai"},  # without engine_url
        {"store": "sqlite", "database_url": "sqlite:///x"},
    ],
)
def test_invalid_values_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises((ValidationError, ValueError)):
        Settings(**overrides)


def test_unknown_key_in_config_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "rag.toml").write_text("topk = 3\n")
    with pytest.raises(ValidationError, match="topk"):
        Settings()


def test_allowed_origins_from_env_as_list_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_ALLOWED_ORIGINS", "https://Intranet.example.com/, http://wiki.example:8080")
    assert Settings().allowed_origins == ["https://intranet.example.com", "http://wiki.example:8080"]
    monkeypatch.setenv("RAG_ALLOWED_ORIGINS", '["http://a.example"]')
    assert Settings().allowed_origins == ["http://a.example"]


@pytest.mark.parametrize("origin", ["intranet.example.com", "http://intranet.example.com/wiki", "ftp://x.example"])
def test_an_allowed_origin_must_be_an_origin(origin: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(allowed_origins=[origin])


def test_disabled_checks_come_as_a_comma_list_or_json_and_must_name_a_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_DISABLED_CHECKS", "answer check, cited names")
    assert Settings().disabled_checks == ["answer check", "cited names"]
    monkeypatch.setenv("RAG_DISABLED_CHECKS", '["off topic"]')
    assert Settings().disabled_checks == ["off topic"]
    monkeypatch.setenv("RAG_DISABLED_CHECKS", "spell check")
    with pytest.raises(ValidationError, match="disabled_checks"):
        Settings()
