"""/docs of the app and of the detector loads its assets from the app itself.

The pages rendering in a browser is checked by tests/integration/test_pages_offline.py.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from winequality.api_docs import add_docs
from winequality.monitoring.service import create_app as create_detector
from winequality.params import DriftParams
from winequality.serving.app import create_app
from winequality.settings import DetectorSettings, ServingSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""")


@pytest.fixture(params=["app", "detector"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    if request.param == "app":
        settings = ServingSettings(model_dir=tmp_path / "no-model", _env_file=None)  # type: ignore[call-arg]
        app = create_app(settings)
    else:
        detector = DetectorSettings(_env_file=None)  # type: ignore[call-arg]
        app = create_detector(detector, DriftParams(), tmp_path / "no-reference.parquet")
    with TestClient(app) as c:
        yield c


def test_docs_page_loads_every_asset_from_the_app(client: TestClient) -> None:
    html = client.get("/docs")
    assert html.status_code == 200
    assets = [a or b for a, b in ASSET.findall(html.text)]
    assert assets, html.text
    for asset in assets:
        assert asset.startswith("/"), f"/docs loads {asset} from elsewhere"
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert answer.content, asset


def test_oauth2_redirect_stays_where_fastapi_puts_it_and_the_cdn_redoc_is_off(
    client: TestClient,
) -> None:
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert client.get("/redoc").status_code == 404


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_every_reference_of_the_openapi_document_resolves(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    for ref in set(refs(document)):
        assert ref.startswith("#/"), ref
        node = document
        for part in ref[2:].split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]


def test_add_docs_refuses_an_app_that_still_has_the_cdn_pages() -> None:
    with pytest.raises(ValueError, match="docs_url=None"):
        add_docs(FastAPI())
