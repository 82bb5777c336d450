"""Schemathesis against the OpenAPI documents of the app, the detector and the webhook, served
for real.

Every check (no 5xx, documented statuses, content types and headers, response bodies that
conform to their schemas, schema-violating requests refused, schema-valid ones accepted) over
every phase (examples, coverage, fuzzing), with a bounded budget: ``MAX_EXAMPLES`` cases per
operation and phase, a fixed seed (``WINEQ_SCHEMATHESIS_SEED`` picks another), so a run is
reproducible and takes well under a minute per service. ``schemathesis-{app,detector}.toml``
beside this file list where a schema-valid request may still be refused, and why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.services import APP_TOKEN, DETECTOR_TOKEN, WEBHOOK_TOKEN, Service

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
MAX_EXAMPLES = 40
SEED = int(os.environ.get("WINEQ_SCHEMATHESIS_SEED", "20261202"))


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolves(document: dict[str, Any], ref: str) -> bool:
    if not ref.startswith("#/"):
        return False
    node: Any = document
    for escaped in ref.removeprefix("#/").split("/"):
        part = escaped.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("service", ["app", "detector", "webhook"])
def test_every_reference_of_the_openapi_document_resolves(
    service: str, request: pytest.FixtureRequest
) -> None:
    """``#/$defs/...`` inside a hand-placed request schema points at nothing in OpenAPI."""
    served: Service = request.getfixturevalue(service)
    document = httpx.get(f"{served.url}/openapi.json", timeout=30).json()
    dangling = sorted({ref for ref in _refs(document) if not _resolves(document, ref)})
    assert not dangling


@pytest.mark.parametrize(
    ("service", "token"),
    [("app", APP_TOKEN), ("detector", DETECTOR_TOKEN), ("webhook", WEBHOOK_TOKEN)],
)
def test_schemathesis_finds_no_failure(
    service: str, token: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    served: Service = request.getfixturevalue(service)
    config = HERE / f"schemathesis-{service}.toml"
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")),
        *(["--config-file", str(config)] if config.is_file() else []),
        "run", f"{served.url}/openapi.json",
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "1",
        "--generation-database", "none",
        "--request-timeout", "30",
        "--header", f"Authorization: Bearer {token}",
        "--no-color",
        "--report", "junit",
        "--report-dir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-12_000:]
    assert " passed" in output, output[-2000:]
