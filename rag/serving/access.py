"""Who may call and embed the server: the API key, the admin token, framing and CORS limits, body sizes.

Browsers are kept in line by settings: `allowed_origins` is both the CORS allowlist and the CSP
frame-ancestors list, so only those pages may embed or call us. Secrets are compared in constant time.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.serving.errors import error_response
from rag.settings import Settings

MAX_JSON_BYTES = 1024 * 1024


def api_key_check(settings: Settings) -> Any:
    key = settings.api_key.get_secret_value() if settings.api_key else None

    def check(request: Request) -> None:
        if key is not None and not _key_matches(request.headers, key):
            raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})

    return check


class RequireApiKey:
    """The API key check for a plain ASGI app (MCP's HTTP transport), as `api_key_check` does for routes."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.key = settings.api_key.get_secret_value() if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is not None and scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            if not _key_matches(headers, self.key):
                reply = error_response(scope["path"], 401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})
                await reply(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _key_matches(headers: Mapping[str, str], key: str) -> bool:
    """`X-API-Key: <key>` or `Authorization: Bearer <key>`, compared in constant time."""
    given = headers.get("x-api-key") or ""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        given = given or token.strip()
    return secrets.compare_digest(given.encode(), key.encode())


def check_admin(settings: Settings, given: str | None) -> None:
    if settings.admin_token is None:
        raise HTTPException(403, "uploads are disabled: no admin_token is configured on the server")
    if not secrets.compare_digest((given or "").encode(), settings.admin_token.get_secret_value().encode()):
        raise HTTPException(401, "missing or wrong admin token (send it in X-Admin-Token)")


def ui_auth(settings: Settings) -> Any:
    """With an API key set, the UI (and gradio_client) log in with it as the password."""
    if settings.api_key is None:
        return None
    key = settings.api_key.get_secret_value()
    return lambda _user, password: secrets.compare_digest(password.encode(), key.encode())


def strict_csp(origins: Sequence[str]) -> str:
    """Our own pages run only our own scripts: injected markup could not execute even if it got in."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        f"base-uri 'none'; form-action 'none'; {_frame_ancestors(origins)}"
    )


def _frame_ancestors(origins: Sequence[str]) -> str:
    return "frame-ancestors " + " ".join(["'self'", *origins])


class SecurityHeaders:
    """Every response may be framed only by us and the allowlisted origins (unless it sets its own CSP), is
    not sniffed for another content type, and sends no referrer (a document page's URL holds its id)."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.policy = _frame_ancestors(origins).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", self.policy))
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                if b"referrer-policy" not in names:
                    headers.append((b"referrer-policy", b"no-referrer"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_policy)


class OriginCheck:
    """A browser request from a page that is neither ours nor on `allowed_origins` is refused (403) on the API
    paths, streams and /v1 included: CORS only keeps such a page from reading the reply, and the request
    would still queue a generation. Clients that are not browsers send no Origin and pass."""

    PATHS = ("/api/", "/v1/", "/mcp", "/metrics")

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.origins = {o.rstrip("/") for o in origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.PATHS):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            origin = headers.get("origin", "").rstrip("/")
            same_site = origin.partition("://")[2] == headers.get("host", "")
            if origin and origin not in self.origins and not same_site:
                reply = error_response(scope["path"], 403, f"requests from {origin} are not allowed (allowed_origins)")
                await reply(scope, receive, send)
                return
        await self.app(scope, receive, send)


class AuthFailureLimit:
    """A client (by address) that sent `max_failures` wrong API keys or admin tokens within `window_s` gets
    429 on everything but /healthz until the window has passed: guessing a key takes forever.

    Behind a reverse proxy every client has the proxy's address, so one guesser blocks the proxy's
    clients for a minute; set `max_auth_failures` higher there.
    """

    def __init__(self, app: ASGIApp, max_failures: int, window_s: float = 60.0) -> None:
        self.app = app
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        now = time.monotonic()
        recent = self._failures.get(client)
        while recent and now - recent[0] > self.window_s:
            recent.popleft()
        if recent is not None and not recent:
            del self._failures[client]
        elif recent is not None and len(recent) >= self.max_failures:
            wait = max(1, int(self.window_s - (now - recent[0])) + 1)
            message = f"too many wrong keys or tokens from this client; try again in {wait} s"
            reply = error_response(scope["path"], 429, message, {"Retry-After": str(wait)})
            await reply(scope, receive, send)
            return

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self._failures.setdefault(client, deque()).append(time.monotonic())
            await send(message)

        await self.app(scope, receive, watching_send)


class BodyLimit:
    """Refuse request bodies over the limit with 413 (by Content-Length, or while streaming in).

    Uploads (ours and Gradio's) may be `upload_bytes`; anything else is JSON and small.
    """

    UPLOAD_PATHS = ("/api/documents", "/gradio_api/upload")

    def __init__(self, app: ASGIApp, upload_bytes: int) -> None:
        self.app = app
        self.upload_bytes = upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.upload_bytes if scope["path"].rstrip("/") in self.UPLOAD_PATHS else MAX_JSON_BYTES
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _too_large(scope, limit)(scope, receive, send)
            return
        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer now, and tell the app the client left: frameworks turn exceptions raised
                    # while reading a body into their own 400s.
                    refused = True
                    if not started:
                        await _too_large(scope, limit)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


def _too_large(scope: Scope, limit: int) -> JSONResponse:
    return error_response(scope["path"], 413, f"the request body is over the limit of {limit / 1024 / 1024:.1f} MB")
