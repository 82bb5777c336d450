"""The Triton model repository: configs Triton can parse, a wired ensemble, shipped code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from google.protobuf import text_format
from tests.integration.triton_fixtures import train_bundle
from tritonclient.grpc import model_config_pb2
from typer.testing import CliRunner

from winequality import artifacts
from winequality.cli import app
from winequality.contract import features, schema
from winequality.export import triton_repository
from winequality.export.triton_repository import TritonExportError, write_model_repository

MODELS = (schema.MODEL_NAME, "preprocess", "elasticnet", "postprocess")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame) -> Path:
    return train_bundle(tmp_path_factory.mktemp("bundle") / "b", real_wines.iloc[::5], "7")


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def configs(repo: Path) -> dict[str, model_config_pb2.ModelConfig]:
    return {name: parse(repo / name / "config.pbtxt") for name in MODELS}


@pytest.mark.parametrize("variant", ["onnxruntime", "python"])
def test_every_config_parses_as_triton_model_config(
    bundle: Path, tmp_path: Path, variant: triton_repository.Variant
) -> None:
    repo = write_model_repository(bundle, tmp_path / "repo", variant)
    assert sorted(p.name for p in repo.iterdir()) == sorted(MODELS)
    parsed = configs(repo)
    assert {name: c.name for name, c in parsed.items()} == {n: n for n in MODELS}


def test_ensemble_inputs_and_outputs_are_the_schema_tensors(bundle: Path, tmp_path: Path) -> None:
    ensemble = configs(write_model_repository(bundle, tmp_path / "repo"))[schema.MODEL_NAME]
    fp32 = model_config_pb2.DataType.Value("TYPE_FP32")
    string = model_config_pb2.DataType.Value("TYPE_STRING")
    assert ensemble.platform == "ensemble"
    assert [(i.name, i.data_type, list(i.dims)) for i in ensemble.input] == [
        *((n, fp32, [1]) for n in schema.FEATURE_NAMES),
        (schema.WINE_TYPE, string, [1]),
    ]
    assert [(o.name, model_config_pb2.DataType.Name(o.data_type)) for o in ensemble.output] == [
        (schema.OUTPUT_QUALITY, "TYPE_FP32"),
        (schema.OUTPUT_CLASS, "TYPE_INT32"),
    ]


def test_ensemble_steps_feed_each_model_exactly_its_inputs(bundle: Path, tmp_path: Path) -> None:
    parsed = configs(write_model_repository(bundle, tmp_path / "repo"))
    ensemble = parsed[schema.MODEL_NAME]
    available = {i.name for i in ensemble.input}
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["preprocess", "elasticnet", "postprocess"]
    for step in steps:
        model = parsed[step.model_name]
        assert set(step.input_map) == {i.name for i in model.input}, step.model_name
        assert set(step.input_map.values()) <= available, step.model_name
        assert set(step.output_map) <= {o.name for o in model.output}, step.model_name
        available |= set(step.output_map.values())
    assert {o.name for o in ensemble.output} <= available


def test_onnxruntime_variant_targets_the_official_backend(bundle: Path, tmp_path: Path) -> None:
    repo = write_model_repository(bundle, tmp_path / "repo", "onnxruntime")
    model = parse(repo / "elasticnet" / "config.pbtxt")
    assert model.platform == "onnxruntime_onnx"
    assert model.backend == ""
    assert sorted(p.name for p in (repo / "elasticnet" / "7").iterdir()) == ["model.onnx"]
    assert (repo / "elasticnet" / "7" / "model.onnx").read_bytes() == (
        bundle / artifacts.MODEL_FILE
    ).read_bytes()


def test_python_variant_runs_the_onnx_file_in_the_python_backend(
    bundle: Path, tmp_path: Path
) -> None:
    repo = write_model_repository(bundle, tmp_path / "repo", "python")
    model = parse(repo / "elasticnet" / "config.pbtxt")
    assert (model.backend, model.platform) == ("python", "")
    assert sorted(p.name for p in (repo / "elasticnet" / "7").iterdir()) == [
        "model.onnx",
        "model.py",
    ]
    assert [(i.name, list(i.dims)) for i in model.input] == [
        (schema.ONNX_INPUT, [schema.N_MODEL_COLUMNS])
    ]
    assert [o.name for o in model.output] == [schema.ONNX_OUTPUT]


def test_model_step_batches_dynamically(bundle: Path, tmp_path: Path) -> None:
    repo = write_model_repository(
        bundle, tmp_path / "repo", max_batch_size=64, max_queue_delay_us=250
    )
    parsed = configs(repo)
    model = parsed["elasticnet"]
    assert model.HasField("dynamic_batching")
    assert model.dynamic_batching.max_queue_delay_microseconds == 250
    assert {c.max_batch_size for c in parsed.values()} == {64}


def test_the_ensemble_calls_its_own_version_of_each_step(bundle: Path, tmp_path: Path) -> None:
    # The steps serve every version on disk (two during a swap); the ensemble names which one
    # it calls and keeps only its latest version, so loading its new version is the switch.
    parsed = configs(write_model_repository(bundle, tmp_path / "repo"))
    for name in ("preprocess", "elasticnet", "postprocess"):
        assert parsed[name].version_policy.HasField("all"), name
    ensemble = parsed[schema.MODEL_NAME]
    assert ensemble.version_policy.latest.num_versions == 1
    assert [s.model_version for s in ensemble.ensemble_scheduling.step] == [7, 7, 7]


def test_versions_follow_the_registry_version(
    real_wines: pd.DataFrame, bundle: Path, tmp_path: Path
) -> None:
    repo = write_model_repository(bundle, tmp_path / "repo")
    assert all((repo / name / "7").is_dir() for name in MODELS)
    local = train_bundle(tmp_path / "local", real_wines.iloc[::20], version="local")
    repo = write_model_repository(local, tmp_path / "repo")
    assert all(sorted(p.name for p in (repo / n).iterdir() if p.is_dir()) == ["1"] for n in MODELS)
    meta = json.loads((repo / schema.MODEL_NAME / "metadata.json").read_text())
    assert meta["version"] == "local"


def test_processing_code_is_shipped_verbatim(bundle: Path, tmp_path: Path) -> None:
    repo = write_model_repository(bundle, tmp_path / "repo")
    for name in ("preprocess", "postprocess"):
        pkg = repo / name / "7" / "winequality"
        assert (pkg / "contract" / "schema.py").read_bytes() == Path(schema.__file__).read_bytes()
        assert (pkg / "contract" / "features.py").read_bytes() == Path(
            features.__file__
        ).read_bytes()
        assert (repo / name / "7" / "model.py").read_bytes() == (
            triton_repository.MODEL_SOURCES / f"{name}.py"
        ).read_bytes()


def test_shipped_code_imports_alone_and_validates(bundle: Path, tmp_path: Path) -> None:
    version_dir = write_model_repository(bundle, tmp_path / "repo") / "preprocess" / "7"
    probe = f"""
