"""The model bundle: written atomically, read back validated."""

from __future__ import annotations

from pathlib import Path

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
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary leftovers


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
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_missing_reference_file_fails_without_touching_the_old_bundle(tmp_path: Path) -> None:
    dest = artifacts.write_bundle(tmp_path / "b", b"old", ModelMetadata(version="1"))
    with pytest.raises(FileNotFoundError):
        artifacts.write_bundle(dest, b"new", ModelMetadata(version="2"), tmp_path / "nope.parquet")
    assert artifacts.read_metadata(dest).version == "1"


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


def test_pointer_that_is_a_real_directory_gets_the_bundle_copied(tmp_path: Path) -> None:
    serving = _bundle(tmp_path / "serving", "1")
    v2 = _bundle(tmp_path / "b2", "2")
    artifacts.point_model_dir(serving, v2)
    assert not serving.is_symlink()
    assert artifacts.read_metadata(serving).version == "2"
    assert (serving / artifacts.MODEL_FILE).read_bytes() == b"onnx-2"
