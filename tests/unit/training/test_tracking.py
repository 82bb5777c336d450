from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from winequality.settings import TrackingSettings
from winequality.training.tracking import (
    artifacts_dir,
    data_hashes,
    data_source,
    dvc_dir_hash,
    file_md5,
    git_commit,
    is_embedded,
)


def test_file_and_dir_hashes_match_what_dvc_add_records(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "prepared"
    (folder / "sub").mkdir(parents=True)
    (folder / "train.parquet").write_bytes(b"PAR1\x00\x01train")
    (folder / "test.parquet").write_bytes(b"PAR1\r\ntest")  # CRLF: DVC 3 must not rewrite it
    (folder / "sub" / "x.txt").write_text("x\n")
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "add", "-q", "data/prepared"], cwd=tmp_path, check=True)
    recorded = yaml.safe_load((tmp_path / "data" / "prepared.dvc").read_text())["outs"][0]
    assert dvc_dir_hash(folder) == recorded["md5"]
    manifest = tmp_path / ".dvc" / "cache" / "files" / "md5" / recorded["md5"][:2]
    entries = json.loads((manifest / recorded["md5"][2:]).read_text())
    assert {e["relpath"]: e["md5"] for e in entries}["test.parquet"] == file_md5(
        folder / "test.parquet"
    )


def test_data_hashes_name_each_file_and_their_folder(tmp_path: Path) -> None:
    (tmp_path / "train.parquet").write_bytes(b"a")
    (tmp_path / "test.parquet").write_bytes(b"b")
    hashes = data_hashes(
        {
            "train": tmp_path / "train.parquet",
            "test": tmp_path / "test.parquet",
            "reference": tmp_path / "absent.parquet",
        }
    )
    assert set(hashes) == {"train", "test", "dir"}
    assert hashes["dir"].endswith(".dir")


def test_dvc_dir_hash_of_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        dvc_dir_hash(tmp_path / "f")


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
    settings = TrackingSettings(project_dir=tmp_path, mlflow_tracking_uri=None)
    assert is_embedded(settings.tracking_uri())
    assert artifacts_dir(settings) == (tmp_path / "mlartifacts").resolve()
    assert not is_embedded("http://127.0.0.1:5000")
