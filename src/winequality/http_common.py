"""What every HTTP service of the project does the same way: the bearer check and body reading.

The serving app, the drift detector and the retraining webhook import this module and nothing
heavier (no MLflow, no DVC): ASGI plumbing (``starlette.types``), the limited body reader and the
bearer-token dependency.

- ``read_body`` streams ``receive()`` and stops with ``BodyTooLargeError`` (413) as soon as the
  body passes the endpoint's limit, before reading it when ``Content-Length`` already says so,
  and with ``UnsupportedMediaTypeError`` (415) on a content type the endpoint does not take.
  Under the project's server (``http_server``) a body must also arrive within its read timeout:
  past it the server sets ``BODY_TIMED_OUT`` in the scope and wakes ``receive()``, and
  ``read_body`` stops with ``BodyTimeoutError`` (408; the server closes the connection after
  the answer). The server arms that timer only for a body that did not come with its headers,
  where an ``asyncio.timeout`` per body would cost every request a timer.
- ``TokenDep`` checks ``Authorization: Bearer <token>`` against the app's admin token in
  constant time; ``token_dependency(name)`` the same for another of its tokens (``set_token``
  with ``name``: the feedback and ingestion tokens). Every failure is the same answer: 401,
  ``WWW-Authenticate: Bearer`` and
  ``{"detail": {"reason": ..., "message": ...}}`` with reason ``auth_disabled`` (no token
  configured), ``missing_token`` or ``invalid_token``. It is a dependency, and the endpoints it
  guards declare no body parameter, so it runs before a byte of the body is read.
- ``install_error_handling`` gives every answer of an app an ``X-Request-ID`` (the caller's when
  it is a sane token, else a fresh one) and turns an exception no endpoint handled into a JSON
  500 carrying that id: ``{"detail": {"reason": "internal_error", "message": ...,
  "request_id": ...}}`` (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

import hmac
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Final

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BODY_TIMED_OUT",
    "JSON_MEDIA_TYPES",
    "ASGIApp",
    "BodyError",
    "BodyTimeoutError",
    "BodyTooLargeError",
    "ClientDisconnectedError",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "TokenDep",
    "UnsupportedMediaTypeError",
    "check_body_headers",
    "check_token",
    "given_request_id",
    "header",
    "install_error_handling",
    "internal_error_body",
    "media_type",
    "read_body",
    "read_body_from",
    "read_request_body",
    "request_id",
    "require_token",
    "send_json",
    "set_token",
    "token_dependency",
]

JSON_MEDIA_TYPES: Final[frozenset[bytes | None]] = frozenset({b"application/json"})
JSON_HEADER: Final = (b"content-type", b"application/json")
_REQUEST_ID_OK: Final = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
BODY_TIMED_OUT: Final = "winequality.body_timed_out"
"""Scope key the server sets to its read timeout (seconds) once the body is overdue."""
REQUEST_ID_HEADER: Final = b"x-request-id"
_REQUEST_ID_KEY: Final = "winequality.request_id"
"""Where ``RequestIdMiddleware`` leaves the request's id in the ASGI scope."""

log = logging.getLogger(__name__)


# --- body ------------------------------------------------------------------------------------


class BodyError(Exception):
    """A body refused before it was parsed: ``status``, a metric ``reason`` and a message."""

    status: int = 400
    reason: str = "bad_body"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BodyTooLargeError(BodyError):
    """The body exceeds the endpoint's limit (413)."""

    status = 413
    reason = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class UnsupportedMediaTypeError(BodyError):
    """The content type is not one the endpoint reads (415)."""

    status = 415
    reason = "unsupported_media_type"

    def __init__(self, accepted: frozenset[bytes | None]) -> None:
        names = sorted(t.decode() for t in accepted if t is not None)
        super().__init__(f"content-type must be one of {names}")


class BodyTimeoutError(BodyError):
    """The body did not arrive within the server's read timeout (408)."""

    status = 408
    reason = "body_timeout"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the request body did not arrive within {timeout_s:g} s (read timeout)")
        self.timeout_s = timeout_s


class ClientDisconnectedError(Exception):
    """The client went away before sending its whole body; nobody is left to answer."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """First value of a header (ASGI servers lower-case header names)."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def media_type(value: bytes | None) -> bytes | None:
    """``type/subtype`` of a Content-Type value, lower-cased, without parameters."""
    if value is None:
        return None
    return value.split(b";", 1)[0].strip().lower()


async def read_body(
    scope: Scope,
    receive: Receive,
    limit: int,
    media_types: frozenset[bytes | None] | None = JSON_MEDIA_TYPES,
) -> bytes:
    """The whole body, within ``limit`` bytes, of one of ``media_types`` (None: any type).

    Refused before reading when the client announces more than ``limit``; while reading as soon
    as the received bytes pass it (chunked bodies, clients that lie).
    """
    check_body_headers(
        header(scope, b"content-type"), header(scope, b"content-length"), limit, media_types
    )
    return await read_body_from(scope, receive, await receive(), limit)


def check_body_headers(
    content_type: bytes | None,
    declared: bytes | None,
    limit: int,
    media_types: frozenset[bytes | None] | None,
) -> None:
    """``read_body``'s checks before the first byte: the content type, the declared length."""
    if media_types is not None and media_type(content_type) not in media_types:
        raise UnsupportedMediaTypeError(media_types)
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(limit)


