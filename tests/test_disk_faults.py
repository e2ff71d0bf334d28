"""A full or read-only disk under the index and under the model cache: real tmpfs mounts (root only).

Each case checks what a user sees (an error naming the disk and what to do), that the previous
index is still served, and that nothing half-written is left behind to fill the disk further.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import SEEDS
from fastapi.testclient import TestClient

from rag.assistant import Assistant
from rag.generation.transformers.prepare import generator_model_dir
from rag.models import REGISTRY, ModelError, packaged_gguf
from rag.serving.app import create_app, prepared_assistant
from rag.settings import Settings
from rag.store.base import IndexWriteError
from rag.store.local import CURRENT, MANIFEST, LocalStore

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")

ADMIN = "disk-admin"
QUESTION = "What did LeCun propose in Paris?"
DISK_MB = 20
RAG = str(Path(sys.executable).with_name("rag"))  # the installed command


@contextmanager
def small_disk(path: Path, megabytes: int = DISK_MB) -> Iterator[Path]:
    """A tmpfs of `megabytes` mounted at `path`, unmounted afterwards."""
    path.mkdir(parents=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "rag-test-disk", str(path)]
    result = subprocess.run(mount, capture_output=True, text=True)
    if result.returncode != 0 and "permission denied" in result.stderr.lower():  # root without CAP_SYS_ADMIN
        pytest.skip(f"this container may not mount a tmpfs: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def fill(disk: Path, leave_bytes: int) -> Path:
    """A ballast file taking all but about `leave_bytes` of the disk."""
    ballast = disk / "ballast"
    with open(ballast, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 20))
                handle.flush()
        except OSError:
            pass
    os.truncate(ballast, max(0, ballast.stat().st_size - leave_bytes))
    return ballast


def memo(seed: int, words: int) -> bytes:
    """A document of random words (nothing compresses or deduplicates it), with a findable first line."""
    rng = random.Random(seed)
    vocabulary = [f"{rng.choice('bcdfgklmnprstvz')}{rng.choice('aeiou')}{n}" for n in range(5000)]
    body = " ".join(rng.choice(vocabulary) for _ in range(words))
    return f"Memo {seed}\n\nThe archive room {seed} holds {body}.\n".encode()


def leftovers(index_dir: Path) -> set[str]:
    """Generations and segments on disk that the current generation does not name, and a pointer's temp file."""
    current = (index_dir / CURRENT).read_text().strip()
    named = {s["name"] for s in json.loads((index_dir / current / MANIFEST).read_text())["segments"]} | {current}
    on_disk = {p.name for p in index_dir.iterdir() if p.name.startswith(("gen-", "seg-", f"{CURRENT}."))}
    return on_disk - named


def upload(client: TestClient, name: str, content: bytes) -> object:
    return client.post("/api/documents", files=[("files", (name, content))], headers={"X-Admin-Token": ADMIN})


