"""``winequality exp run``: ``dvc exp run`` that leaves the workspace as it was when it fails.

``dvc exp run`` writes the ``-S`` values into ``params.yaml``, then reproduces the pipeline in the
workspace; when a stage fails, DVC stops there and keeps what it had changed (the experiment's
parameters, the lock entries and outputs of the stages that did run). The next ``dvc exp run``
must then stash that dirty workspace, which scmrepo's pygit2 backend does only with a git
identity. This wrapper runs the same command and, on failure, puts back the files the run may
have changed (parameter files, ``dvc.lock``, the outputs git sees) and checks the cached outputs
out again at the restored ``dvc.lock``: the retry starts from the workspace the user had.

Where no git identity is configured, DVC's own stash gets a neutral one from the environment
(scmrepo reads ``GIT_COMMITTER_NAME``/``GIT_COMMITTER_EMAIL``); a configured identity is never
overridden.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import yaml

from winequality import files

DEFAULT_PARAMS = "params.yaml"
LOCK_FILE = "dvc.lock"
FALLBACK_NAME = "winequality"
FALLBACK_EMAIL = "winequality@localhost"
IDENTITY_VARS = ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")

app = typer.Typer()
"""The ``exp`` command group."""


def find_root(start: Path) -> Path:
    """The DVC project holding ``start`` (the nearest folder with ``.dvc/``)."""
    for folder in [start, *start.parents]:
        if (folder / ".dvc").is_dir():
            return folder
    raise FileNotFoundError(f"no DVC project (.dvc/) at or above {start}")


def param_files(args: Sequence[str]) -> set[str]:
    """``params.yaml`` and every file a ``-S file:key=value`` override names."""
    found = {DEFAULT_PARAMS}
    for option, value in itertools.pairwise(args):
        if option in {"-S", "--set-param"}:
            path, sep, _ = value.partition("=")[0].rpartition(":")
            if sep:
                found.add(path)
    for arg in args:
        if arg.startswith("--set-param="):
            path, sep, _ = arg.removeprefix("--set-param=").partition("=")[0].rpartition(":")
            if sep:
                found.add(path)
    return found


def uncached_outputs(dvc_yaml: Mapping[str, Any]) -> set[str]:
    """The outputs, metrics and plots ``dvc.yaml`` declares ``cache: false``: git sees them and
    ``dvc checkout`` cannot bring them back."""
    found: set[str] = set()
    for stage in (dvc_yaml.get("stages") or {}).values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                if isinstance(entry, dict):
                    path, options = next(iter(entry.items()))
                    if isinstance(options, dict) and options.get("cache") is False:
                        found.add(str(path))
    return found


def _read_lock(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    return dict((yaml.safe_load(path.read_text()) or {}).get("stages") or {})


def stages_to_check_out(
    dvc_yaml: Mapping[str, Any], root: Path, lock: Mapping[str, Any], run_lock: Mapping[str, Any]
) -> list[str]:
    """The stages whose cached outputs a failed run changed: their entry in ``dvc.lock``
    differs from ``lock`` (they ran), or one of their cached outputs is missing (DVC removes a
    stage's outputs before running it). Only stages ``lock`` knows can be checked out."""
    stages = []
    for name, stage in (dvc_yaml.get("stages") or {}).items():
        if name not in lock:
            continue
        cached = [
            next(iter(e)) if isinstance(e, dict) else e
            for e in stage.get("outs") or []
            if not (isinstance(e, dict) and (next(iter(e.values())) or {}).get("cache") is False)
        ]
        if lock[name] != run_lock.get(name) or any(not (root / p).exists() for p in cached):
            stages.append(name)
    return stages


@dataclass(frozen=True)
class Snapshot:
    """Copies of some workspace paths (files or folders), and which of them did not exist."""

    root: Path
    store: Path
    present: frozenset[str]
    absent: frozenset[str]

    @classmethod
    def take(cls, root: Path, paths: Iterable[str], store: Path) -> Snapshot:
        present, absent = set(), set()
        for rel in sorted(set(paths)):
            source = root / rel
            if source.is_dir():
                shutil.copytree(source, store / rel, symlinks=True)
            elif source.exists():
                (store / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, store / rel)
            else:
                absent.add(rel)
                continue
            present.add(rel)
        return cls(root, store, frozenset(present), frozenset(absent))

    def restore(self) -> None:
        """Put every path back as it was; remove the ones that did not exist."""
        for rel in sorted(self.absent):
            _remove(self.root / rel)
        for rel in sorted(self.present):
            saved, target = self.store / rel, self.root / rel
            if saved.is_dir():
                _remove(target)
                shutil.copytree(saved, target, symlinks=True)
            else:
                if target.is_dir():
                    _remove(target)
                files.write_bytes(target, saved.read_bytes())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _git_config(root: Path, key: str, env: Mapping[str, str]) -> str:
    proc = subprocess.run(
        ["git", "config", "--get", key],
        cwd=root,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip()


def identity_env(root: Path, env: Mapping[str, str]) -> dict[str, str]:
    """``env``, plus a neutral git identity when neither git config nor the environment has one."""
    out = dict(env)
    for kind in ("AUTHOR", "COMMITTER"):
        for field, config_key, fallback in (
            ("NAME", "user.name", FALLBACK_NAME),
            ("EMAIL", "user.email", FALLBACK_EMAIL),
        ):
            var = f"GIT_{kind}_{field}"
            if not out.get(var) and not _git_config(root, config_key, env):
                out[var] = fallback
    return out


def run_experiment(args: Sequence[str], root: Path, env: Mapping[str, str]) -> int:
    """``dvc exp run ARGS`` in ``root``; when it fails, the workspace is restored. Returns the
    exit code of ``dvc exp run``."""
    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text()) or {}
    paths = param_files(args) | {LOCK_FILE} | uncached_outputs(dvc_yaml)
    run_env = identity_env(root, env)
    with tempfile.TemporaryDirectory(prefix="wineq-exp-") as store:
        snapshot = Snapshot.take(root, paths, Path(store))
        dvc = ["dvc", "exp", "run", *args]
        # Ctrl-C reaches DVC (same process group), which restores HEAD before it exits: wait for
        # it rather than kill it halfway. A Python handler, unlike SIG_IGN, is not inherited.
        previous = signal.signal(signal.SIGINT, lambda *_: None)
        try:
            code = subprocess.run(dvc, cwd=root, env=run_env, check=False).returncode
        finally:
            signal.signal(signal.SIGINT, previous)
        if code == 0:
            return 0
        after = _read_lock(root / LOCK_FILE)
        snapshot.restore()
        stages = stages_to_check_out(dvc_yaml, root, _read_lock(root / LOCK_FILE), after)
    # The stages that ran replaced (or, the failed one, removed) their cached outputs: back to
    # the restored lock. Only those stages, so no other output the user changed is touched.
    state = "restored"
    if stages:
        checkout = subprocess.run(
            ["dvc", "checkout", "--force", "--quiet", *stages], cwd=root, env=run_env, check=False
        )
        state = "restored" if checkout.returncode == 0 else "restored except DVC-cached outputs"
    typer.echo(f"dvc exp run failed (exit {code}): workspace {state} as before the run", err=True)
    return code


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def run(ctx: typer.Context) -> None:
    """``dvc exp run`` with the same arguments; a failed run leaves the workspace as it was."""
    if any(arg in {"-h", "--help"} for arg in ctx.args):
        typer.echo(run.__doc__ or "")
        subprocess.run(["dvc", "exp", "run", "--help"], check=False)
        return
    root = find_root(Path.cwd())
    code = run_experiment(list(ctx.args), root, os.environ)
    sys.stdout.flush()
    raise typer.Exit(code)
