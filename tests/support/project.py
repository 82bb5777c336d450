"""A throwaway copy of the project's pipeline definition in its own git + DVC repository.

Used by the DVC tests and benchmarks/pipeline.py: the real `dvc` and `winequality` commands run
there, against a tracking store and a DVC remote inside the temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def run(cmd: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """Run a command, raising with its output when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}\n{output}")
    return proc.stdout + proc.stderr


def make_pipeline_repo(dest: Path, params: Mapping[str, Any] | None = None) -> Path:
    """git init + dvc init + a local DVC remote, with the project's dvc.yaml and params.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "dvc.yaml", dest / "dvc.yaml")
    merged = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), params or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    env = pipeline_env(dest)
    run(["git", "init", "-q", "-b", "main"], dest, env)
    run(["git", "config", "user.email", "ci@example.invalid"], dest, env)
    run(["git", "config", "user.name", "ci"], dest, env)
    run(["dvc", "init", "-q"], dest, env)
    run(["dvc", "config", "core.analytics", "false"], dest, env)
    run(
        ["dvc", "remote", "add", "-q", "-d", "local", str(dest.parent / f"{dest.name}-remote")],
        dest,
        env,
    )
    # The project's own ignore rules, so the tests see what DVC sees in a real checkout (DVC
    # refuses `exp run` when dvc.lock is git-ignored, for one).
    shutil.copyfile(ROOT / ".gitignore", dest / ".gitignore")
    with (dest / ".gitignore").open("a") as ignore:
        ignore.write("/.cache/\n")  # WINEQ_CACHE_DIR of pipeline_env
    run(["git", "add", "-A"], dest, env)
    run(["git", "commit", "-q", "-m", "pipeline"], dest, env)
    return dest


def pipeline_env(repo: Path) -> dict[str, str]:
    """The environment stage commands run in: embedded MLflow store inside ``repo``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WINEQ_", "MLFLOW_"))}
    env["WINEQ_PROJECT_DIR"] = str(repo)
    env["WINEQ_CACHE_DIR"] = str(repo / ".cache")
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "ci"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "ci@example.invalid"
    return env
