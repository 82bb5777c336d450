"""The one atomic file write, and that nothing else renames files into place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from winequality import files

SRC = Path(__file__).resolve().parents[2] / "src" / "winequality"


def test_write_text_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.txt"
    files.write_text(path, "old")
    files.write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    files.write_bytes(path, b"old")

    def write_half_then_fail() -> None:
        with files.atomic_path(path) as tmp:
            tmp.write_bytes(b"ha")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_half_then_fail()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_write_json_is_indented_and_sorted(tmp_path: Path) -> None:
    files.write_json(tmp_path / "m.json", {"b": 1, "a": 2})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'


def test_only_the_file_and_artifact_helpers_rename_into_place() -> None:
    renames = re.compile(r"os\.replace\(|os\.rename\(|\.replace\([a-z_]*(dest|path|tmp)")
    found = sorted(
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if renames.search(p.read_text(encoding="utf-8"))
    )
    assert found == ["artifacts.py", "files.py"]
