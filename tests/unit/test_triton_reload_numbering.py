"""Version numbering and bundle identity of the bundled Triton's hot reload (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from winequality import artifacts
from winequality.artifacts import ModelMetadata
from winequality.inference.predictor import BundleError
from winequality.triton_reload import bundle_digest, next_version


@pytest.mark.parametrize(
    ("registry", "highest", "expected"),
    [
        ("2", 1, 2),  # a new champion: Triton's number is the registry's
        ("7", 0, 7),  # the first deploy
        ("1", 2, 3),  # a rollback to an older champion must still become the latest
        ("2", 2, 3),  # the same number again (a retried deploy)
        ("local", 0, 1),
        ("local", 4, 5),
    ],
)
def test_server_versions_follow_the_registry_while_they_increase(
    registry: str, highest: int, expected: int
) -> None:
    assert next_version(ModelMetadata(version=registry), highest) == expected


def test_a_bundle_is_identified_by_its_model_and_metadata(tmp_path: Path) -> None:
    first = artifacts.write_bundle(tmp_path / "a", b"onnx", ModelMetadata(version="1"))
    same = artifacts.write_bundle(tmp_path / "b", b"onnx", ModelMetadata(version="1"))
    other = artifacts.write_bundle(tmp_path / "c", b"onnx", ModelMetadata(version="2"))
    assert bundle_digest(first) == bundle_digest(same)
    assert bundle_digest(first) != bundle_digest(other)
    with pytest.raises(BundleError, match="unreadable"):
        bundle_digest(tmp_path / "missing")
