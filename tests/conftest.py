"""Fixtures shared by all test layers: the real UCI data, and the tools some tests download.

The suite runs on pytest-xdist workers (``make test``); whatever a session fixture writes outside
its own temporary folder (the download cache) is done under a file lock, so two workers never
build the same thing into each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from winequality.data.ingest import extract_uci_zip, read_uci_dir, uci_archive
from winequality.data.sources import UCI_FILES
from winequality.files import file_lock
from winequality.settings import ProjectSettings

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "wine-quality"
TEST_DATA_ENV = "WINEQ_TEST_DATA"

# What the suite fetches into the cache on first use (approximate sizes on disk).
ALIBI_TESTS = "tests/integration/test_detector_alibi.py"
TRITON_TESTS = "tests/integration/test_triton*.py, test_serving_triton_backend.py"
CONTAINER_TESTS = "tests/integration/containers"


def _has_uci_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in UCI_FILES.values())


def find_test_data(
    settings: ProjectSettings, environ: Mapping[str, str] | None = None
) -> Path | str:
    """The folder holding the two UCI CSVs, or the reason none was found.

    In order: ``$WINEQ_TEST_DATA``; the shared folder beside the checkout (this project's CI);
    the download cache of ``winequality data ingest --source uci`` (the archive is extracted
    there if only it is present).
    """
    env = os.environ if environ is None else environ
    if explicit := env.get(TEST_DATA_ENV):
        folder = Path(explicit).expanduser()
        if _has_uci_files(folder):
            return folder
        return f"${TEST_DATA_ENV}={explicit} does not hold {', '.join(UCI_FILES.values())}"
    if _has_uci_files(SHARED_DATA):
        return SHARED_DATA
    archive = uci_archive(settings.uci_url, settings.cache_dir)
    with file_lock(archive.parent / ".extract.lock"):
        if not _has_uci_files(archive.parent) and archive.is_file():
            extract_uci_zip(archive, archive.parent)
    if _has_uci_files(archive.parent):
        return archive.parent
    return (
        f"the real UCI files ({', '.join(UCI_FILES.values())}) were found neither in "
        f"${TEST_DATA_ENV}, nor in {SHARED_DATA}, nor in the download cache {archive.parent}: "
        "fetch them once with `uv run winequality data ingest --source uci`, or point "
        f"{TEST_DATA_ENV} at a folder holding them"
    )


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real UCI files, read in place (never copied into the repository)."""
    found = find_test_data(ProjectSettings())
    if isinstance(found, str):
        pytest.fail(found)
    return found


@pytest.fixture(scope="session")
def real_wines(shared_data_dir: Path) -> pd.DataFrame:
    """Red + white, snake_case, with duplicates (as published)."""
    return read_uci_dir(shared_data_dir)


@pytest.fixture(scope="session")
def alibi_venv() -> Path:
    """Alibi Detect's own venv, built once into the cache (one worker builds, the others wait)."""
    from winequality.monitoring.alibi_backend import alibi_venv_dir, ensure_alibi_venv

    venv = alibi_venv_dir()
    with file_lock(venv.parent / ".alibi-venv.lock"):
        return ensure_alibi_venv(venv)


def pending_downloads(settings: ProjectSettings) -> list[str]:
    """What the suite will download into the cache, and for which tests (empty once cached)."""
    from winequality.bundled_triton import PYTRITON_VERSION
    from winequality.monitoring.alibi_backend import ALIBI_REQUIREMENT, alibi_python

    cache = settings.cache_dir.expanduser()
    out = []
    if not alibi_python(cache / "alibi-venv").exists():
        out.append(
            f"{ALIBI_REQUIREMENT} and its dependencies (~800 MB, a venv of its own: it pins "
            f"numpy<2) into {cache / 'alibi-venv'}, for {ALIBI_TESTS}"
        )
    if not (cache / "debian-bookworm-minbase-python3.tar.gz").is_file():
        out.append(
            "the offline base image's Debian rootfs (debootstrap, ~3 min, ~50 MB) into "
            f"{cache}, for {CONTAINER_TESTS}"
        )
    server = cache / "tritonserver" / f"pytriton-{PYTRITON_VERSION}" / "dist" / "pytriton"
    if not (server / "tritonserver" / "bin" / "tritonserver").is_file():
        out.append(
            f"the nvidia-pytriton {PYTRITON_VERSION} wheel and the Triton server it bundles, "
            f"with its Python-backend env (~280 MB), into {cache / 'wheels'} and "
            f"{cache / 'tritonserver'}, for {TRITON_TESTS}"
        )
    return out


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Said before the first test runs (in the controller, before the workers start)."""
    lines = []
    found = find_test_data(ProjectSettings())
    lines.append(f"UCI data: {found}" if isinstance(found, Path) else f"UCI data: NONE: {found}")
    downloads = pending_downloads(ProjectSettings())
    if downloads:
        lines.append("not cached yet, downloaded once by the tests that need them:")
        lines += [f"  - {item}" for item in downloads]
        lines.append("  (set WINEQ_CACHE_DIR to put the cache elsewhere)")
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The container images the tests built, their sizes and build times (``image`` user
    properties: they reach the controller from the xdist workers with the reports)."""
    lines = sorted(
        str(value)
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name == "image" and getattr(report, "when", None) == "call"
    )
    if lines:
        terminalreporter.write_sep("-", "container images")
        for line in lines:
            terminalreporter.write_line(line)


_MLFLOW_URI_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def _mlflow_uri_env_restored() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` (``tracking.connect``) also exports the URI to the process
    environment; a test that connects in process must not point the next test's settings at its
    own temporary store."""
    saved = {name: os.environ.get(name) for name in _MLFLOW_URI_VARS}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
