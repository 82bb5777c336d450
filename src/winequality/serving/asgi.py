"""Raw ASGI plumbing for the hot endpoints: bounded body reading and JSON answers.

Going through Starlette's ``Request``/``Response`` and FastAPI's dependency machinery costs more
than the model itself for one wine, so the prediction endpoints speak ASGI directly.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_HEADER: Final = (b"content-type", b"application/json")
_REQUEST_ID_OK: Final = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class BodyTooLargeError(Exception):
    """The body exceeds the configured limit (413)."""


class ClientDisconnectedError(Exception):
    """The client went away before sending its whole body; nobody is left to answer."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """First value of a header (ASGI servers lower-case header names)."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def media_type(value: bytes | None) -> bytes | None:
    if value is None:
        return None
    return value.split(b";", 1)[0].strip().lower()


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refusing it as soon as it grows past ``limit`` (covers chunked bodies)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnectedError
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise BodyTooLargeError
    if not message.get("more_body", False):
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def request_id(scope: Scope) -> str:
    """The caller's X-Request-ID when it is a sane token, else a fresh one."""
    given = header(scope, b"x-request-id")
    if given is not None and _REQUEST_ID_OK.match(given):
        return given.decode()
    return uuid.uuid4().hex


async def send_json(send: Send, status: int, body: bytes, request_id: str | None = None) -> None:
    headers = [JSON_HEADER, (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
