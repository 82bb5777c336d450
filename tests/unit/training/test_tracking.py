from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from winequality.settings import Settings
from winequality.training.tracking import (
    artifacts_dir,
    data_hashes,
    data_source,
    file_md5,
    git_commit,
    is_embedded,
    locked_hash,
)


def _dvc_project(root: Path) -> Path:
    """A DVC project whose one stage writes data/prepared (two files, one with CRLF bytes)."""
    script = (
        "import pathlib; p = pathlib.Path('data/prepared'); p.mkdir(parents=True, exist_ok=True); "
        "(p / 'train.parquet').write_bytes(b'PAR1\\x00\\x01train'); "
        "(p / 'test.parquet').write_bytes(b'PAR1\\r\\ntest')"
    )
    (root / "dvc.yaml").write_text(
        yaml.safe_dump(
            {"stages": {"prepare": {"cmd": f'python -c "{script}"', "outs": ["data/prepared"]}}}
        )
    )
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    subprocess.run(["dvc", "repro", "-q"], cwd=root, check=True, capture_output=True)
    return root / "data" / "prepared"


def test_locked_hash_is_what_dvc_recorded_for_the_files(tmp_path: Path) -> None:
    folder = _dvc_project(tmp_path)
    recorded = yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]["prepare"]["outs"][0]
    hashes = data_hashes({"train": folder / "train.parquet", "test": folder / "test.parquet"})
    assert locked_hash(tmp_path, Path("data/prepared"), hashes) == recorded["md5"]
    assert recorded["md5"].endswith(".dir")


def test_locked_hash_is_none_once_a_file_changed_behind_dvc(tmp_path: Path) -> None:
    folder = _dvc_project(tmp_path)
    (folder / "train.parquet").write_bytes(b"edited by hand")
    hashes = data_hashes({"train": folder / "train.parquet", "test": folder / "test.parquet"})
    assert locked_hash(tmp_path, folder, hashes) is None


def test_locked_hash_without_dvc_lock_is_none(tmp_path: Path) -> None:
    (tmp_path / "train.parquet").write_bytes(b"a")
    hashes = data_hashes({"train": tmp_path / "train.parquet"})
    assert locked_hash(tmp_path, tmp_path, hashes) is None


def test_data_hashes_name_each_existing_file(tmp_path: Path) -> None:
    (tmp_path / "train.parquet").write_bytes(b"a")
    (tmp_path / "test.parquet").write_bytes(b"b")
    hashes = data_hashes(
        {
            "train": tmp_path / "train.parquet",
            "test": tmp_path / "test.parquet",
            "reference": tmp_path / "absent.parquet",
        }
    )
    assert hashes == {
        "train": file_md5(tmp_path / "train.parquet"),
        "test": file_md5(tmp_path / "test.parquet"),
    }


def test_git_commit_outside_a_repository_is_none(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None


def test_git_commit_marks_uncommitted_changes(tmp_path: Path) -> None:
    env = ["-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "a").write_text("1")
    subprocess.run(["git", "add", "a"], cwd=tmp_path, check=True)
    subprocess.run(["git", *env, "commit", "-q", "-m", "a"], cwd=tmp_path, check=True)
    clean = git_commit(tmp_path)
    assert clean is not None
    assert len(clean) == 40
    (tmp_path / "a").write_text("2")
    assert git_commit(tmp_path) == f"{clean}+dirty"


def test_data_source_reads_the_ingest_provenance(tmp_path: Path) -> None:
    path = tmp_path / "source.json"
    path.write_text(json.dumps({"kind": "uci", "source": "https://archive.ics.uci.edu/x.zip"}))
    assert data_source(path) == "uci:https://archive.ics.uci.edu/x.zip"
    path.write_text(json.dumps({"kind": "synthetic", "source": "synthetic"}))
    assert data_source(path) == "synthetic"
    path.write_text("not json")
    assert data_source(path) is None
    assert data_source(tmp_path / "absent.json") is None


def test_embedded_store_is_sqlite_under_the_project(tmp_path: Path) -> None:
    settings = Settings(project_dir=tmp_path, mlflow_tracking_uri=None)
    assert is_embedded(settings.tracking_uri())
    assert artifacts_dir(settings) == (tmp_path / "mlartifacts").resolve()
    assert not is_embedded("http://127.0.0.1:5000")