import sys
sys.path.insert(0, {str(version_dir)!r})
from winequality.contract.features import FeatureError, columns_to_matrix
import winequality
assert winequality.__file__.startswith({str(version_dir)!r}), winequality.__file__
heavy = sorted(m for m in ("pandas", "onnxruntime", "sklearn", "pydantic") if m in sys.modules)
assert not heavy, heavy
cols = {{n: [1.0] for n in {list(schema.FEATURE_NAMES)!r}}}
cols["density"] = [1.0]
try:
    columns_to_matrix(cols, [b"rose"])
except FeatureError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "row 0, wine_type: must be one of ['red', 'white'], got 'rose'" in out.stdout


def test_missing_onnx_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TritonExportError, match=r"model\.onnx is missing"):
        write_model_repository(tmp_path / "empty", tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_unknown_variant_and_bad_batch_size_are_rejected(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(TritonExportError, match="variant must be one of"):
        write_model_repository(bundle, tmp_path / "repo", "tensorrt")  # type: ignore[arg-type]
    with pytest.raises(TritonExportError, match="max_batch_size must be >= 1"):
        write_model_repository(bundle, tmp_path / "repo", max_batch_size=0)


def test_rewrite_replaces_the_previous_repository(
    real_wines: pd.DataFrame, bundle: Path, tmp_path: Path
) -> None:
    repo = write_model_repository(bundle, tmp_path / "repo", "python")
    newer = train_bundle(tmp_path / "newer", real_wines.iloc[::20], version="8")
    write_model_repository(newer, repo, "onnxruntime")
    assert sorted(p.name for p in (repo / "elasticnet").iterdir()) == ["8", "config.pbtxt"]
    assert parse(repo / "elasticnet" / "config.pbtxt").platform == "onnxruntime_onnx"
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".repo")]
    assert hidden == [repo.resolve().name]  # only the live version the link names


