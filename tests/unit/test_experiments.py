"""What ``winequality exp run`` saves before a ``dvc exp run`` and puts back when it fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from winequality.experiments import (
    FALLBACK_EMAIL,
    Snapshot,
    identity_env,
    param_files,
    stages_to_check_out,
    uncached_outputs,
)

DVC_YAML = Path(__file__).resolve().parents[2] / "dvc.yaml"


def test_param_files_are_params_yaml_and_every_file_an_override_names() -> None:
    args = ["-S", "train.alpha=0.1", "-S", "conf/extra.yaml:model.depth=3",
            "--set-param=other.yaml:a=b:c", "--temp"]  # fmt: skip
    assert param_files(args) == {"params.yaml", "conf/extra.yaml", "other.yaml"}


def test_uncached_outputs_of_the_project_include_the_registered_model_pointer() -> None:
    found = uncached_outputs(yaml.safe_load(DVC_YAML.read_text()))
    assert {"models/registered.json", "metrics/model.json", "reports/plots"} <= found
    assert "models/model.pkl" not in found  # DVC-cached: `dvc checkout` restores it


def test_stages_to_check_out_are_those_that_ran_or_lost_a_cached_output(tmp_path: Path) -> None:
    dvc_yaml = {"stages": {
        "a": {"outs": ["a.bin"]}, "b": {"outs": ["b.bin"]},
        "c": {"outs": ["c.bin", {"c.json": {"cache": False}}]}, "new": {"outs": ["n.bin"]},
    }}  # fmt: skip
    for name in ["a.bin", "b.bin"]:
        (tmp_path / name).write_bytes(b"x")
    lock = {"a": {"outs": [1]}, "b": {"outs": [1]}, "c": {"outs": [1]}}
    after = {"a": {"outs": [2]}, "b": {"outs": [1]}, "c": {"outs": [1]}, "new": {"outs": [3]}}
    assert stages_to_check_out(dvc_yaml, tmp_path, lock, after) == ["a", "c"]


def test_snapshot_restores_files_and_folders_and_removes_what_did_not_exist(
    tmp_path: Path,
) -> None:
    root, store = tmp_path / "root", tmp_path / "store"
    (root / "plots").mkdir(parents=True)
    (root / "params.yaml").write_text("old")
    (root / "plots" / "one.png").write_bytes(b"1")
    snapshot = Snapshot.take(root, ["params.yaml", "plots", "dvc.lock"], store)
    (root / "params.yaml").write_text("new")
    (root / "plots" / "two.png").write_bytes(b"2")
    (root / "dvc.lock").write_text("lock")
    snapshot.restore()
    assert (root / "params.yaml").read_text() == "old"
    assert sorted(p.name for p in (root / "plots").iterdir()) == ["one.png"]
    assert not (root / "dvc.lock").exists()


def test_identity_env_fills_in_a_missing_git_identity_only(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    home = tmp_path / "home"
    home.mkdir()
    bare = {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}
    assert identity_env(tmp_path, bare)["GIT_COMMITTER_EMAIL"] == FALLBACK_EMAIL
    subprocess.run(["git", "config", "user.email", "me@example.org"], cwd=tmp_path, check=True)
    subprocess.run(["git", "config", "user.name", "me"], cwd=tmp_path, check=True)
    assert not set(identity_env(tmp_path, bare)) - set(bare)
    given = bare | {"GIT_COMMITTER_NAME": "ci"}
    assert identity_env(tmp_path, given)["GIT_COMMITTER_NAME"] == "ci"
