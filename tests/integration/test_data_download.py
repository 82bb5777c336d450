"""Downloads for real: a local http.server serves a UCI-style zip built in tmp_path."""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from winequality.cli import app
from winequality.data.ingest import (
    DownloadError,
    SourceOptions,
    download,
    fetch_uci,
    ingest,
    uci_archive,
)
from winequality.process import ManagedProcess, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> Iterator[str]:
    """Base URL of an http.server holding wine+quality.zip and one CSV file."""
    root = tmp_path_factory.mktemp("www")
    with zipfile.ZipFile(root / "wine+quality.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("winequality-red.csv", "winequality-white.csv"):
            z.write(shared_data_dir / name, name)
        z.writestr("winequality.names", "Citation: Cortez et al., 2009")
    (root / "winequality-red.csv").write_bytes(
        (shared_data_dir / "winequality-red.csv").read_bytes()
    )
    (root / "not-a-zip.zip").write_text("<html>maintenance</html>")
    port = free_port()
    server = ManagedProcess(
        "http.server",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root)],
        log_file=root.parent / "http-server.log",
    )
    with server:
        server.wait_ready(url=f"http://127.0.0.1:{port}/", timeout=20)
        yield f"http://127.0.0.1:{port}"


def refused_url() -> str:
    return f"http://127.0.0.1:{free_port()}/wine+quality.zip"  # nothing listens there


def options(tmp_path: Path, uci_url: str) -> SourceOptions:
    return SourceOptions(
        cache_dir=tmp_path / "cache",
        timeout=5.0,
        uci_url=uci_url,
        synthetic_rows=500,
        seed=1,
        synthetic_dir=tmp_path / "raw" / "synthetic",
    )


def test_uci_source_downloads_the_archive_once_and_reuses_the_cache(
    served: str, tmp_path: Path
) -> None:
    url = f"{served}/wine+quality.zip"
    got = ingest("uci", options(tmp_path, url))
    assert got.kind == "uci"
    assert len(got.frame) == 6497
    assert got.reason is None
    assert len(got.files) == 3  # the archive and its two CSV files
    archive = uci_archive(url, tmp_path / "cache")
    stamp = archive.stat().st_mtime_ns
    # A second run reads the cached archive, even with the server out of reach.
    again = ingest("uci", options(tmp_path, refused_url()))
    assert (again.kind, len(again.frame)) == ("uci", 6497)
    assert archive.stat().st_mtime_ns == stamp


def test_download_reports_progress_and_writes_atomically(served: str, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    dest = download(
        f"{served}/wine+quality.zip", tmp_path / "a.zip", 5.0, lambda d, t: seen.append((d, t))
    )
    assert zipfile.is_zipfile(dest)
    assert seen[-1][0] == dest.stat().st_size == seen[-1][1]
    assert not (tmp_path / "a.zip.part").exists()


def test_http_error_is_a_download_error(served: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{served}/missing.zip", tmp_path / "m.zip", 5.0)
    assert not (tmp_path / "m.zip").exists()
    assert not (tmp_path / "m.zip.part").exists()


def test_archive_that_is_not_a_zip_is_rejected_and_not_cached(served: str, tmp_path: Path) -> None:
    url = f"{served}/not-a-zip.zip"
    with pytest.raises(DownloadError, match="not a valid zip"):
        fetch_uci(url, tmp_path / "cache", 5.0)
    assert not uci_archive(url, tmp_path / "cache").exists()


def test_url_source_reads_a_single_csv(served: str, tmp_path: Path) -> None:
    got = ingest(f"{served}/winequality-red.csv", options(tmp_path, refused_url()))
    assert got.kind == "url"
    assert len(got.frame) == 1599
    assert set(got.frame["wine_type"]) == {"red"}


def test_auto_falls_back_to_the_generator_when_the_connection_is_refused(tmp_path: Path) -> None:
    got = ingest("auto", options(tmp_path, refused_url()))
    assert got.kind == "synthetic"
    assert got.reason is not None
    assert "UCI download failed" in got.reason
    assert "refused" in got.reason.lower()
    assert len(got.frame) == 500


def test_explicit_uci_source_does_not_fall_back(tmp_path: Path) -> None:
    with pytest.raises(DownloadError):
        ingest("uci", options(tmp_path, refused_url()))


def test_cli_auto_says_which_source_it_used_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"WINEQ_CACHE_DIR": str(tmp_path / "cache"), "WINEQ_UCI_URL": refused_url()}
    result = CliRunner().invoke(app, ["data", "ingest", "--source", "auto"], env=env)
    assert result.exit_code == 0, result.output
    assert "fell back to 'synthetic'" in result.stderr
    assert "UCI download failed" in result.stdout
    provenance = json.loads((tmp_path / "data/raw/source.json").read_text())
    assert provenance["kind"] == "synthetic"
    assert provenance["requested"] == "auto"
    assert "refused" in provenance["reason"].lower()
    assert provenance["rows"] == 6000  # params default data.synthetic_rows


def test_cli_uci_source_downloads_from_the_configured_url(
    served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {
        "WINEQ_CACHE_DIR": str(tmp_path / "cache"),
        "WINEQ_UCI_URL": f"{served}/wine+quality.zip",
    }
    result = CliRunner().invoke(app, ["data", "ingest", "--source", "uci"], env=env)
    assert result.exit_code == 0, result.output
    provenance = json.loads((tmp_path / "data/raw/source.json").read_text())
    assert (provenance["kind"], provenance["rows"], provenance["reason"]) == ("uci", 6497, None)
    assert len(provenance["sha256"]) == 3


def test_cli_uci_source_fails_with_a_hint_when_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"WINEQ_CACHE_DIR": str(tmp_path / "cache"), "WINEQ_UCI_URL": refused_url()}
    result = CliRunner().invoke(app, ["data", "ingest", "--source", "uci"], env=env)
    assert result.exit_code == 1
    assert "download failed" in result.stderr
    assert "--source synthetic" in result.stderr
    assert not (tmp_path / "data/raw/wines.csv").exists()
