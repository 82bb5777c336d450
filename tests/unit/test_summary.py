"""What ``serve`` and ``export triton`` say about the bundle they use."""

from __future__ import annotations

from pathlib import Path

from winequality import artifacts
from winequality.artifacts import ModelMetadata
from winequality.summary import bundle_notice


def test_notice_names_the_version_and_how_to_follow_the_champion(tmp_path: Path) -> None:
    bundle = artifacts.write_bundle(
        tmp_path / "serving", b"onnx", ModelMetadata(version="1", alias="champion")
    )
    notice = bundle_notice(bundle)
    assert "v1 (champion when pulled" in notice
    assert f"registry pull --alias champion --dest {bundle}" in notice
    assert "does not follow the registry" in notice


def test_notice_without_a_bundle_says_how_to_get_one(tmp_path: Path) -> None:
    notice = bundle_notice(tmp_path / "missing")
    assert notice.startswith("no model bundle at")
    assert "registry pull --alias champion" in notice
