"""``WINEQ_DATABASE_URL``: what a store may be named by, and how it is shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from winequality.database import is_postgresql, normalize_url, redact, sqlite_file
from winequality.settings import ServingSettings


@pytest.mark.parametrize(
    ("given", "url"),
    [
        (Path("data/feedback.sqlite"), "sqlite:///data/feedback.sqlite"),
        (Path("/var/lib/fb.sqlite"), "sqlite:////var/lib/fb.sqlite"),
        ("data/fb.sqlite", "sqlite:///data/fb.sqlite"),
        ("sqlite:////tmp/fb.sqlite", "sqlite:////tmp/fb.sqlite"),
        ("postgresql://u:p@db:5432/wineq", "postgresql+psycopg://u:p@db:5432/wineq"),
        ("postgres://u@db/wineq", "postgresql+psycopg://u@db/wineq"),
        ("postgresql+psycopg://u@db/wineq", "postgresql+psycopg://u@db/wineq"),
    ],
)
def test_paths_and_urls_name_sqlite_or_postgresql(given: str | Path, url: str) -> None:
    assert normalize_url(given) == url
    assert is_postgresql(url) == url.startswith("postgresql")


def test_an_unknown_scheme_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="unsupported database URL scheme 'mysql'"):
        normalize_url("mysql://u@db/wineq")


def test_the_password_never_shows() -> None:
    assert redact("postgresql+psycopg://wineq:s3cr%40t@db:5432/wineq") == (
        "postgresql://wineq:***@db:5432/wineq"
    )
    assert redact("postgresql+psycopg://wineq@db/wineq") == "postgresql://wineq@db/wineq"


def test_sqlite_file_of_a_url() -> None:
    assert sqlite_file("sqlite:////tmp/x.sqlite") == Path("/tmp/x.sqlite")
    assert sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("postgresql+psycopg://db/x") is None


def test_settings_default_to_the_sqlite_file_and_share_served_rows_only_on_postgresql(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WINEQ_DATABASE_URL", raising=False)
    embedded = ServingSettings(feedback_db=Path("fb.sqlite"), _env_file=None)  # type: ignore[call-arg]
    assert embedded.store_url() == "sqlite:///fb.sqlite"
    assert not embedded.shares_served_rows()
    monkeypatch.setenv("WINEQ_DATABASE_URL", "postgresql://u:p@db/wineq")
    shared = ServingSettings(_env_file=None)  # type: ignore[call-arg]
    assert shared.store_url() == "postgresql+psycopg://u:p@db/wineq"
    assert shared.shares_served_rows()
    monkeypatch.setenv("WINEQ_SERVED_ROWS_SHARED", "false")
    assert not ServingSettings(_env_file=None).shares_served_rows()  # type: ignore[call-arg]
    monkeypatch.setenv("WINEQ_DATABASE_URL", "mysql://db/wineq")
    with pytest.raises(ValueError, match="mysql"):
        ServingSettings(_env_file=None)  # type: ignore[call-arg]