def test_cli_writes_the_repository(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    result = CliRunner().invoke(
        app,
        ["export", "triton", "--out", str(out), "--bundle", str(bundle), "--variant", "python"],
    )
    assert result.exit_code == 0, result.output
    assert parse(out / "elasticnet" / "config.pbtxt").backend == "python"


def test_cli_rejects_an_unknown_variant_and_a_missing_bundle(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["export", "triton", "--out", str(tmp_path / "r"), "--variant", "x"])
    assert bad.exit_code == 2
    assert "must be one of" in bad.output
    missing = runner.invoke(
        app, ["export", "triton", "--out", str(tmp_path / "r"), "--bundle", str(tmp_path)]
    )
    assert missing.exit_code == 1
    assert "is not a model bundle" in missing.output


def test_a_staged_version_moves_in_by_steps_and_withdraws_cleanly(
    real_wines: pd.DataFrame, bundle: Path, tmp_path: Path
) -> None:
    live = write_model_repository(bundle, tmp_path / "repo", "python").resolve()
    before = {p.relative_to(live): p.read_bytes() for p in live.rglob("*") if p.is_file()}
    newer = train_bundle(tmp_path / "newer", real_wines.iloc[::20], version="8")
    staged = triton_repository.stage_version(newer, live, 8, "python")
    assert staged.steps == ("preprocess", "elasticnet", "postprocess")
    staged.install_steps()
    versions = triton_repository.repository_versions(live)
    assert versions == {**{n: [7, 8] for n in staged.steps}, schema.MODEL_NAME: [7]}
    calls = parse(live / schema.MODEL_NAME / "config.pbtxt").ensemble_scheduling.step
    assert [s.model_version for s in calls] == [7, 7, 7]  # the ensemble still calls version 7
    staged.install_ensemble()
    assert triton_repository.repository_versions(live) == {n: [7, 8] for n in MODELS}
    ensemble = parse(live / schema.MODEL_NAME / "config.pbtxt")
    assert [s.model_version for s in ensemble.ensemble_scheduling.step] == [8, 8, 8]
    staged.withdraw()
    staged.discard()
    after = {p.relative_to(live): p.read_bytes() for p in live.rglob("*") if p.is_file()}
    assert after == before
    assert not staged.staging.exists()


def test_a_new_model_family_adds_its_model_and_retiring_drops_the_old_one(
    real_wines: pd.DataFrame, bundle: Path, tmp_path: Path
) -> None:
    live = write_model_repository(bundle, tmp_path / "repo", "python").resolve()
    other = train_bundle(tmp_path / "other", real_wines.iloc[::20], version="9")
    meta = artifacts.read_metadata(other).model_copy(update={"family": "ridge"})
    (other / artifacts.METADATA_FILE).write_text(meta.model_dump_json())
    staged = triton_repository.stage_version(other, live, 9, "python")
    staged.install_steps()
    staged.install_ensemble()
    staged.discard()
    assert staged.added == ["ridge"]
    retired = triton_repository.retire_versions(live, keep=9)
    assert retired == {
        "elasticnet": ([7], True),
        "postprocess": ([7], False),
        "preprocess": ([7], False),
        schema.MODEL_NAME: ([7], False),
    }
    assert triton_repository.repository_versions(live) == {
        n: [9] for n in ("preprocess", "ridge", "postprocess", schema.MODEL_NAME)
    }


def test_a_version_already_in_the_repository_is_not_staged_again(
    bundle: Path, tmp_path: Path
) -> None:
    live = write_model_repository(bundle, tmp_path / "repo", "python").resolve()
    with pytest.raises(TritonExportError, match="already holds a version 7"):
        triton_repository.stage_version(bundle, live, 7, "python")
