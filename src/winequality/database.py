"""Database URLs of the feedback store: what ``WINEQ_DATABASE_URL`` may say, and how it is shown.

A file path or ``sqlite:///path`` is the embedded SQLite store (one host); ``postgresql://...``
(or ``postgres://``) is a PostgreSQL server that every replica and the retraining job share. The
PostgreSQL driver is psycopg 3, so such URLs become ``postgresql+psycopg://`` for SQLAlchemy.
Pure string functions: nothing here opens a connection.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

SQLITE_PREFIX: Final = "sqlite:///"
_PG_SCHEMES: Final = ("postgresql", "postgres", "postgresql+psycopg")
_PASSWORD = re.compile(r"(://[^/:@]*):[^/@]*@")


def normalize_url(value: str | Path) -> str:
    """The SQLAlchemy URL of a store given as a path, a ``sqlite:`` or a PostgreSQL URL.

    Raises ``ValueError`` naming the scheme for anything else (a typo must not silently fall
    back to a local file).
    """
    if isinstance(value, Path):
        return f"{SQLITE_PREFIX}{value}"
    text = value.strip()
    if not text:
        raise ValueError("empty database URL")
    if text.startswith("sqlite:"):
        return text
    scheme, sep, rest = text.partition("://")
    if not sep:
        return f"{SQLITE_PREFIX}{text}"  # a bare path
    if scheme in _PG_SCHEMES:
        return f"postgresql+psycopg://{rest}"
    raise ValueError(
        f"unsupported database URL scheme {scheme!r}: use a file path, sqlite:///path or "
        "postgresql://user:password@host:port/dbname"
    )


def is_postgresql(url: str) -> bool:
    return url.startswith("postgresql")


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for PostgreSQL or an in-memory one)."""
    if not url.startswith(SQLITE_PREFIX):
        return None
    path = url.removeprefix(SQLITE_PREFIX).split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def redact(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    return _PASSWORD.sub(r"\1:***@", url).replace("postgresql+psycopg://", "postgresql://")
