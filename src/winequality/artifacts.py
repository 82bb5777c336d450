"""The model bundle: the directory that ``winequality registry pull`` and the export write, and
that the serving app, the drift detector and the Triton export read.

Layout::

    DIR/model.onnx         the model, input ``schema.ONNX_INPUT`` float32 [N, 12]
    DIR/metadata.json      ``ModelMetadata`` below
    DIR/reference.parquet  reference sample for drift detection (schema.DATA_COLUMNS)
    DIR/reference_matrix.npy  the same sample as the model's input, float32 [N, 12]

``DIR`` is a symlink to a version directory ``.DIR.v-*`` beside it; a new bundle is written into
a new version directory and the link is switched with one rename (``replaced_atomically``).

Only pydantic and the standard library are imported: the serving path must stay free of MLflow.
The reference matrix is there for the app, which scores it with numpy alone: its image has no
pandas or pyarrow to read the parquet.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from pydantic import BaseModel, Field

from winequality.contract import schema

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
REFERENCE_FILE = "reference.parquet"
REFERENCE_MATRIX_FILE = "reference_matrix.npy"


class ModelMetadata(BaseModel):
    """What the serving side needs to know about a model, without asking MLflow."""

    name: str = schema.MODEL_NAME
    version: str = "0"
    """Registry version (a string: registries use strings, local exports use "local")."""
    run_id: str | None = None
    alias: str | None = None
    family: str = "elasticnet"
    metrics: dict[str, float] = Field(default_factory=dict)
    """Test metrics measured at training time (rmse, mae, r2, within_0_5, within_1_0, bias)."""
    parity_max_abs_diff: float | None = None
    """Largest |ONNX - scikit-learn| on the test set, checked at export."""
    model_columns: list[str] = Field(default_factory=lambda: list(schema.MODEL_COLUMNS))
    onnx_input: str = schema.ONNX_INPUT
    onnx_output: str = schema.ONNX_OUTPUT
    data_source: str | None = None
    data_hash: str | None = None
    git_commit: str | None = None
    created_at: str | None = None


def write_bundle(
    dest: Path,
    onnx_model: bytes,
    metadata: ModelMetadata,
    reference: Path | None = None,
) -> Path:
    """Write a bundle atomically: a reader never sees a half-written directory.

    Files go to a fresh version directory first, then ``dest`` (a symlink) is switched to it with
    one rename (``replaced_atomically``), so a crash at any step leaves either the old bundle or
    the new one at ``dest``. Returns ``dest`` (absolute); readers resolve it once per load.
    """
    with replaced_atomically(dest) as tmp:
        (tmp / MODEL_FILE).write_bytes(onnx_model)
        (tmp / METADATA_FILE).write_text(metadata.model_dump_json(indent=2))
        if reference is not None:
            shutil.copyfile(reference, tmp / REFERENCE_FILE)
            _write_reference_matrix(tmp / REFERENCE_FILE, tmp / REFERENCE_MATRIX_FILE)
    return _canonical(dest)


def _write_reference_matrix(parquet: Path, dest: Path) -> None:
    # Imported here: only the training side writes bundles with a reference sample.
    import numpy as np
    import pandas as pd

    from winequality.contract.parsers import frame_to_matrix

    np.save(dest, frame_to_matrix(pd.read_parquet(parquet)), allow_pickle=False)


VERSION_INFIX: Final = ".v-"
"""Version directories of ``DIR`` are its hidden siblings ``.DIR.v-*``."""


def _canonical(path: Path) -> Path:
    """Absolute, parent symlinks resolved, ``path`` itself not (it may be the link)."""
    return path.absolute().parent.resolve() / path.name


def _is_version_of(target: Path, link: Path) -> bool:
    return target.parent == link.parent and target.name.startswith(f".{link.name}{VERSION_INFIX}")


@contextmanager
def replaced_atomically(dest: Path) -> Iterator[Path]:
    """Yield an empty version directory; on success ``dest`` is switched to it in one rename.

    ``dest`` is a symlink to a hidden sibling ``.NAME.v-*``: the new version is written beside
    it, a new link is renamed over ``dest`` (atomic on POSIX), and the old version is removed.
    A reader that resolves ``dest`` once sees the old directory or the new one, never a mix, and
    ``dest`` never goes missing. On failure the old one stays and the partial new one is removed.

    A ``dest`` that is still a plain directory (written by an older version of this function,
    or by hand) is first moved to a version directory and linked back, once: a crash between
    those two renames leaves its content in ``.NAME.v-*``, which the next write replaces.
    """
    dest = _canonical(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    version = Path(tempfile.mkdtemp(prefix=f".{dest.name}{VERSION_INFIX}", dir=dest.parent))
    try:
        yield version
        version.chmod(0o755)  # mkdtemp makes it owner-only; readers may run as another user
        point_link(dest, version)
    except BaseException:
        shutil.rmtree(version, ignore_errors=True)
        raise


def point_link(link: Path, target: Path) -> None:
    """Make ``link`` a symlink to the directory ``target`` in one rename.

    A target beside the link is linked by its name, so the pair still works when their folder is
    mounted elsewhere (a container volume). The previous target is removed when it is one of the
    link's own version directories (others, such as pulled bundles, are left alone). A plain
    directory at ``link`` becomes a version directory first (see ``replaced_atomically``).
    """
    link = _canonical(link)
    previous: Path | None = None
    if link.is_symlink():
        previous = _canonical(link.parent / os.readlink(link))
    elif link.exists():
        previous = link.parent / f".{link.name}{VERSION_INFIX}{uuid.uuid4().hex[:12]}"
        os.replace(link, previous)
    target = target.absolute()
    pointer = target.name if target.parent.resolve() == link.parent else str(target)
    tmp = link.parent / f".{link.name}.link-{uuid.uuid4().hex[:12]}"
    tmp.symlink_to(pointer, target_is_directory=True)
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if previous is not None and previous != target and _is_version_of(previous, link):
        shutil.rmtree(previous, ignore_errors=True)


def read_metadata(bundle: Path) -> ModelMetadata:
    """Load and validate ``metadata.json`` of a bundle."""
    return ModelMetadata.model_validate_json((bundle / METADATA_FILE).read_text())


def new_bundle_dir(model_dir: Path, name: str) -> Path:
    """A fresh folder ``bundles/<name>-<time>`` for a pulled bundle, next to the serving pointer
    ``model_dir``, never reused (the one naming rule of ``up``, the compose stack and
    retraining)."""
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return model_dir.absolute().parent / "bundles" / f"{name}-{stamp}"


def point_model_dir(model_dir: Path, bundle: Path) -> None:
    """Make ``model_dir`` a symlink to ``bundle``, switched in one rename (no reader sees it
    missing); a plain directory from before becomes the link (``point_link``)."""
    model_dir.absolute().parent.mkdir(parents=True, exist_ok=True)
    point_link(model_dir, bundle.resolve())
