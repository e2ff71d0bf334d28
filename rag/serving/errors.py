"""One shape for every refusal, whichever layer refuses: a route, a validation error or a middleware.

Under /v1 errors take the OpenAI shape (`{"error": {"message", "type", "param", "code", "request_id"}}`)
that OpenAI clients parse; everywhere else `{"detail", "request_id"}`. Both carry the request id, as the
`X-Request-ID` header does, so a user's report can be found in the log.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import JSONResponse

from rag.serving.telemetry import current_request_id

OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def error_body(path: str, status: int, message: str) -> dict[str, object]:
    request_id = current_request_id()
    if is_openai_path(path):
        kind = OPENAI_ERROR_TYPES.get(status, "server_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": None, "request_id": request_id}}
    return {"detail": message, "request_id": request_id}


def error_response(path: str, status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(path, status, message), status, headers=dict(headers or {}))
