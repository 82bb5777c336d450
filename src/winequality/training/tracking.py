"""Where runs go and what they are tagged with: tracking URI, experiment, provenance hashes.

MLflow is imported inside the functions that need it (its import takes seconds).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from winequality.settings import TrackingSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient

_CHUNK = 1 << 20


def file_md5(path: Path) -> str:
    """md5 of a file's bytes: what DVC 3 records for a file output (no line-ending rewrite)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dvc_dir_hash(folder: Path) -> str:
    """DVC's hash of a directory output (``<md5>.dir``, as ``dvc.lock`` records it), computed by
    DVC's own hashing library, so a run can be matched to the exact folder version DVC names."""
    import tempfile

    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a directory")
    fs = LocalFileSystem()  # type: ignore[no-untyped-call]
    with tempfile.TemporaryDirectory() as scratch:  # DVC writes the listing object here
        _, _, tree = build(HashFileDB(fs, scratch), str(folder), fs, "md5")
    return str(tree.hash_info.value)


def data_hashes(files: dict[str, Path]) -> dict[str, str]:
    """``{"<name>": md5}`` per existing file, plus ``"dir"``: DVC's hash of their common folder."""
    hashes = {name: file_md5(path) for name, path in files.items() if path.is_file()}
    folders = {path.resolve().parent for path in files.values() if path.is_file()}
    if len(folders) == 1:
        hashes["dir"] = dvc_dir_hash(folders.pop())
    return hashes


def git_commit(cwd: Path) -> str | None:
    """HEAD of the repository around ``cwd`` (``+dirty`` with uncommitted changes), or None."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if dirty else head


def data_source(path: Path) -> str | None:
    """``kind:source`` from the ingest stage's ``source.json`` (e.g. ``uci:https://...``)."""
    try:
        info: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    kind, source = info.get("kind"), info.get("source")
    if kind and source and str(kind) != str(source):
        return f"{kind}:{source}"
    return str(source or kind) if (source or kind) else None


def is_embedded(uri: str) -> bool:
    """True for the embedded store (a database file on this machine, no server)."""
    return uri.startswith("sqlite:")


def artifacts_dir(settings: TrackingSettings) -> Path:
    """The embedded store's artifact folder, resolved against the project directory."""
    folder = settings.mlflow_artifacts_dir
    return (folder if folder.is_absolute() else settings.project_dir / folder).resolve()


def connect(settings: TrackingSettings) -> MlflowClient:
    """Point MLflow (tracking and registry) at the configured store and return a client."""
    import mlflow

    uri = settings.tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: MlflowClient, settings: TrackingSettings) -> str:
    """The experiment's id, creating it on first use.

    In embedded mode the artifact location is set explicitly: MLflow's default for a SQLite
    store is ``./mlruns`` relative to whatever directory the command runs in.
    """
    found = client.get_experiment_by_name(settings.experiment_name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    location = None
    if is_embedded(settings.tracking_uri()):
        folder = artifacts_dir(settings)
        folder.mkdir(parents=True, exist_ok=True)
        location = folder.as_uri()
    return str(client.create_experiment(settings.experiment_name, artifact_location=location))


def quiet_mlflow() -> None:
    """Keep MLflow to what a pipeline user can act on: its errors.

    Off: progress bars and emoji links (meant for notebooks), usage telemetry (a network call
    per logged model), and the INFO/WARNING chatter of a local run (database migrations, "pip
    version not resolved" in a uv environment, dataset-source and integer-column hints).
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    import mlflow  # noqa: F401 (configures its loggers on import; the level is set after it)

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"mlflow\.")
