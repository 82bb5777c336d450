"""The data commands end to end, as DVC runs them, on the real shared UCI files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from winequality.cli import app
from winequality.contract import schema
from winequality.data.ingest import RAW_COLUMNS


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory as the working directory (params.yaml absent: defaults)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WINEQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WINEQ_UCI_URL", "http://127.0.0.1:9/unreachable.zip")
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["data", *args])


def test_ingest_validate_prepare_on_the_real_data(project: Path, shared_data_dir: Path) -> None:
    result = run("ingest", "--source", str(shared_data_dir))
    assert result.exit_code == 0, result.output
    raw = pd.read_csv(project / "data/raw/wines.csv", dtype="str")
    assert list(raw.columns) == list(RAW_COLUMNS)
    assert len(raw) == 6497
    source = json.loads((project / "data/raw/source.json").read_text())
    assert (source["kind"], source["rows"], source["reason"]) == ("path", 6497, None)

    result = run("validate")
    assert result.exit_code == 0, result.output
    validated = pd.read_parquet(project / "data/validated/wines.parquet")
    assert list(validated.columns) == list(schema.DATA_COLUMNS)
    assert validated[schema.TARGET].dtype == np.int64
    assert len(validated) == 6497
    report = json.loads((project / "reports/validation.json").read_text())
    assert report["passed"] is True
    assert report["invalid_rows"] == 0
    quarantine = pd.read_csv(project / "data/validated/quarantine.csv")
    assert quarantine.empty

    result = run("prepare")
    assert result.exit_code == 0, result.output
    parts = {
        name: pd.read_parquet(project / f"data/prepared/{name}.parquet")
        for name in ("train", "test", "reference")
    }
    for part in parts.values():
        assert list(part.columns) == list(schema.DATA_COLUMNS)
    metrics = json.loads((project / "metrics/data.json").read_text())
    assert metrics["duplicates_dropped"] == 1177
    assert metrics["per_wine_type"]["white"]["duplicates_dropped"] == 937
    assert len(parts["train"]) + len(parts["test"]) == 5320
    assert len(parts["reference"]) == 1000
    keys = {name: set(part.itertuples(index=False, name=None)) for name, part in parts.items()}
    assert not keys["train"] & keys["test"]
    assert keys["reference"] <= keys["train"]


def spoiled_raw(project: Path, shared_data_dir: Path) -> Path:
    assert run("ingest", "--source", str(shared_data_dir)).exit_code == 0
    path = project / "data/raw/wines.csv"
    raw = pd.read_csv(path, dtype="str")
    raw.loc[0, "ph"] = "15.2"
    raw.loc[1, "alcohol"] = "twelve"
    raw.loc[1700, "wine_type"] = "rose"
    raw.to_csv(path, index=False)
    return path


def test_validate_fails_by_default_naming_file_line_and_column(
    project: Path, shared_data_dir: Path
) -> None:
    spoiled_raw(project, shared_data_dir)
    result = run("validate")
    assert result.exit_code == 1
    assert "3 of 6497 rows are invalid" in result.stderr
    assert "winequality-red.csv, line 2, column 'ph': 15.2 is outside" in result.stderr
    assert "winequality-red.csv, line 3, column 'alcohol': not a number: 'twelve'" in result.stderr
    assert "winequality-white.csv, line 103, column 'wine_type'" in result.stderr
    report = json.loads((project / "reports/validation.json").read_text())
    assert report["passed"] is False
    assert [p["line"] for p in report["problems"]] == [2, 3, 103]
    assert not (project / "data/validated/wines.parquet").exists()


def test_validate_quarantine_policy_sets_bad_rows_aside(
    project: Path, shared_data_dir: Path
) -> None:
    spoiled_raw(project, shared_data_dir)
    (project / "params.yaml").write_text("validate:\n  policy: quarantine\n")
    result = run("validate")
    assert result.exit_code == 0, result.output
    assert "3 row(s) quarantined" in result.stdout
    validated = pd.read_parquet(project / "data/validated/wines.parquet")
    assert len(validated) == 6494
    quarantine = pd.read_csv(project / "data/validated/quarantine.csv", dtype="str")
    assert quarantine["source_line"].tolist() == ["2", "3", "103"]
    assert "not a number" in quarantine["reason"].iloc[1]
    report = json.loads((project / "reports/validation.json").read_text())
    assert (report["passed"], report["quarantined_rows"], report["valid_rows"]) == (True, 3, 6494)


def test_policy_flag_overrides_params(project: Path, shared_data_dir: Path) -> None:
    spoiled_raw(project, shared_data_dir)
    (project / "params.yaml").write_text("validate:\n  policy: quarantine\n")
    assert run("validate", "--policy", "fail").exit_code == 1
    assert run("validate", "--policy", "maybe").exit_code == 1


def test_ingest_of_a_broken_file_names_file_and_line(project: Path) -> None:
    bad = project / "winequality-red.csv"
    bad.write_text('"fixed acidity";"volatile acidity"\n7.4;0.7\n')
    result = run("ingest", "--source", str(bad))
    assert result.exit_code == 1
    assert "winequality-red.csv, line 1, column 'citric_acid': missing column(s)" in result.stderr


def test_generate_then_ingest_the_generated_folder(project: Path) -> None:
    result = run("generate", "--rows", "600", "--seed", "3", "--out-dir", "gen")
    assert result.exit_code == 0, result.output
    assert run("ingest", "--source", "gen").exit_code == 0
    assert run("validate").exit_code == 0
    source = json.loads((project / "data/raw/source.json").read_text())
    assert (source["kind"], source["rows"]) == ("path", 600)


def test_prepare_without_validated_data_says_what_to_run(project: Path) -> None:
    result = run("prepare")
    assert result.exit_code == 1
    assert "winequality data validate" in result.stderr


@pytest.mark.parametrize("command", ["ingest", "generate", "validate", "prepare"])
def test_every_command_documents_itself(command: str) -> None:
    result = CliRunner().invoke(app, ["data", command, "--help"])
    assert result.exit_code == 0
    assert "--" in result.stdout
