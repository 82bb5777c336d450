"""Validation: every kind of bad cell is found and located; good rows keep their final dtypes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from winequality.contract import schema
from winequality.data.ingest import RAW_COLUMNS, SOURCE_FILE, SOURCE_LINE, read_raw_dir
from winequality.data.validate import (
    REASON,
    ValidationInputError,
    build_report,
    read_raw_table,
    validate_frame,
)


@pytest.fixture(scope="module")
def raw(shared_data_dir: Path) -> pd.DataFrame:
    return read_raw_dir(shared_data_dir)


def spoil(raw: pd.DataFrame, row: int, column: str, value: str | None) -> pd.DataFrame:
    out = raw.copy()
    out.loc[row, column] = value
    return out


def test_the_real_data_passes_with_final_dtypes(raw: pd.DataFrame) -> None:
    result = validate_frame(raw)
    assert result.ok
    assert len(result.valid) == 6497
    assert list(result.valid.columns) == list(schema.DATA_COLUMNS)
    assert (result.valid[list(schema.FEATURE_NAMES)].dtypes == np.float64).all()
    assert result.valid[schema.TARGET].dtype == np.int64
    assert pd.api.types.is_string_dtype(result.valid[schema.WINE_TYPE])
    assert result.invalid.empty


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("alcohol", "abc", "not a number: 'abc'"),
        ("density", "0,9978", "not a number: '0,9978'"),
        ("alcohol", None, "missing value"),
        ("ph", "15", "15 is outside the physical range [0, 14] pH"),
        ("chlorides", "-0.1", "-0.1 is outside the physical range [0, 1]"),
        ("quality", "11", "quality 11 is outside 0..10"),
        ("quality", "5.5", "quality must be a whole number, got 5.5"),
        ("quality", "x", "not a number: 'x'"),
        ("wine_type", "rose", "unknown wine type 'rose'"),
        ("wine_type", None, "missing value"),
    ],
)
def test_bad_cell_is_reported_with_file_line_and_column(
    raw: pd.DataFrame, column: str, value: str | None, reason: str
) -> None:
    row = 1700  # a white wine: line 1700 - 1599 + 1 of the white file
    result = validate_frame(spoil(raw, row, column, value))
    assert not result.ok
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert problem.field == column
    assert reason in problem.reason
    source_file, line = problem.loc
    assert str(source_file).endswith("winequality-white.csv")
    assert line == row - 1599 + 2
    assert len(result.valid) == 6496
    assert result.invalid[SOURCE_LINE].tolist() == [line]
    assert reason in result.invalid[REASON].iloc[0]


def test_several_problems_in_several_rows_are_all_found(raw: pd.DataFrame) -> None:
    bad = spoil(raw, 3, "alcohol", "abc")
    bad = spoil(bad, 3, "ph", "-1")
    bad = spoil(bad, 10, "sulphates", "9")
    bad = spoil(bad, 20, "alcohol", "11.0.1")
    result = validate_frame(bad)
    located = [(p.loc[1], p.field) for p in result.problems]
    assert located == [(5, "ph"), (5, "alcohol"), (12, "sulphates"), (22, "alcohol")]
    assert len(result.invalid) == 3
    assert "ph:" in result.invalid[REASON].iloc[0]
    assert "alcohol:" in result.invalid[REASON].iloc[0]


def test_missing_and_unexpected_columns_make_the_table_unusable(raw: pd.DataFrame) -> None:
    result = validate_frame(raw.drop(columns=["ph"]).assign(colour="red"))
    assert not result.ok
    assert any("missing column 'ph'" in p for p in result.table_problems)
    assert any("unexpected column 'colour'" in p for p in result.table_problems)
    assert result.valid.empty
    assert list(result.valid.columns) == list(schema.DATA_COLUMNS)


def test_report_counts_and_lists_every_problem(raw: pd.DataFrame) -> None:
    bad = spoil(spoil(raw, 0, "alcohol", "99"), 1, "alcohol", "98")
    result = validate_frame(bad)
    report = build_report(result, "wines.csv", "fail", len(bad))
    assert report["passed"] is False
    assert report["invalid_rows"] == 2
    assert report["problems_per_column"] == {"alcohol": 2}
    assert [p["line"] for p in report["problems"]] == [2, 3]
    assert report["problems"][0]["value"] == "99"
    quarantined = build_report(result, "wines.csv", "quarantine", len(bad))
    assert quarantined["passed"] is True
    assert quarantined["quarantined_rows"] == 2


def test_table_without_provenance_uses_its_own_lines(tmp_path: Path, raw: pd.DataFrame) -> None:
    path = tmp_path / "hand-made.csv"
    spoil(raw.head(5), 2, "ph", "20").drop(columns=[SOURCE_FILE, SOURCE_LINE]).to_csv(
        path, index=False
    )
    result = validate_frame(read_raw_table(path))
    assert [(str(p.loc[0]).endswith("hand-made.csv"), p.loc[1]) for p in result.problems] == [
        (True, 4)
    ]


def test_raw_table_keeps_the_text_of_every_cell(tmp_path: Path, raw: pd.DataFrame) -> None:
    path = tmp_path / "wines.csv"
    raw.head(3).to_csv(path, index=False)
    back = read_raw_table(path)
    assert list(back.columns) == list(RAW_COLUMNS)
    assert back["density"].tolist() == raw["density"].head(3).tolist()


def test_empty_or_absent_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationInputError, match="no such file"):
        read_raw_table(tmp_path / "absent.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValidationInputError, match="empty"):
        read_raw_table(empty)
