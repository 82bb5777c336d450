"""Where the suite finds the real UCI files: WINEQ_TEST_DATA, the shared folder, the cache."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
from tests import conftest

from winequality.data.ingest import UCI_FILES, uci_archive
from winequality.settings import ProjectSettings


@pytest.fixture
def no_shared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "no-shared")


def test_the_named_folder_comes_first_and_must_hold_both_files(
    shared_data_dir: Path, tmp_path: Path
) -> None:
    settings = ProjectSettings(cache_dir=tmp_path / "cache")
    env = {conftest.TEST_DATA_ENV: str(shared_data_dir)}
    assert conftest.find_test_data(settings, env) == shared_data_dir
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(shared_data_dir / UCI_FILES["red"], half)
    found = conftest.find_test_data(settings, {conftest.TEST_DATA_ENV: str(half)})
    assert (
        found == f"${conftest.TEST_DATA_ENV}={half} does not hold {', '.join(UCI_FILES.values())}"
    )


@pytest.mark.usefixtures("no_shared")
def test_without_the_shared_folder_the_ingest_cache_is_used(
    shared_data_dir: Path, tmp_path: Path
) -> None:
    settings = ProjectSettings(cache_dir=tmp_path / "cache")
    archive = uci_archive(settings.uci_url, settings.cache_dir)
    archive.parent.mkdir(parents=True)
    # What `data ingest --source uci` leaves: the archive (its CSVs are extracted on demand).
    with zipfile.ZipFile(archive, "w") as z:
        for name in UCI_FILES.values():
            z.write(shared_data_dir / name, f"wine+quality/{name}")
    assert conftest.find_test_data(settings, {}) == archive.parent
    assert all((archive.parent / name).is_file() for name in UCI_FILES.values())


@pytest.mark.usefixtures("no_shared")
def test_nothing_found_says_how_to_fetch_the_data(tmp_path: Path) -> None:
    found = conftest.find_test_data(ProjectSettings(cache_dir=tmp_path / "cache"), {})
    assert isinstance(found, str)
    assert "uv run winequality data ingest --source uci" in found
    assert conftest.TEST_DATA_ENV in found
