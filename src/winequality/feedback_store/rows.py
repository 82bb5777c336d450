"""What the feedback store holds and refuses, without the database layer (cheap to import)."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from winequality.contract import schema
from winequality.contract.features import Matrix
from winequality.contract.parsers import NUMBER_TYPES, wine_problems
from winequality.contract.problems import Problem, in_order


class StoreError(OSError):
    """The store cannot be reached, read or written right now; the message says which store and
    why (never its password). An ``OSError``: to its callers a database that is down is an I/O
    failure like an unwritable file, answered 503 and retried, never a 500."""


class LabelConflictError(ValueError):
    """A (request id, row) already has another label: one label a row, the first one stays."""

    def __init__(self, request_id: str, index: int, stored: int, given: int) -> None:
        super().__init__(
            f"wine {index} of request {request_id!r} is already labelled {stored}; "
            f"a different label ({given}) is refused"
        )
        self.request_id = request_id
        self.index = index
        self.stored = stored
        self.given = given


class ServedRequest(NamedTuple):
    """What the app answered for one request: the model matrix of its rows, the scores and the
    model version (None when unknown)."""

    rows: Matrix
    quality: npt.NDArray[np.float32] | None
    model_version: str | None


SERVED_COLUMNS: Final = (
    "request_id", "served_at", "model_version", "n_rows", "features", "quality",
)  # fmt: skip
"""The columns of ``served_requests`` a served request fills, in ``served_record``'s order."""


def served_record(request_id: str, at: float, served: ServedRequest) -> tuple[Any, ...]:
    """One row of ``served_requests``: the matrix and scores as float32 bytes."""
    quality = served.quality
    return (
        request_id,
        at,
        served.model_version,
        len(served.rows),
        np.ascontiguousarray(served.rows, dtype=np.float32).tobytes(),
        None if quality is None else np.ascontiguousarray(quality, dtype=np.float32).tobytes(),
    )


SERVED_COPY: Final = (
    f"COPY served_requests ({', '.join(SERVED_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
)
"""The statement ``served_copy_rows`` feeds (PostgreSQL)."""
COPY_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
"""Start of a binary ``COPY`` stream: the signature, no flags, no header extension."""
COPY_TRAILER: Final = b"\xff\xff"
_NULL: Final = b"\xff\xff\xff\xff"
_PACK: Final = struct.pack


def served_copy_rows(
    requests: Sequence[tuple[str, float, ServedRequest]], encoding: str = "utf-8"
) -> bytes:
    """``served_record`` of each request as tuples of PostgreSQL's binary ``COPY`` format
    (``SERVED_COLUMNS``; the stream's ``COPY_SIGNATURE`` and ``COPY_TRAILER`` go around them).

    One ``join`` of the arrays' own buffers and a few packed integers a request: much less of
    the app's CPU than a ``write_row`` a request, and the server parses no text
    (``benchmarks/served_rows.py``). ``encoding``: the connection's, for the text columns."""
    pack = _PACK
    versions: dict[str | None, bytes] = {None: _NULL}
    parts: list[Any] = []
    add = parts.extend
    for request_id, at, served in requests:
        version = served.model_version
        field = versions.get(version)
        if field is None:
            text = str(version).encode(encoding)
            field = versions[version] = pack(">i", len(text)) + text
        rid = request_id.encode(encoding)
        matrix = np.ascontiguousarray(served.rows, dtype=np.float32)
        add((pack(">hi", 6, len(rid)), rid, pack(">id", 8, at), field,
             pack(">iii", 4, len(matrix), matrix.nbytes), matrix))  # fmt: skip
        if served.quality is None:
            parts.append(_NULL)
        else:
            quality = np.ascontiguousarray(served.quality, dtype=np.float32)
            add((pack(">i", quality.nbytes), quality))
    return b"".join(parts)


def validate_labelled_rows(
    rows: Sequence[Mapping[str, Any]], qualities: Sequence[Any]
) -> list[Problem]:
    """Problems with feature rows (the contract's wine records) and their true qualities."""
    if len(rows) != len(qualities):
        return [
            Problem(
                None,
                schema.TARGET,
                f"{len(qualities)} labels for {len(rows)} rows",
                "length_mismatch",
                ("body", schema.TARGET),
            )
        ]
    problems = wine_problems(list(rows))
    span = f"[{schema.QUALITY_MIN}, {schema.QUALITY_MAX}]"
    for i, q in enumerate(qualities):
        loc = ("body", schema.TARGET, i)
        if type(q) not in NUMBER_TYPES or (type(q) is float and not q.is_integer()):
            problems.append(
                Problem(i, schema.TARGET, f"must be an integer, got {q!r}", "int_type", loc)
            )
        elif not schema.QUALITY_MIN <= q <= schema.QUALITY_MAX:
            problems.append(Problem(i, schema.TARGET, f"{q} is outside {span}", "value_error", loc))
    return in_order(problems)


def pg_connect_args(timeout_s: float) -> dict[str, object]:
    """libpq options of every PostgreSQL connection of the store."""
    ms = int(timeout_s * 5000)
    return {
        "connect_timeout": max(1, round(timeout_s)),
        "application_name": "winequality",
        # A server that stops answering mid-statement fails the call instead of holding a
        # worker (or the writer) for the TCP timeout.
        "options": f"-c statement_timeout={ms}",
        "tcp_user_timeout": ms,
    }
