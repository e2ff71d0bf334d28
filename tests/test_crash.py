"""Crash consistency: the indexing process killed at every durable step of a sync, then restarted;
and a server killed during an upload.

A sync that adds, changes and removes documents and triggers a segment merge runs in a child process
that dies (os._exit: no cleanup code runs, as under kill -9) just before the Nth fsync, just after it,
or around the CURRENT pointer switch, for every N the sync makes. After each death a fresh store must
load a complete index, the old one or the new one and never a mix, search it, and a rerun of the sync
must finish the job and leave no stray files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, SEEDS, free_port
from test_store import CONFIG, ParagraphChunker, build, make_document, seed_documents

from rag.embedding.embedder import Embedder
from rag.settings import Settings
from rag.store.local import LocalStore

# A fork server: the model loads once, then each kill point runs in a fork of it (torch on one thread, so
# forking is safe), which keeps ~50 kill points to about a second each.
CHILD = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    import rag.store.local as local
    from rag.embedding.embedder import Embedder
    from test_crash import target_documents
    from test_store import CONFIG, ParagraphChunker

    point, number = "none", 0
    calls = {{"fsync": 0, "replace": 0}}
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls["fsync"] += 1
        if point == "before-fsync" and calls["fsync"] == number:
            os._exit(9)
        real_fsync(fd)
        if point == "after-fsync" and calls["fsync"] == number:
            os._exit(9)

    def replace(src, dst):
        calls["replace"] += 1
        if point == "before-switch":
            os._exit(9)
        real_replace(src, dst)
        if point == "after-switch":
            os._exit(9)

    local.os.fsync, local.os.replace = fsync, replace
    local.MERGE_FACTOR = 2  # this sync also merges segments: more writes to die in
    embedder = Embedder({model!r})
    embedder.encode(["loaded before forking"])
    print("ready", flush=True)
    for line in sys.stdin:
        point, number, index = line.split()
        number = int(number)
        child = os.fork()
        if child == 0:
            local.LocalStore(index, embedder).sync(target_documents(), ParagraphChunker(), CONFIG)
            print(json.dumps(calls), flush=True)
            os._exit(0)
        _, status = os.waitpid(child, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
    """
)


def target_documents() -> list:
    """The sync under test: seeds 1-3 kept, seed 0 removed, seed 1 edited, two notes added."""
    seeds = seed_documents()
    edited = make_document(seeds[1].source, seeds[1].text + "\n\nA closing paragraph on LeCun in Paris.")
    notes = [make_document(f"notes/{i}.txt", f"Note {i}\n\nLlamas carry loads number {i}.") for i in range(2)]
    return [edited, seeds[2], seeds[3], *notes]


def _sources(store: LocalStore) -> dict[str, str]:
    return {d.source: d.doc_id for d in store.documents()}


