"""The soak run CI makes: `rag soak` for 1 minute with 4 clients against a real server and the default model.

The run goes on past its minute, asking only for what is missing, until each route has been answered
once (two slow cores can spend a minute without finishing one stream). It fails on any 5xx, a hang, a
503 without Retry-After, a generation left running after its client went away, or memory or open files
growing beyond noise (docs/reliability.md has the longer run's figures).
"""

from __future__ import annotations

import pytest
from conftest import SEEDS

from rag.cpu import cpu_info
from rag.evaluation.soak import report, soak
from rag.settings import Settings

pytestmark = pytest.mark.e2e


def test_a_minute_of_four_clients_passes_with_no_5xx_hang_or_leak() -> None:
    settings = Settings(default_corpus=SEEDS)
    result = soak(settings, minutes=1, clients=4)
    text = report(result, settings, cpu_info().describe())
    print(text)
    assert not result.problems, text
    answered = {r.route for r in result.records if r.status == 200}
    assert {"POST /api/ask", "POST /api/ask/stream", "GET /api/documents"} <= answered, answered
    assert len(result.records) >= 8
