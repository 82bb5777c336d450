"""The model bundle: written atomically, read back validated."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from winequality import artifacts
from winequality.artifacts import ModelMetadata


def test_write_bundle_then_read_metadata_round_trips(tmp_path: Path) -> None:
    dest = artifacts.write_bundle(tmp_path / "b", b"onnx", ModelMetadata(version="3"))
    assert (dest / artifacts.MODEL_FILE).read_bytes() == b"onnx"
    assert artifacts.read_metadata(dest).version == "3"


def test_a_new_bundle_replaces_the_old_one_whole(tmp_path: Path) -> None:
    artifacts.write_bundle(tmp_path / "b", b"old", ModelMetadata(version="1"), None)
    (tmp_path / "b" / "stale.txt").write_text("from the old bundle")
    artifacts.write_bundle(tmp_path / "b", b"new", ModelMetadata(version="2"))
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        artifacts.METADATA_FILE,
        artifacts.MODEL_FILE,
    ]
    assert _leftovers(tmp_path) == []


def _leftovers(folder: Path) -> list[str]:
    """Entries of ``folder`` besides the bundle links and the version directories they name."""
    live = {p.name for p in folder.iterdir() if p.is_symlink()}
    live |= {(folder / name).resolve().name for name in set(live)}
    return sorted(p.name for p in folder.iterdir() if p.name not in live)


def test_a_failure_while_writing_keeps_the_old_directory_and_leaves_no_leftovers(
    tmp_path: Path,
) -> None:
    dest = artifacts.write_bundle(tmp_path / "b", b"old", ModelMetadata(version="1"))

    def write_half_then_fail() -> None:
        with artifacts.replaced_atomically(dest) as tmp:
            (tmp / artifacts.MODEL_FILE).write_bytes(b"half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_half_then_fail()
    assert (dest / artifacts.MODEL_FILE).read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_missing_reference_file_fails_without_touching_the_old_bundle(tmp_path: Path) -> None:
    dest = artifacts.write_bundle(tmp_path / "b", b"old", ModelMetadata(version="1"))
    with pytest.raises(FileNotFoundError):
        artifacts.write_bundle(dest, b"new", ModelMetadata(version="2"), tmp_path / "nope.parquet")
    assert artifacts.read_metadata(dest).version == "1"


def test_a_reference_sample_is_also_written_as_the_model_matrix(
    tmp_path: Path, real_wines: pd.DataFrame
) -> None:
    import numpy as np

    from winequality.contract.parsers import frame_to_matrix

    real_wines.head(50).to_parquet(tmp_path / "reference.parquet")
    dest = artifacts.write_bundle(
        tmp_path / "b", b"onnx", ModelMetadata(), tmp_path / "reference.parquet"
    )
    matrix = np.load(dest / artifacts.REFERENCE_MATRIX_FILE, allow_pickle=False)
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, frame_to_matrix(real_wines.head(50)))


def test_the_bundle_path_is_a_link_switched_to_a_new_version_directory(tmp_path: Path) -> None:
    dest = artifacts.write_bundle(tmp_path / "b", b"old", ModelMetadata(version="1"))
    old_version = dest.resolve()
    assert dest.is_symlink()
    assert old_version.parent == tmp_path
    artifacts.write_bundle(dest, b"new", ModelMetadata(version="2"))
    assert dest.resolve() != old_version
    assert not old_version.exists()  # the replaced version is removed
    # Linked by name: the folder can be mounted elsewhere (a container volume).
    assert not Path(os.readlink(dest)).is_absolute()


class _Crash(BaseException):
    """A kill at the worst moment: nothing after it runs, not even ``except Exception``."""


@pytest.mark.parametrize("step", ["symlink", "rename", "cleanup"])
def test_a_crash_at_any_step_of_the_swap_leaves_a_whole_bundle_at_the_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    dest = artifacts.write_bundle(tmp_path / "b", b"old", ModelMetadata(version="1"))

    def crash(*_: object, **__: object) -> None:
        raise _Crash

    target = {
        "symlink": (Path, "symlink_to"),
        "rename": (os, "replace"),
        "cleanup": (shutil, "rmtree"),
    }[step]
    monkeypatch.setattr(*target, crash)
    with pytest.raises(_Crash):
        artifacts.write_bundle(dest, b"new", ModelMetadata(version="2"))
    monkeypatch.undo()
    expected = (b"new", "2") if step == "cleanup" else (b"old", "1")
    assert ((dest / artifacts.MODEL_FILE).read_bytes(), artifacts.read_metadata(dest).version) == (
        expected
    )


def test_a_plain_directory_at_the_destination_is_replaced_by_a_link(tmp_path: Path) -> None:
    plain = tmp_path / "b"
    plain.mkdir()
    (plain / artifacts.MODEL_FILE).write_bytes(b"old")
    artifacts.write_bundle(plain, b"new", ModelMetadata(version="2"))
    assert plain.is_symlink()
    assert (plain / artifacts.MODEL_FILE).read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


def test_point_link_leaves_a_target_that_is_not_its_own_version_alone(tmp_path: Path) -> None:
    pulled = artifacts.write_bundle(tmp_path / "bundles" / "v1", b"v1", ModelMetadata()).resolve()
    link = tmp_path / "serving"
    artifacts.point_link(link, pulled)
    artifacts.write_bundle(link, b"v2", ModelMetadata(version="2"))
    assert (link / artifacts.MODEL_FILE).read_bytes() == b"v2"
    assert (pulled / artifacts.MODEL_FILE).read_bytes() == b"v1"


def _bundle(folder: Path, version: str) -> Path:
    return artifacts.write_bundle(
        folder, b"onnx-" + version.encode(), ModelMetadata(version=version)
    )


def test_pointer_symlink_is_created_then_swapped(tmp_path: Path) -> None:
    pointer = tmp_path / "models" / "current"
    v1, v2 = _bundle(tmp_path / "b1", "1"), _bundle(tmp_path / "b2", "2")
    artifacts.point_model_dir(pointer, v1)
    assert pointer.is_symlink()
    assert artifacts.read_metadata(pointer).version == "1"
    artifacts.point_model_dir(pointer, v2)
    assert pointer.resolve() == v2.resolve()
    assert artifacts.read_metadata(pointer).version == "2"
    assert not list(pointer.parent.glob(".current.*"))
    assert (v1 / artifacts.MODEL_FILE).read_bytes() == b"onnx-1"  # old bundle untouched


def test_pointer_that_is_a_real_directory_becomes_a_link_to_the_bundle(tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    shutil.copytree(_bundle(tmp_path / "b1", "1"), serving)
    v2 = _bundle(tmp_path / "b2", "2")
    artifacts.point_model_dir(serving, v2)
    assert serving.resolve() == v2.resolve()
    assert artifacts.read_metadata(serving).version == "2"
    assert (serving / artifacts.MODEL_FILE).read_bytes() == b"onnx-2"