async def read_body_from(scope: Scope, receive: Receive, message: Message, limit: int) -> bytes:
    """The rest of ``read_body`` once its first ``receive()`` gave ``message``."""
    if message["type"] == "http.disconnect":
        raise ClientDisconnectedError
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise BodyTooLargeError(limit)
    if not message.get("more_body", False):
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        if BODY_TIMED_OUT in scope:
            raise BodyTimeoutError(scope[BODY_TIMED_OUT])
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_request_body(
    request: Request, limit: int, media_types: frozenset[bytes | None] | None = JSON_MEDIA_TYPES
) -> bytes:
    """``read_body`` for a FastAPI endpoint that takes ``request`` and declares no body model."""
    return await read_body(request.scope, request.receive, limit, media_types)


def given_request_id(value: bytes | None) -> str | None:
    """An X-Request-ID header value when it is a sane token, else None."""
    if value is not None and _REQUEST_ID_OK.match(value):
        return value.decode()
    return None


def request_id(scope: Scope) -> str:
    """The caller's X-Request-ID when it is a sane token, else a fresh one (the same one for
    the whole request once ``RequestIdMiddleware`` has chosen it)."""
    chosen = scope.get(_REQUEST_ID_KEY)
    if isinstance(chosen, str):
        return chosen
    return given_request_id(header(scope, REQUEST_ID_HEADER)) or uuid.uuid4().hex


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    request_id: str | None = None,
    correlation_id: bytes | None = None,
) -> None:
    """``correlation_id``: the caller's X-Request-ID, echoed as X-Correlation-ID when sane."""
    headers = [JSON_HEADER, (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    if correlation_id is not None and _REQUEST_ID_OK.match(correlation_id):
        headers.append((b"x-correlation-id", correlation_id))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- request ids and unexpected errors ------------------------------------------------------


class RequestIdMiddleware:
    """Pure ASGI: chooses the request's id once and adds it to the answer's headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        # In place: the error handler outside this middleware reads the same scope dict.
        scope[_REQUEST_ID_KEY] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(bytes(k).lower() == REQUEST_ID_HEADER for k, _ in headers):
                    headers.append((REQUEST_ID_HEADER, rid.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def internal_error_body(rid: str) -> dict[str, object]:
    """The JSON of a 500: no exception text (it may hold paths or data), the id to look it up."""
    return {
        "detail": {
            "reason": "internal_error",
            "message": f"internal server error; the log has its details under request id {rid}",
            "request_id": rid,
        }
    }


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    rid = request_id(request.scope)
    log.error("request %s %s (id %s) failed: %r", request.method, request.url.path, rid, exc)
    return JSONResponse(internal_error_body(rid), status_code=500, headers={"X-Request-ID": rid})


def install_error_handling(app: FastAPI) -> None:
    """Every answer of ``app`` carries X-Request-ID; an unhandled exception is a JSON 500.

    Starlette hands the ``Exception`` handler to its outermost ``ServerErrorMiddleware``, which
    answers with it and then re-raises (the server logs the traceback); the app's middleware
    sees the exception pass, so request metrics count the 500.
    """
    app.add_middleware(RequestIdMiddleware)
    app.add_exception_handler(Exception, _internal_error)


# --- bearer token ----------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="The service's bearer token.")
_TOKENS_ATTRIBUTE: Final = "bearer_tokens"


def set_token(
    app: FastAPI,
    token: str | None,
    disabled_hint: str,
    *,
    name: str = "admin",
    open_when_unset: bool = False,
) -> None:
    """The token ``name`` that ``token_dependency(name)`` (``TokenDep``: ``"admin"``) checks in
    ``app``. None refuses every call, naming ``disabled_hint`` (how to enable it) in the answer,
    unless ``open_when_unset`` (a development default: the caller must say so in its log)."""
    tokens = getattr(app.state, _TOKENS_ATTRIBUTE, None)
    if tokens is None:
        tokens = {}
        setattr(app.state, _TOKENS_ATTRIBUTE, tokens)
    tokens[name] = (token, disabled_hint, open_when_unset)


def _refuse(reason: str, message: str) -> HTTPException:
    challenge = "Bearer" if reason != "invalid_token" else 'Bearer error="invalid_token"'
    return HTTPException(
        401, {"reason": reason, "message": message}, headers={"WWW-Authenticate": challenge}
    )


def check_token(request: Request, name: str, presented: str | None) -> None:
    """Raise the 401 when ``presented`` is not the app's token ``name``."""
    tokens = getattr(request.app.state, _TOKENS_ATTRIBUTE, {})
    expected, disabled_hint, open_when_unset = tokens.get(name, (None, "no token set", False))
    if not expected:
        if open_when_unset:
            return
        raise _refuse("auth_disabled", f"this endpoint is disabled: {disabled_hint}")
    if not presented:
        raise _refuse("missing_token", "an Authorization: Bearer <token> header is required")
    # compare_digest takes time independent of where the tokens differ: no timing oracle.
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise _refuse("invalid_token", "the bearer token is not valid")


def token_dependency(name: str) -> Callable[..., Awaitable[None]]:
    """A dependency checking the token ``name`` (see the module docstring for the answers)."""

    async def require(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        check_token(request, name, None if credentials is None else credentials.credentials)

    return require


require_token = token_dependency("admin")
"""The app's admin bearer token must be presented."""

TokenDep = Annotated[None, Depends(require_token)]
"""Add ``_: TokenDep`` to an endpoint (or ``dependencies=[Depends(require_token)]``)."""
