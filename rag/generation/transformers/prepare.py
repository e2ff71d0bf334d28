"""A generator as a transformers folder: a packaged GGUF converted once into bf16 safetensors in the cache.

Loading a GGUF through transformers takes ~50 s while the converted folder loads in seconds, so the
conversion happens once per model (written to a temp dir and renamed, so a crash leaves no half folder).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from rag.models import REGISTRY, ModelError, cache_writes, hash_files, packaged_gguf

PREPARED_MARKER = "rag-prepared.json"


def generator_model_dir(name: str, cache_dir: Path) -> Path:
    """A transformers folder with bf16 weights, preparing it from a GGUF on first use."""
    path = Path(name).expanduser()
    if name not in REGISTRY:
        if path.is_dir():
            return path
        if path.is_file() and path.suffix == ".gguf":
            digest = hash_files([path], f"hashing {path.name}")
            return _prepare_from_gguf(path, digest, cache_dir / "models" / f"{path.stem}-{digest[:12]}")
        raise ModelError(
            f"generator {name!r} is neither a known name ({', '.join(REGISTRY)}), a model folder, nor a .gguf file"
        )
    model = REGISTRY[name]
    target = cache_dir / "models" / f"{model.name}-{model.sha256[:12]}"
    if _is_prepared(target, model.sha256):
        return target
    return _prepare_from_gguf(packaged_gguf(model, cache_dir), model.sha256, target)


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
    with cache_writes(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    with cache_writes(target.parent, staging):
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
    print(f"Prepared {target}", file=sys.stderr, flush=True)
    return target
