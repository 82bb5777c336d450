"""GitHub Actions workflows: schema-valid, and CD maps GitFlow branches/tags to the overlays."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.deploy.conftest import COMPOSE_ONLY_DOCKERFILES, K8S, OVERLAYS, ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # PyYAML (YAML 1.1) reads the bare key `on` as the boolean True.
    data["on"] = data.pop(True)
    return data


def check_jsonschema(*paths: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("check-jsonschema", path=str(ROOT / ".venv" / "bin"))
    if exe is None:
        pytest.fail("check-jsonschema is missing: it comes with the dev dependencies")
    return subprocess.run(
        [exe, "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_workflows_match_the_github_workflow_schema() -> None:
    paths = sorted(WORKFLOWS.glob("*.yml"))
    assert [p.name for p in paths] == ["cd.yml", "ci.yml"]
    result = check_jsonschema(*paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text((WORKFLOWS / "ci.yml").read_text().replace("runs-on:", "run-on:", 1))
    assert check_jsonschema(broken).returncode != 0


def test_ci_runs_make_test_on_pull_requests_and_pushes() -> None:
    ci = load("ci.yml")
    assert "pull_request" in ci["on"]
    assert "push" in ci["on"]
    steps = ci["jobs"]["test"]["steps"]
    assert any(s.get("run") == ".ci/run" for s in steps)
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")
    assert sum("actions/cache" in s.get("uses", "") for s in steps) >= 2


def test_ci_installs_the_apt_packages_the_makefile_lists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    (listed,) = re.findall(r"^APT_PACKAGES := (.*)$", makefile, flags=re.MULTILINE)
    ci = (WORKFLOWS / "ci.yml").read_text()
    for package in listed.split():
        assert re.search(rf"\s{re.escape(package)}(\s|$)", ci), package


def test_ci_fetches_the_crds_the_manifest_tests_read() -> None:
    ci = (WORKFLOWS / "ci.yml").read_text()
    readme = (ROOT.parent / "shared" / "k8s-crds" / "README.md").read_text()
    for name in (
        "seldondeployments.machinelearning.seldon.io.yaml",
        "prometheusrules.monitoring.coreos.com.yaml",
        "servicemonitors.monitoring.coreos.com.yaml",
        "alertmanagerconfigs.monitoring.coreos.com.yaml",
    ):
        (digest,) = re.findall(rf"([0-9a-f]{{64}})  {re.escape(name)}", ci)
        assert digest in readme, name


def test_cd_maps_develop_to_staging_tags_to_prod_and_offers_a_rollback() -> None:
    cd = load("cd.yml")
    assert cd["on"]["push"]["branches"] == ["develop"]
    assert cd["on"]["push"]["tags"] == ["v*.*.*"]
    inputs = cd["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs["environment"]["options"]) == set(OVERLAYS)
    assert inputs["tag"]["required"] is True
    plan = cd["jobs"]["plan"]["steps"][0]["run"]
    assert "environment=staging" in plan
    assert "environment=prod" in plan
    # A rollback reuses the tag's images: nothing is rebuilt.
    assert "build=false" in plan
    assert cd["jobs"]["images"]["if"] == "needs.plan.outputs.build == 'true'"


def test_cd_sets_every_image_and_the_model_run_the_overlays_declare() -> None:
    cd = load("cd.yml")
    images = cd["jobs"]["images"]["strategy"]["matrix"]["image"]
    assert sorted(images) == sorted(
        p.name.removesuffix(".Dockerfile")
        for p in (ROOT / "deploy" / "docker").glob("*.Dockerfile")
        if p.name not in COMPOSE_ONLY_DOCKERFILES
    )
    deploy = cd["jobs"]["deploy"]
    script = "\n".join(s.get("run", "") for s in deploy["steps"])
    assert "for image in " + " ".join(images) + "; do" in script
    assert "> model.env" in script
    for env in OVERLAYS:
        kustomization = yaml.safe_load((K8S / "overlays" / env / "kustomization.yaml").read_text())
        # Ours are built by CD; the database image is a pinned upstream one.
        assert sorted(i["name"] for i in kustomization["images"]) == sorted(
            [f"wine-quality-{i}" for i in images] + ["postgres"]
        )
        assert {"envs": ["model.env"]}.items() <= kustomization["configMapGenerator"][0].items()
    assert "deploy/k8s/overlays/${{ needs.plan.outputs.environment }}" in str(deploy)
