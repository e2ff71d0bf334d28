"""A team deployment for real: PostgreSQL with pgvector, the llama.cpp model server, and two app replicas.

Both replicas serve one collection: an answer from either cites the Paris article, a document uploaded
through one is answerable from the other within seconds, and nothing is indexed twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import PARIS, SEEDS, running_server

from rag.assistant import Assistant
from rag.serving.app import create_app, prepared_assistant
from rag.settings import Settings

pytestmark = pytest.mark.e2e

ADMIN = "admin-secret"
MEMO = "Offsite memo\n\nThe quarterly offsite of the platform team will be held in Lisbon, in the old tram depot.\n"


def replica(database_url: str, model_server: str, folder: Path, **overrides: object) -> Assistant:
    settings = Settings(
        **overrides,
        index_dir=folder,
        default_corpus=SEEDS,
        store="postgres",
        database_url=database_url,
        generator_engine="openai",
        engine_url=model_server,
        admin_token=ADMIN,
    )
    return prepared_assistant(settings)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, postgres_server: str, model_server: str) -> Iterator[list[str]]:
    import psycopg

    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute("CREATE DATABASE team")
    database_url = postgres_server.replace("/postgres?", "/team?")
    first = replica(database_url, model_server, tmp_path_factory.mktemp("replica-a"), max_concurrent_generations=2)
    second = replica(database_url, model_server, tmp_path_factory.mktemp("replica-b"))
    with running_server(create_app(first)) as a, running_server(create_app(second)) as b:
        yield [a, b]


def test_both_replicas_answer_the_lecun_question_from_one_index(team: list[str]) -> None:
    for url in team:
        answer = httpx.post(f"{url}/api/ask", json={"question": "What did LeCun propose in Paris?"}, timeout=300).json()
        assert not answer["abstained"], answer["answer"]
        assert any(c["source"].endswith(PARIS) for c in answer["citations"])
    documents = [httpx.get(f"{url}/api/documents").json() for url in team]
    assert documents[0] == documents[1] and len(documents[0]) == 4  # indexed once, by the first replica


def test_an_upload_through_one_replica_is_answerable_from_the_other(team: list[str]) -> None:
    uploaded = httpx.post(
        f"{team[1]}/api/documents", files=[("files", ("memo.txt", MEMO.encode()))], headers={"X-Admin-Token": ADMIN}
    )
    assert uploaded.status_code == 200 and uploaded.json()["files"][0]["status"] == "added"
    started = time.monotonic()
    sources = [d["source"] for d in httpx.get(f"{team[0]}/api/documents").json()]
    assert any(s.endswith("memo.txt") for s in sources) and time.monotonic() - started < 5
    question = {"question": "Where will the quarterly offsite be held?"}
    answer = httpx.post(f"{team[0]}/api/ask", json=question, timeout=300).json()
    assert "Lisbon" in answer["answer"], answer
    assert any(c["source"].endswith("memo.txt") for c in answer["citations"])


def test_a_replica_sends_at_most_max_concurrent_generations_to_the_model_server(team: list[str]) -> None:
    """Replica A has two places: of three questions at once, two go to the server and one waits in A's line."""
    url = team[0]
    statuses: list[int] = []
    questions = ["What did Meta announce?", "Why does Zuckerberg favour open source?", "What does Altman propose?"]

    def ask(question: str) -> None:
        statuses.append(httpx.post(f"{url}/api/ask", json={"question": question}, timeout=600).status_code)

    askers = [threading.Thread(target=ask, args=(q,)) for q in questions]
    for asker in askers:
        asker.start()
    seen = set()
    while any(a.is_alive() for a in askers):
        seen.add(httpx.get(f"{url}/healthz").json()["waiting"])
        time.sleep(0.05)
    assert statuses == [200, 200, 200]
    assert max(seen) == 1, seen
