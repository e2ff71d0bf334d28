from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rag import models
from rag.generation.transformers import prepare
from rag.generation.transformers.prepare import generator_model_dir
from rag.models import REGISTRY, ModelError, embedding_model_dir, packaged_files
from rag.settings import Settings


def test_default_generator_parts_are_installed_in_order() -> None:
    files = packaged_files(REGISTRY["qwen2.5-coder-1.5b"])
    assert len(files) == 22
    assert [f.name for f in files] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert sum(f.stat().st_size for f in files) == 1_117_320_768


def test_embedding_model_is_found_and_verified() -> None:
    folder = embedding_model_dir("all-minilm-l6-v2")
    assert (folder / "model.safetensors").is_file()
    assert (folder / "modules.json").is_file()


def test_corrupt_model_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tampered = dataclasses.replace(REGISTRY["smollm2-135m"], sha256="0" * 64)
    monkeypatch.setitem(models.REGISTRY, "smollm2-135m", tampered)
    with pytest.raises(ModelError, match="does not match"):
        generator_model_dir("smollm2-135m", tmp_path)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    absent = dataclasses.replace(
        REGISTRY["smollm2-135m"], distributions=("no-such-model-package",), install_hint="pip install x"
    )
    monkeypatch.setitem(models.REGISTRY, "smollm2-135m", absent)
    with pytest.raises(ModelError, match="not installed; run: pip install x"):
        generator_model_dir("smollm2-135m", tmp_path)


def test_unknown_model_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"qwen2\.5-coder-1\.5b"):
        generator_model_dir("gpt-17", tmp_path)


def test_gguf_is_prepared_once_then_reused() -> None:
    cache = Settings().cache_dir
    first = generator_model_dir("smollm2-135m", cache)
    assert (first / "model.safetensors").is_file()
    assert (first / prepare.PREPARED_MARKER).is_file()
    mtime = (first / "model.safetensors").stat().st_mtime
    assert generator_model_dir("smollm2-135m", cache) == first
    assert (first / "model.safetensors").stat().st_mtime == mtime


def test_local_model_folder_is_used_as_is(tmp_path: Path) -> None:
    assert generator_model_dir(str(tmp_path), tmp_path / "cache") == tmp_path
