"""A raw HTTP/1.1 keep-alive client that tells how each request ended: answered, reset by the
server (ECONNRESET/EPIPE), or left unanswered when the server closed (EOF), and refused connects
apart from those (the listener closed: nothing was sent)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


def http_request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    """One HTTP/1.1 request, bytes on the wire (``content-length`` from ``body`` unless
    ``headers`` declares one)."""
    headers = headers or {}
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if "content-length" not in headers and (body or method in ("POST", "PUT")):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


async def read_response(reader: asyncio.StreamReader) -> Response:
    """One response with a Content-Length body (what the services send)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        if line:
            name, value = line.split(":", 1)
            headers[name.lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Response(int(status_line.split()[1]), headers, body)


@dataclass
class Tally:
    """How the requests of a load run ended."""

    answered: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    resets: int = 0
    """Connections reset (ECONNRESET, EPIPE) with a request sent or about to be."""
    unanswered: int = 0
    """Requests sent on a connection the server then closed without answering them."""
    clean_closes: int = 0
    """Connections the server closed after an answer that said ``Connection: close``."""
    refused: int = 0
    """Connects refused (nothing sent)."""


async def _worker(
    host: str,
    port: int,
    request: bytes,
    tally: Tally,
    stop: asyncio.Event,
    closing: asyncio.Event,
) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except ConnectionRefusedError:
            tally.refused += 1
            return  # the server is gone
        try:
            while not stop.is_set():
                writer.write(request)
                try:
                    response = await read_response(reader)
                except asyncio.IncompleteReadError:
                    tally.unanswered += 1
                    break
                tally.answered += 1
                tally.statuses[response.status] = tally.statuses.get(response.status, 0) + 1
                if response.closes:
                    closing.set()
                    await _expect_eof(reader)
                    tally.clean_closes += 1
                    break
        except (ConnectionResetError, BrokenPipeError):
            tally.resets += 1
        finally:
            writer.close()


async def _expect_eof(reader: asyncio.StreamReader) -> None:
    """After ``Connection: close``, the server's FIN (a reset raises)."""
    extra = await asyncio.wait_for(reader.read(1), 10)
    if extra:
        raise AssertionError(f"bytes after a Connection: close answer: {extra!r}")


async def load(
    host: str,
    port: int,
    request: bytes,
    connections: int,
    stop: asyncio.Event,
    closing: asyncio.Event | None = None,
) -> Tally:
    """``connections`` clients sending ``request`` back to back, each reconnecting after the
    server closes, until ``stop`` is set or connects are refused; ``closing`` is set at the
    first answer with ``Connection: close``."""
    tally = Tally()
    closing = closing or asyncio.Event()
    workers = [_worker(host, port, request, tally, stop, closing) for _ in range(connections)]
    await asyncio.gather(*workers)
    return tally
