"""Every ``winequality`` command the images and manifests run is parsed by the real CLI."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
from tests.unit.deploy.conftest import COMPOSE_ONLY_DOCKERFILES, PLATFORMS, ROOT
from tests.unit.deploy.kustomize import Manifest, containers

# Typer (0.2x) vendors click as typer._click: its commands are not click.Command instances, so the
# exception types come from the same vendored module.
from typer._click.exceptions import ClickException, NoSuchOption, UsageError

from winequality.cli import app
from winequality.settings import PORTS, WebhookSettings

DOCKER = ROOT / "deploy" / "docker"
_SHELL_SEPARATORS = {"&&", "||", ";", "{", "}", "|"}


def parse(argv: list[str]) -> typer.Context:
    """Resolve the sub-commands of ``winequality`` and parse the options, without running it."""
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("winequality", [], resilient_parsing=True)
    rest = list(argv)
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            raise UsageError(f"no command {rest[0]!r} in {command.name}")
        command, name = sub, rest.pop(0)
        ctx = typer.Context(command, info_name=name, parent=ctx)
    if hasattr(command, "get_command"):
        raise UsageError(f"{ctx.info_name} needs a sub-command")
    parsed: typer.Context = command.make_context(ctx.info_name, rest, parent=ctx.parent)
    return parsed


def entrypoint(dockerfile: str) -> list[str]:
    text = (DOCKER / dockerfile).read_text()
    found = re.findall(r"^ENTRYPOINT (\[.*\])$", text, flags=re.MULTILINE)
    assert len(found) == 1, dockerfile
    return list(json.loads(found[0]))


def shell_commands(script: str) -> list[list[str]]:
    commands: list[list[str]] = [[]]
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    for token in lexer:
        if token in _SHELL_SEPARATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def image_commands(docs: list[Manifest]) -> list[tuple[str, list[str]]]:
    """(container, argv) of every container of a winequality image that runs the CLI."""
    entry = {
        "wine-quality-trainer": entrypoint("trainer.Dockerfile"),
        "wine-quality-detector": entrypoint("detector.Dockerfile"),
    }
    out: list[tuple[str, list[str]]] = []
    for doc in docs:
        for c in containers(doc):
            if c["image"] not in entry or c.get("command") == ["mlflow"]:
                continue  # the MLflow server: test_mlflow_server_command_parses
            if c.get("command"):
                assert c["command"][:2] == ["/bin/sh", "-c"], c["name"]
                for argv in shell_commands(" ".join(c["args"])):
                    if argv[0] == "winequality":
                        out.append((c["name"], argv[1:]))
                    else:
                        assert argv[0] == "test", argv
            else:
                out.append((c["name"], [*entry[c["image"]][1:], *c.get("args", [])]))
    return out


def test_parse_rejects_unknown_commands_and_options() -> None:
    with pytest.raises(UsageError):
        parse(["registry", "fetch", "--run-id", "x"])
    with pytest.raises(NoSuchOption):
        parse(["registry", "pull", "--run", "x"])
    assert parse(["registry", "pull", "--run-id", "x"]).params["run_id"] == "x"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_cli_invocation_in_the_manifests_parses(
    platforms: dict[str, list[Manifest]], platform: str
) -> None:
    commands = image_commands(platforms[platform])
    for name, argv in commands:
        try:
            parse(argv)
        except ClickException as exc:
            pytest.fail(f"container {name}: winequality {shlex.join(argv)}: {exc.format_message()}")
    ran = {" ".join(argv[:2]) for _, argv in commands}
    assert {"registry pull", "export triton", "drift serve", "webhook --host"} <= ran
    assert {"data ingest", "data validate", "data prepare"} <= ran


@pytest.mark.parametrize("platform", PLATFORMS)
def test_init_container_pulls_by_run_id_from_the_configmap(
    platforms: dict[str, list[Manifest]], platform: str
) -> None:
    commands = image_commands(platforms[platform])
    pulls = [argv for _, argv in commands if argv[:2] == ["registry", "pull"]]
    assert len(pulls) == 3
    for argv in pulls:
        ctx = parse(argv)
        # Kubernetes expands $(VAR) in args from the container's env before the CLI sees it.
        assert ctx.params["run_id"] == "$(MODEL_RUN_ID)"
        assert ctx.params["alias"] is None


def test_webhook_retrain_command_parses_from_its_environment(
    base: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    webhook = next(c for d in base for c in containers(d) if c["name"] == "webhook")
    env = {e["name"]: e["value"] for e in webhook["env"] if "value" in e}
    monkeypatch.setenv("WINEQ_WEBHOOK_COMMAND", env["WINEQ_WEBHOOK_COMMAND"])
    command = WebhookSettings().command
    assert command[0] == "winequality"
    # In the cluster, telling the serving side is the rollout through the Kubernetes API.
    assert parse(list(command[1:])).params["notify"] is True
    names = {e["name"] for e in webhook["env"]}
    assert "WINEQ_CLUSTER_NAMESPACE" in names


def test_app_image_runs_the_serving_module_only() -> None:
    assert entrypoint("app.Dockerfile") == ["python", "-m", "winequality.serving"]
    assert importlib.util.find_spec("winequality.serving.__main__") is not None


def test_detector_image_entrypoint_parses() -> None:
    argv = entrypoint("detector.Dockerfile")
    assert argv[0] == "winequality"
    ctx = parse(argv[1:])
    assert ctx.params["port"] == PORTS.detector
    assert ctx.params["host"] == "0.0.0.0"


def test_triton_image_exports_with_the_onnxruntime_variant() -> None:
    text = (DOCKER / "triton.Dockerfile").read_text()
    (line,) = [ln for ln in text.splitlines() if "winequality export triton" in ln and "RUN" in ln]
    argv = shlex.split(line.split("winequality", 1)[1])
    assert parse(argv).params["variant"] == "onnxruntime"


def test_trainer_image_runs_the_cli_on_dvc_without_git() -> None:
    text = (DOCKER / "trainer.Dockerfile").read_text()
    assert entrypoint("trainer.Dockerfile") == ["winequality"]
    assert "dvc config --local core.no_scm true" in text
    for path in ("dvc.yaml", "params.yaml", ".dvc/config"):
        assert (ROOT / path).exists()


def test_shell_commands_split_on_operators() -> None:
    assert shell_commands("test -f a || { x --y 1 && z; }") == [
        ["test", "-f", "a"],
        ["x", "--y", "1"],
        ["z"],
    ]


def test_dockerfiles_are_the_four_images_and_the_compose_stacks_three() -> None:
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == [
        "alertmanager.Dockerfile",
        "app.Dockerfile",
        "detector.Dockerfile",
        "postgres.Dockerfile",
        "prometheus.Dockerfile",
        "trainer.Dockerfile",
        "triton.Dockerfile",
    ]
    assert set(COMPOSE_ONLY_DOCKERFILES) <= {p.name for p in DOCKER.glob("*.Dockerfile")}
    assert isinstance(ROOT, Path)


def test_mlflow_server_command_parses(mlflow: list[Manifest]) -> None:
    from mlflow.cli import cli

    (server,) = [c for d in mlflow for c in containers(d) if c.get("command") == ["mlflow"]]
    command: Any = cli
    ctx = command.make_context("mlflow", [], resilient_parsing=True)
    sub = command.get_command(ctx, server["args"][0])
    parsed = sub.make_context("server", list(server["args"][1:]), parent=ctx)
    assert parsed.params["backend_store_uri"] == "$(MLFLOW_BACKEND_STORE_URI)"
    assert parsed.params["artifacts_destination"] == "/var/lib/mlflow/artifacts"
    assert parsed.params["port"] == 5000
    env = {e["name"]: e for e in server["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-database",
        "key": "url",
    }
