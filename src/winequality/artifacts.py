"""The model bundle: the directory that ``winequality registry pull`` and the export write, and
that the serving app, the drift detector and the Triton export read.

Layout::

    DIR/model.onnx         the model, input ``schema.ONNX_INPUT`` float32 [N, 12]
    DIR/metadata.json      ``ModelMetadata`` below
    DIR/reference.parquet  reference sample for drift detection (schema.DATA_COLUMNS)

Only pydantic and the standard library are imported: the serving path must stay free of MLflow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, Field

from winequality.contract import schema

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
REFERENCE_FILE = "reference.parquet"


class ModelMetadata(BaseModel):
    """What the serving side needs to know about a model, without asking MLflow."""

    name: str = schema.MODEL_NAME
    version: str = "0"
    """Registry version (a string: registries use strings, local exports use "local")."""
    run_id: str | None = None
    alias: str | None = None
    family: str = "elasticnet"
    metrics: dict[str, float] = Field(default_factory=dict)
    """Test metrics measured at training time (rmse, mae, r2, within_0_5, within_1_0)."""
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

    Files go to a sibling temporary directory first, which then replaces ``dest`` with renames, so
    a crash leaves either the old bundle or the new one.
    """
    with replaced_atomically(dest) as tmp:
        (tmp / MODEL_FILE).write_bytes(onnx_model)
        (tmp / METADATA_FILE).write_text(metadata.model_dump_json(indent=2))
        if reference is not None:
            shutil.copyfile(reference, tmp / REFERENCE_FILE)
    return dest.resolve()


@contextmanager
def replaced_atomically(dest: Path) -> Iterator[Path]:
    """Yield an empty sibling directory of ``dest``; on success it replaces ``dest`` by renames.

    A reader sees the old directory or the new one, never a mix; on failure the old one stays
    and the partial new one is removed.
    """
    dest = dest.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; readers may run as another user
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_metadata(bundle: Path) -> ModelMetadata:
    """Load and validate ``metadata.json`` of a bundle."""
    return ModelMetadata.model_validate_json((bundle / METADATA_FILE).read_text())


def point_model_dir(model_dir: Path, bundle: Path) -> None:
    """Make ``model_dir`` name ``bundle``: swap the symlink atomically, or copy into a real dir.

    The local stack uses a symlink (a rename replaces it in one step, no reader sees it missing);
    a plain directory, as ``registry pull`` makes by default, is rewritten with the bundle's files
    through ``write_bundle`` (also atomic).
    """
    if model_dir.is_symlink() or not model_dir.exists():
        model_dir.absolute().parent.mkdir(parents=True, exist_ok=True)
        tmp = model_dir.with_name(f".{model_dir.name}.{os.getpid()}.link")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(bundle.resolve(), target_is_directory=True)
        os.replace(tmp, model_dir)
        return
    reference = bundle / REFERENCE_FILE
    write_bundle(
        model_dir,
        (bundle / MODEL_FILE).read_bytes(),
        read_metadata(bundle),
        reference if reference.is_file() else None,
    )
