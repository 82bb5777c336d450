"""register -> promote -> refuse a worse challenger -> registry pull, against real MLflow stores.

Three stores: the embedded default (SQLite file + local artifact folder, no server) and a real
``mlflow server`` on loopback (proxied artifacts), reached through its URI only, once with a
SQLite backend store and once with a real PostgreSQL server as its backend store (as in the
cluster).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.model_selection import train_test_split
from tests.support.postgres import PostgresServer
from typer.testing import CliRunner

from winequality import artifacts
from winequality.cli import app
from winequality.contract import schema
from winequality.contract.features import postprocess
from winequality.contract.parsers import frame_to_matrix
from winequality.database import normalize_url
from winequality.inference.predictor import OnnxPredictor
from winequality.process import ManagedProcess, free_port
from winequality.stack import MLFLOW_SERVER_ENV
from winequality.training.train import load_model

pytestmark = pytest.mark.integration

FAST = {"alpha_grid": [0.003, 0.01, 0.03], "l1_ratio_grid": [0.05, 0.5], "cv_folds": 3}
# Heavily regularised: clearly worse than the tuned model, still better than the mean.
WORSE = {"search": False, "alpha": 0.3, "l1_ratio": 0.5, "cv_folds": 2}


def invoke(env: dict[str, str | None], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def stage_files(root: Path, name: str) -> list[str]:
    """The path options that point `register` at one trained model's files."""
    d = root / name
    return [
        "--model", str(d / "model.pkl"), "--onnx", str(d / "model.onnx"),
        "--train-metrics", str(d / "train.json"), "--eval-metrics", str(d / "eval.json"),
        "--export-metrics", str(d / "export.json"), "--cv-results", str(d / "cv.csv"),
        "--predictions", str(d / "predictions.csv"),
        "--train", str(root / "data/prepared/train.parquet"),
        "--test", str(root / "data/prepared/test.parquet"),
        "--reference", str(root / "data/prepared/reference.parquet"),
        "--source", str(root / "data/raw/source.json"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame) -> Path:
    """Prepared splits of the real data and two trained models: `good` and `worse`."""
    root = tmp_path_factory.mktemp("project")
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True)
    wines = real_wines.drop_duplicates().reset_index(drop=True)
    train, test = train_test_split(wines, test_size=0.2, random_state=42, stratify=wines.quality)
    train.reset_index(drop=True).to_parquet(prepared / "train.parquet")
    test.reset_index(drop=True).to_parquet(prepared / "test.parquet")
    train.sample(500, random_state=0).reset_index(drop=True).to_parquet(
        prepared / "reference.parquet"
    )
    (root / "data/raw").mkdir()
    (root / "data/raw/source.json").write_text(
        json.dumps({"kind": "path", "source": "/shared/wine-quality", "rows": len(real_wines)})
    )
    for name, train_params in (("good", FAST), ("worse", WORSE)):
        (root / f"params-{name}.yaml").write_text(yaml.safe_dump({"train": train_params}))
        env: dict[str, str | None] = {
            "WINEQ_PROJECT_DIR": str(root),
            "WINEQ_PARAMS_FILE": f"params-{name}.yaml",
        }
        d = root / name
        for args in (
            ["train", "--n-jobs", "1", "--train", str(prepared / "train.parquet"),
             "--out", str(d / "model.pkl"), "--metrics", str(d / "train.json"),
             "--cv-results", str(d / "cv.csv")],
            ["evaluate", "--model", str(d / "model.pkl"), "--test", str(prepared / "test.parquet"),
             "--train", str(prepared / "train.parquet"), "--metrics", str(d / "eval.json"),
             "--plots", str(d / "predictions.csv")],
            ["export", "onnx", "--model", str(d / "model.pkl"),
             "--test", str(prepared / "test.parquet"), "--out", str(d / "model.onnx"),
             "--metrics", str(d / "export.json")],
        ):  # fmt: skip
            code, out = invoke(env, *args)
            assert code == 0, out
    return root


@pytest.fixture(scope="module", params=["embedded", "remote", "remote-postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, project: Path
) -> Iterator[dict[str, str | None]]:
    """The environment of the CLI for one kind of tracking store (a fresh one per mode)."""
    where = tmp_path_factory.mktemp(f"store-{request.param}")
    env: dict[str, str | None] = {
        "WINEQ_PARAMS_FILE": str(project / "params-good.yaml"),
        "MLFLOW_TRACKING_URI": None,
        "WINEQ_PROJECT_DIR": str(where),
    }
    if request.param == "embedded":
        yield env
        assert (where / "mlruns.db").is_file()
        assert any((where / "mlartifacts").rglob(artifacts.MODEL_FILE))
        return
    backend = f"sqlite:///{where / 'server.db'}"
    postgres: PostgresServer | None = None
    if request.param == "remote-postgresql":
        postgres = request.getfixturevalue("postgres")
        # MLflow's SQLAlchemy store, on the psycopg 3 driver the project installs.
        backend = normalize_url(postgres.create_database("mlflow"))
    port = free_port()
    server = ManagedProcess(
        "mlflow-server",
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", backend,
            "--artifacts-destination", str(where / "server-artifacts"),
            "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        where / "server.log",
        env={**os.environ, **MLFLOW_SERVER_ENV},  # as `winequality up` runs it
    )  # fmt: skip
    with server:
        server.wait_ready(url=f"http://127.0.0.1:{port}/health", timeout=120)
        yield env | {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    # Everything went through the server: nothing may have been written locally.
    assert not (where / "mlruns.db").exists()
    assert any((where / "server-artifacts").rglob(artifacts.MODEL_FILE))
    if postgres is not None:
        assert not (where / "server.db").exists()
        names = postgres.query("mlflow", "SELECT name FROM registered_models")
        assert ("wine-quality",) in names


def client_for(env: dict[str, str | None]):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    from winequality.settings import TrackingSettings

    uri = (
        env["MLFLOW_TRACKING_URI"]
        or TrackingSettings(project_dir=Path(str(env["WINEQ_PROJECT_DIR"]))).tracking_uri()
    )
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_promote_refuse_and_pull_the_champion(
    store: dict[str, str | None], project: Path, tmp_path: Path
) -> None:
    client = client_for(store)
    promotion = tmp_path / "promotion.json"
    prepared = project / "data/prepared"
    gate = ["--test", str(prepared / "test.parquet"), "--train", str(prepared / "train.parquet"),
            "--out", str(promotion)]  # fmt: skip

    code, out = invoke(
        store, "register", *stage_files(project, "good"), "--out", str(tmp_path / "r1.json")
    )
    assert code == 0, out
    first = json.loads((tmp_path / "r1.json").read_text())
    assert first["name"] == "wine-quality"
    challenger = client.get_model_version_by_alias("wine-quality", "challenger")
    assert str(challenger.version) == first["version"]

    code, out = invoke(store, "promote", *gate)
    assert code == 0, out
    report = json.loads(promotion.read_text())
    assert report["promoted"] is True
    assert report["champion"] is None
    assert report["challenger"]["score"] < report["baseline_score"]
    champion = client.get_model_version_by_alias("wine-quality", "champion")
    assert str(champion.version) == first["version"]
    assert champion.tags["promotion.decision"] == "promoted"

    code, out = invoke(
        store, "register", *stage_files(project, "worse"), "--out", str(tmp_path / "r2.json")
    )
    assert code == 0, out
    second = json.loads((tmp_path / "r2.json").read_text())
    assert second["version"] != first["version"]

    code, out = invoke(store, "promote", *gate)
    assert code == 0, out  # a refusal is a normal outcome without --strict
    assert "refused" in out
    report = json.loads(promotion.read_text())
    assert report["promoted"] is False
    assert report["champion"]["version"] == first["version"]
    assert report["challenger"]["score"] > report["champion"]["score"]
    refused = client.get_model_version("wine-quality", second["version"])
    assert refused.tags["promotion.decision"] == "refused"
    assert f"does not beat champion v{first['version']}" in refused.tags["promotion.reason"]
    champion = client.get_model_version_by_alias("wine-quality", "champion")
    assert str(champion.version) == first["version"]

    code, out = invoke(store, "promote", "--strict", *gate)
    assert code == 1
    assert "refused" in out

    bundle = tmp_path / "serving"
    code, out = invoke(store, "registry", "pull", "--alias", "champion", "--dest", str(bundle))
    assert code == 0, out
    predictor = OnnxPredictor(bundle)
    meta = predictor.metadata
    assert (meta.version, meta.run_id, meta.alias) == (
        first["version"],
        first["run_id"],
        "champion",
    )
    assert meta.data_source == "path:/shared/wine-quality"
    assert meta.data_hash is not None
    assert meta.data_hash.endswith(".dir")
    assert meta.parity_max_abs_diff is not None
    assert meta.parity_max_abs_diff <= 1e-4
    assert meta.metrics["rmse"] == pytest.approx(report["champion"]["score"], abs=1e-5)
    test = pd.read_parquet(project / "data/prepared/test.parquet")
    matrix = frame_to_matrix(test)
    expected, _ = postprocess(load_model(project / "good" / "model.pkl").predict(matrix))
    assert np.allclose(predictor.predict_sync(matrix).quality, expected, atol=1e-4)
    reference = pd.read_parquet(bundle / artifacts.REFERENCE_FILE)
    assert list(reference.columns) == list(schema.DATA_COLUMNS)
    assert len(reference) == 500

    # --link: a fresh bundles/champion-<time> beside the pointer's folder, the pointer moved to it
    # (the compose stack's champion container).
    link = tmp_path / "stack" / "models" / "current"
    code, out = invoke(store, "registry", "pull", "--alias", "champion", "--link", str(link))
    assert code == 0, out
    (pulled,) = (link.parent / "bundles").glob("champion-*")
    assert link.resolve() == pulled.resolve()
    assert OnnxPredictor(link).metadata.version == first["version"]


def test_run_records_params_metrics_data_tags_and_artifacts(
    store: dict[str, str | None], project: Path, tmp_path: Path
) -> None:
    out_file = tmp_path / "registered.json"
    code, out = invoke(
        store, "register", *stage_files(project, "good"), "--alias", "audit",
        "--out", str(out_file),
    )  # fmt: skip
    assert code == 0, out
    run_id = json.loads(out_file.read_text())["run_id"]
    client = client_for(store)
    run = client.get_run(run_id)
    assert run.data.params["family"] == "elasticnet"
    assert run.data.params["train.cv_folds"] == "3"
    assert {"best.alpha", "best.l1_ratio"} <= set(run.data.params)
    for metric in ("test_rmse", "test_mae", "test_r2", "test_within_0_5", "test_within_1_0",
                   "cv_rmse_mean", "baseline_rmse", "onnx_parity_max_abs_diff"):  # fmt: skip
        assert metric in run.data.metrics, metric
    tags = run.data.tags
    assert tags["dvc_data_hash"].endswith(".dir")
    assert len(tags["dvc_md5.train"]) == 32
    assert tags["data_source"] == "path:/shared/wine-quality"
    assert "git_commit" in tags  # the tests run inside the project's git checkout
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "test"}
    assert inputs["train"].dataset.digest == tags["dvc_md5.train"]
    listed = {a.path for a in client.list_artifacts(run_id)}
    assert {"onnx", "reference", "reports", "plots"} <= listed
    version = client.get_model_version_by_alias("wine-quality", "audit")
    assert version.run_id == run_id
    # The registered sklearn flavour loads back (skops) and predicts like the pipeline file.
    import mlflow

    mlflow.set_tracking_uri(client.tracking_uri)
    loaded = mlflow.sklearn.load_model("models:/wine-quality@audit")
    matrix = frame_to_matrix(pd.read_parquet(project / "data/prepared/test.parquet").head(20))
    original = load_model(project / "good" / "model.pkl")
    assert np.allclose(loaded.predict(matrix), original.predict(matrix))


def test_pull_by_run_id_and_unknown_alias(
    store: dict[str, str | None], project: Path, tmp_path: Path
) -> None:
    out_file = tmp_path / "registered.json"
    code, out = invoke(
        store, "register", *stage_files(project, "worse"), "--alias", "by-run",
        "--out", str(out_file),
    )  # fmt: skip
    assert code == 0, out
    registered = json.loads(out_file.read_text())
    bundle = tmp_path / "bundle"
    code, out = invoke(store, "registry", "pull", "--run-id", registered["run_id"], "--dest",
                       str(bundle))  # fmt: skip
    assert code == 0, out
    meta = artifacts.read_metadata(bundle)
    assert (meta.version, meta.alias) == (registered["version"], None)

    code, out = invoke(store, "registry", "pull", "--alias", "nonexistent", "--dest",
                       str(tmp_path / "nope"))  # fmt: skip
    assert code == 1
    assert "has no alias 'nonexistent'" in out
    assert not (tmp_path / "nope").exists()
