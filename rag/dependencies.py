"""Failures of the parts a deployment runs beside the assistant: the database and the model server.

Such a failure is not the request's fault and not a bug here: the same request succeeds once the part is
back. Every front end therefore answers it as 503 with Retry-After (never 500), naming the part, and
`/readyz` reports the part as down, so a load balancer sends questions to a replica that can answer.
"""

from __future__ import annotations

from typing import ClassVar

from rag.models import ModelError

RETRY_AFTER_S = 5  # what a caller is told to wait: a restarted database or model server is back within seconds


class DependencyUnavailable(RuntimeError):
    """A part this process relies on but does not run refused, broke off or did not answer within its bound."""

    part: ClassVar[str]  # as the 503's message and /metrics name it


# The database's failure is a store error too (`rag.store.base.DatabaseUnavailable`), so that what handles
# those (the CLI's one-line errors) handles it.


class ModelServerUnavailable(DependencyUnavailable, ModelError):
    """The model server refused the connection, reset it, timed out or answered with an error.

    `refused`: it answered, with an error status (some servers refuse an option, e.g. logprobs, that way).
    """

    part = "model server"

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused
