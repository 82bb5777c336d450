"""``/admin/reload`` refuses what no file system takes and bundles that do not say their version,
with a 422 naming why, while the current model keeps serving."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from winequality.artifacts import METADATA_FILE

from .conftest import ADMIN_TOKEN, TestClient

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/tmp/a\x00b", "NUL"),
        ("/" + "a" * 10_000, "not a usable path"),
        ("/" + "b" * 300, "not a usable path"),
        ("/no/such/bundle", "not a directory"),
    ],
)
def test_an_unusable_model_dir_is_a_422(client: TestClient, path: str, why: str) -> None:
    response = client.post("/admin/reload", json={"model_dir": path}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert why in response.text
    assert len(response.text) < 2000  # a 10 kB path is not echoed back whole
    assert client.get("/metadata").json()["model"]["version"] == "1"


def test_a_json_null_body_is_a_422(client: TestClient) -> None:
    response = client.post(
        "/admin/reload", content=b"null", headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == 422


@pytest.mark.parametrize("version", [None, "", "  "])
def test_a_bundle_without_a_version_is_refused(
    client: TestClient, bundle_v1: Path, tmp_path: Path, version: str | None
) -> None:
    bundle = Path(shutil.copytree(bundle_v1, tmp_path / "unversioned"))
    metadata = json.loads((bundle / METADATA_FILE).read_text())
    if version is None:
        del metadata["version"]
    else:
        metadata["version"] = version
    (bundle / METADATA_FILE).write_text(json.dumps(metadata))
    response = client.post("/admin/reload", json={"model_dir": str(bundle)}, headers=AUTH)
    assert response.status_code == 422
    assert "no model version" in response.json()["detail"]
    assert client.get("/metadata").json()["model"]["version"] == "1"