class ForkServer:
    """The child process: `run` sends it one kill point and returns (exit code, the sync's call counts if it lived)."""

    def __init__(self, embedder: Embedder) -> None:
        script = CHILD.format(tests=str(Path(__file__).parent), model=embedder.model_name)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        line = self.process.stdout.readline()
        assert line, "the fork server died"
        return line.strip()

    def run(self, index: Path, point: str, number: int) -> tuple[int, dict | None]:
        self.process.stdin.write(f"{point} {number} {index}\n")
        self.process.stdin.flush()
        line = self._line()
        calls = None
        if line.startswith("{"):
            calls, line = json.loads(line), self._line()
        return int(line), calls

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def before(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """Two segments already (seeds, then a note), so the crashing sync writes tombstones, a segment and a merge."""
    index = tmp_path_factory.mktemp("before") / "index"
    store = build(index, embedder, seed_documents())
    store.sync(
        [make_document("notes/old.txt", "Old note\n\nAbout alpacas.")], ParagraphChunker(), CONFIG, remove_missing=False
    )
    return index


def test_a_sync_killed_at_any_durable_step_leaves_the_old_or_the_new_index(
    tmp_path: Path, embedder: Embedder, before: Path
) -> None:
    old = _sources(LocalStore(before, embedder))
    done = tmp_path / "done"
    shutil.copytree(before, done)
    server = ForkServer(embedder)
    status, calls = server.run(done, "none", 0)
    assert status == 0 and calls is not None
    new = _sources(LocalStore(done, embedder))
    assert new != old and calls["fsync"] > 10 and calls["replace"] == 1

    points = [(p, n) for n in range(1, calls["fsync"] + 1) for p in ("before-fsync", "after-fsync")]
    points += [("before-switch", 0), ("after-switch", 0)]
    outcomes = {"old": 0, "new": 0}
    query = ["What did LeCun propose in Paris?"]
    for point, number in points:
        index = tmp_path / f"{point}-{number}"
        shutil.copytree(before, index)
        status, _ = server.run(index, point, number)
        assert status == 9, (point, number)

        restarted = LocalStore(index, embedder)
        state = _sources(restarted)
        assert state in (old, new), (point, number)  # never a mix of the two
        outcomes["old" if state == old else "new"] += 1
        found = restarted.search(query, embedder.encode(query), 10)
        assert {d.source for d in found.documents} <= set(state)
        for chunk, document in zip(found.chunks, found.documents, strict=True):
            assert document.text[chunk.start : chunk.end] == chunk.text

        report = restarted.sync(target_documents(), ParagraphChunker(), CONFIG)  # `rag index` finishes the job
        assert _sources(LocalStore(index, embedder)) == new
        assert bool(report.added) == (state == old)
        manifest = json.loads((index / (index / "CURRENT").read_text().strip() / "manifest.json").read_text())
        on_disk = {p.name for p in index.iterdir() if p.name.startswith(("seg-", "gen-"))}
        assert on_disk == {s["name"] for s in manifest["segments"]} | {(index / "CURRENT").read_text().strip()}
    server.close()
    print(f"kill points tried: {len(points)}, survived: {len(points)}, outcomes: {outcomes}")
    assert outcomes["old"] and outcomes["new"]  # deaths on both sides of the switch were tried


def _start_server(index: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAG_INDEX_DIR": str(index),
        "RAG_DEFAULT_CORPUS": str(SEEDS),
        "RAG_GENERATOR_MODEL": "smollm2-135m",
        "RAG_ADMIN_TOKEN": "admin",
        "RAG_PORT": str(port),
    }
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)


def test_a_server_killed_during_an_upload_loses_no_acknowledged_file(tmp_path: Path) -> None:
    """kill -9 while an upload is being indexed: what got a success reply is there after a restart, and
    `rag index` indexes the file whose upload was cut off (it was saved before indexing began)."""
    index, log, port = tmp_path / "index", tmp_path / "server.log", free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start_server(index, port, log)
    try:
        upload = {"files": ("memo.txt", b"Memo\n\nThe canteen serves fish on Fridays.")}
        acknowledged = httpx.post(f"{url}/api/documents", files=upload, headers={"X-Admin-Token": "admin"}, timeout=120)
        assert acknowledged.json()["files"][0]["status"] == "added"
        sentences = " ".join(f"Paragraph {i} is about llamas, alpacas and their wool number {i}." for i in range(6000))
        cut_off = {"files": ("big.txt", f"Big\n\n{sentences}".encode())}
        sending = ThreadPoolExecutor(1).submit(
            httpx.post, f"{url}/api/documents", files=cut_off, headers={"X-Admin-Token": "admin"}, timeout=120
        )
        deadline = time.monotonic() + 60
        while not (index / "uploads" / "big.txt").exists():  # saved: indexing has begun
            assert time.monotonic() < deadline
            time.sleep(0.01)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        with pytest.raises(httpx.HTTPError):
            sending.result()
    finally:
        server.kill()

    server = _start_server(index, port, log)
    try:
        sources = [d["source"] for d in httpx.get(f"{url}/api/documents", timeout=30).json()]
        assert any(s.endswith("memo.txt") for s in sources)
    finally:
        server.terminate()
        server.wait(timeout=30)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_INDEX_DIR": str(index), "RAG_DEFAULT_CORPUS": str(SEEDS)}
    finished = subprocess.run([sys.executable, "-m", "rag.cli", "index"], env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    documents = LocalStore(index, Embedder(Settings().embedding_model)).documents()
    assert {"memo.txt", "big.txt"} <= {Path(d.source).name for d in documents}
