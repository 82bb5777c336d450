"""The shared HTTP rules: the limited body reader and the one bearer check."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from fastapi import FastAPI, Request
from starlette.types import Message, Scope

from winequality.http_common import (
    BODY_TIMED_OUT,
    BodyTimeoutError,
    BodyTooLargeError,
    ClientDisconnectedError,
    TokenDep,
    UnsupportedMediaTypeError,
    read_body,
    read_request_body,
    set_token,
)

with warnings.catch_warnings():
    # Starlette asks for httpx2 at import; the project pins httpx, which works.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

TOKEN = "s3cret"


def _scope(headers: dict[str, str]) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }


class Chunks:
    """An ASGI receive() that hands out ``chunks`` and counts how many were asked for."""

    def __init__(self, *chunks: bytes, disconnect: bool = False) -> None:
        self.messages: list[Message] = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]
        if disconnect:
            self.messages[-1]["more_body"] = True
            self.messages.append({"type": "http.disconnect"})
        self.calls = 0

    async def __call__(self) -> Message:
        self.calls += 1
        return self.messages[self.calls - 1]


def _read(scope: Scope, receive: Chunks, limit: int, **kw: Any) -> bytes:
    return asyncio.run(read_body(scope, receive, limit, **kw))


JSON = {"content-type": "application/json"}


def test_a_chunked_body_is_read_whole_within_the_limit() -> None:
    assert _read(_scope(JSON), Chunks(b"ab", b"cd", b"e"), 5) == b"abcde"


def test_a_chunked_body_stops_at_the_first_chunk_past_the_limit() -> None:
    receive = Chunks(b"aaaa", b"bbbb", b"cccc", b"dddd")
    with pytest.raises(BodyTooLargeError, match="exceeds 6 bytes"):
        _read(_scope(JSON), receive, 6)
    assert receive.calls == 2  # the rest is never read


def test_an_announced_length_over_the_limit_is_refused_before_reading() -> None:
    receive = Chunks(b"x" * 10)
    with pytest.raises(BodyTooLargeError) as exc:
        _read(_scope({**JSON, "content-length": "10"}), receive, 5)
    assert (exc.value.status, receive.calls) == (413, 0)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/jsonx"])
def test_a_json_endpoint_refuses_other_content_types_with_415(content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    with pytest.raises(UnsupportedMediaTypeError) as exc:
        _read(_scope(headers), Chunks(b"{}"), 100)
    assert exc.value.status == 415
    assert "application/json" in exc.value.message


def test_json_content_type_parameters_are_accepted() -> None:
    scope = _scope({"content-type": "Application/JSON; charset=utf-8"})
    assert _read(scope, Chunks(b"{}"), 100) == b"{}"


def test_any_content_type_when_the_endpoint_takes_any() -> None:
    assert _read(_scope({}), Chunks(b"raw"), 100, media_types=None) == b"raw"


def test_a_body_the_server_marks_overdue_stops_with_a_408_naming_the_timeout() -> None:
    scope = _scope({"content-type": "application/json"})
    receive = Chunks(b"[1,", b"", b"2]")

    async def overdue_after_first_chunk() -> Message:
        message = await receive()
        scope[BODY_TIMED_OUT] = 1.5  # what http_server does when the read timeout passes
        return message

    with pytest.raises(BodyTimeoutError) as refused:
        asyncio.run(read_body(scope, overdue_after_first_chunk, 100))
    assert (refused.value.status, refused.value.reason) == (408, "body_timeout")
    assert "1.5 s" in refused.value.message
    assert receive.calls == 1


def test_a_client_gone_mid_body_is_reported() -> None:
    with pytest.raises(ClientDisconnectedError):
        _read(_scope(JSON), Chunks(b"ab", disconnect=True), 100)


def _app(token: str | None) -> FastAPI:
    app = FastAPI()
    set_token(app, token, "set THE_TOKEN")

    @app.post("/guarded")
    async def guarded(request: Request, _: TokenDep) -> dict[str, int]:
        return {"bytes": len(await read_request_body(request, 100))}

    return app


@pytest.mark.parametrize(
    ("token", "headers", "reason"),
    [
        (TOKEN, {}, "missing_token"),
        (TOKEN, {"authorization": TOKEN}, "missing_token"),
        (TOKEN, {"authorization": "Basic czNjcmV0"}, "missing_token"),
        (TOKEN, {"authorization": "Bearer "}, "missing_token"),
        (TOKEN, {"authorization": "Bearer wrong"}, "invalid_token"),
        (None, {"authorization": f"Bearer {TOKEN}"}, "auth_disabled"),
    ],
)
def test_every_refusal_is_a_401_with_a_bearer_challenge_and_its_reason(
    token: str | None, headers: dict[str, str], reason: str
) -> None:
    response = TestClient(_app(token)).post("/guarded", json={}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    detail = response.json()["detail"]
    assert detail["reason"] == reason
    assert detail["message"]
    if reason == "auth_disabled":
        assert "THE_TOKEN" in detail["message"]


def test_the_right_token_passes() -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    response = TestClient(_app(TOKEN)).post("/guarded", content=b"[1, 2]", headers={**auth, **JSON})
    assert response.json() == {"bytes": 6}


def test_the_token_is_checked_before_the_body_is_read() -> None:
    receive = Chunks(b"{}")
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {**_scope(JSON), "query_string": b"", "path": "/guarded", "raw_path": b"/guarded"}
    asyncio.run(_app(TOKEN)(scope, receive, send))
    assert sent[0]["status"] == 401
    assert receive.calls == 0