def test_uploads_until_the_disk_fills_get_507_naming_it_and_the_previous_index_is_still_served(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        # The tiny model's own answer check is no part of what is tested here (and on some CPUs it refuses the
        # LeCun answer): the answer below shows the previous index is served, cited from it.
        settings = Settings(
            index_dir=disk / "index",
            default_corpus=SEEDS,
            generator_model="smollm2-135m",
            admin_token=ADMIN,
            disabled_checks=["contradiction", "answer check"],
        )
        assistant = prepared_assistant(settings)
        ballast = fill(disk, leave_bytes=512 * 1024)  # a 512 KB margin, filled by real uploads below
        with TestClient(create_app(assistant)) as client:
            accepted, refused = [], None
            for seed in range(40):
                response = upload(client, f"memo-{seed}.txt", memo(seed, 3000))
                if response.status_code != 200:
                    refused = response
                    break
                accepted.append(f"memo-{seed}.txt")
                before = (client.get("/api/documents").json(), assistant.retrieve(QUESTION, 5))
            assert refused is not None, "40 uploads of 20 KB fit in a 512 KB margin"
            assert accepted, "the first upload already failed: the margin is too small to show a fill"
            detail = refused.json()["detail"]
            assert refused.status_code == 507, detail
            assert f"mount {disk}" in detail and "is full" in detail and "RAG_INDEX_DIR" in detail, detail
            assert "previous index is unchanged" in detail, detail

            # the previous index, with every accepted upload, is what is served and what a restart loads
            documents, passages = before
            assert client.get("/api/documents").json() == documents
            assert assistant.retrieve(QUESTION, 5) == passages
            answer = client.post("/api/ask", json={"question": QUESTION})
            assert answer.status_code == 200 and answer.json()["citations"], answer.text
            restarted = LocalStore(settings.index_dir, assistant.embedder)
            assert {d.source for d in restarted.documents()} == {d["source"] for d in documents}

            # nothing half-written stays to hold the disk: no generation or segment but the live ones,
            # no copy of the refused file
            assert leftovers(settings.index_dir) == set()
            assert sorted(p.name for p in settings.upload_dir.iterdir()) == accepted

            ballast.unlink()  # room again: the refused file goes in, nothing to repair first
            response = upload(client, f"memo-{len(accepted)}.txt", memo(len(accepted), 3000))
            assert response.status_code == 200 and response.json()["files"][0]["status"] == "added"
            assert leftovers(settings.index_dir) == set()


def test_a_read_only_index_dir_is_still_served_and_writes_are_refused_naming_it(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        settings = Settings(
            index_dir=disk / "index", default_corpus=SEEDS, generator_model="smollm2-135m", admin_token=ADMIN
        )
        prepared_assistant(settings)
        read_only(disk)
        assistant = prepared_assistant(settings)  # a restart on the read-only disk serves the index there
        with TestClient(create_app(assistant)) as client:
            assert len(client.get("/api/documents").json()) == 4
            assert assistant.retrieve(QUESTION, 5)
            refused = upload(client, "memo.txt", memo(1, 300))
            detail = refused.json()["detail"]
            assert refused.status_code == 507, detail
            assert f"the disk {disk} is mounted read-only" in detail and "RAG_INDEX_DIR" in detail, detail
            assert len(client.get("/api/documents").json()) == 4

        # the CLI says the same, in one line, with exit status 2
        result = subprocess.run(
            [RAG, "index", "--rebuild"],
            env={**os.environ, "RAG_INDEX_DIR": str(settings.index_dir), "RAG_DEFAULT_CORPUS": str(SEEDS)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2, result.stderr
        assert f"the disk {disk} is mounted read-only" in result.stderr, result.stderr


def test_a_store_sync_on_a_full_disk_leaves_the_loaded_snapshot_and_no_files(tmp_path: Path) -> None:
    """The store alone, also a first index: nothing is indexed and nothing is left."""
    with small_disk(tmp_path / "disk", megabytes=1) as disk:
        assistant = Assistant(Settings(index_dir=disk / "index", default_corpus=SEEDS))
        fill(disk, leave_bytes=64 * 1024)
        with pytest.raises(IndexWriteError, match=rf"mount {disk}: .* free of 1.0 MB\); .*; nothing was indexed"):
            assistant.index()
        assert not assistant.store.is_built()
        assert sorted(p.name for p in (disk / "index").iterdir()) == [".lock"]


def test_a_full_model_cache_fails_prepare_naming_the_disk_and_leaves_no_partial_files(tmp_path: Path) -> None:
    with small_disk(tmp_path / "cache") as cache:
        # the default model's split GGUF, assembled into the cache: refused once the disk fills
        with pytest.raises(ModelError, match=rf"the disk holding {cache} is full .*RAG_CACHE_DIR"):
            packaged_gguf(REGISTRY[Settings().generator_model], cache)
        # SmolLM2's GGUF converted to bf16 safetensors in the cache (270 MB into 20)
        with pytest.raises(ModelError, match=rf"the disk holding {cache}/models is full"):
            generator_model_dir("smollm2-135m", cache)
        left = [p for p in cache.rglob("*") if p.is_file()]
        assert left == [], left

        # `rag prepare` says it in one line and exits 2
        result = subprocess.run(
            [RAG, "prepare"],
            env={
                **os.environ,
                "RAG_CACHE_DIR": str(cache),
                "RAG_GENERATOR_MODEL": "smollm2-135m",
                "RAG_GENERATOR_ENGINE": "transformers",
                "RAG_INDEX_DIR": str(tmp_path / "index"),
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2, result.stderr
        expected = f"rag: error: cannot prepare the model: the disk holding {cache}/models is full"
        assert expected in result.stderr, result.stderr
        assert [p for p in cache.rglob("*") if p.is_file()] == []

        read_only(cache)
        with pytest.raises(ModelError, match=rf"the disk {cache} is mounted read-only; set RAG_CACHE_DIR"):
            generator_model_dir("smollm2-135m", cache)
