"""Validation of the raw rows against the contract in :mod:`winequality.contract.schema` (pandera).

One pandera schema, derived from ``schema.FEATURES``, judges every cell: missing and unexpected
columns, values that are not numbers, missing values, values outside the physical ranges, a
fractional or out-of-scale quality, unknown wine types. Each problem is reported with the source
file and line the row came from (kept by ingestion), so the user can find and fix it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from winequality.contract import schema
from winequality.contract.problems import Problem
from winequality.data.ingest import SOURCE_FILE, SOURCE_LINE, display_name

Policy = Literal["fail", "quarantine"]
REASON: Final = "reason"
"""Column of ``quarantine.csv`` that says why a row was set aside."""

_INTEGER_CHECK: Final = "integer"


class ValidationInputError(ValueError):
    """The input file cannot be read as a table at all."""


def build_schema() -> pa.DataFrameSchema:
    """The pandera schema of a raw data set, derived from ``schema.FEATURES``.

    Text is coerced to numbers; the quality is checked as a float that must be whole, because
    coercing text straight to an integer would silently truncate ``5.5`` to ``5``.
    """
    columns: dict[str, pa.Column] = {
        f.name: pa.Column(
            "float64",
            checks=pa.Check.in_range(f.minimum, f.maximum),
            nullable=False,
            coerce=True,
        )
        for f in schema.FEATURES
    }
    columns[schema.WINE_TYPE] = pa.Column(
        "str", checks=pa.Check.isin(list(schema.WINE_TYPES)), nullable=False
    )
    columns[schema.TARGET] = pa.Column(
        "float64",
        checks=[
            pa.Check.in_range(schema.QUALITY_MIN, schema.QUALITY_MAX),
            pa.Check(lambda s: s == s.round(), name=_INTEGER_CHECK),
        ],
        nullable=False,
        coerce=True,
    )
    columns[SOURCE_FILE] = pa.Column("str", required=False, nullable=True)
    columns[SOURCE_LINE] = pa.Column("int64", required=False, coerce=True)
    return pa.DataFrameSchema(columns, strict=True, name="wines")


def describe(problem: Problem) -> str:
    """``file, line N, column 'c': reason`` of a cell problem (``loc`` is (file, line))."""
    source_file, line = problem.loc
    return f"{source_file}, line {line}, column {problem.field!r}: {problem.reason}"


def problem_json(problem: Problem) -> dict[str, Any]:
    """A cell problem as the validation report lists it."""
    source_file, line = problem.loc
    return {
        "row": problem.row,
        "source_file": source_file,
        "line": line,
        "column": problem.field,
        "value": problem.value,
        "reason": problem.reason,
    }


@dataclass(frozen=True)
class ValidationResult:
    valid: pd.DataFrame
    """Good rows, columns exactly ``schema.DATA_COLUMNS`` with their final dtypes."""
    invalid: pd.DataFrame
    """Bad rows as read (text), provenance included, plus a ``reason`` column."""
    problems: list[Problem] = field(default_factory=list)
    """Cell-level problems, in row order."""
    table_problems: list[str] = field(default_factory=list)
    """Problems of the table as a whole (missing or unexpected columns): nothing is usable."""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.table_problems


def read_raw_table(path: Path) -> pd.DataFrame:
    """A raw CSV (``data/raw/wines.csv``) with every cell as text and provenance columns.

    A table without provenance (written by hand) gets the file name and its own line numbers.
    """
    label = display_name(path)
    if not path.is_file():
        raise ValidationInputError(f"{label}: no such file (run `winequality data ingest` first)")
    try:
        frame = pd.read_csv(path, dtype="str")
    except pd.errors.EmptyDataError as e:
        raise ValidationInputError(f"{label}: the file is empty") from e
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValidationInputError(f"{label}: not a readable CSV table: {e}") from e
    if SOURCE_FILE not in frame.columns:
        frame[SOURCE_FILE] = label
    if SOURCE_LINE not in frame.columns:
        frame[SOURCE_LINE] = (frame.index + 2).astype("int64").astype("str")  # header is line 1
    return frame


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _reason(column: str, check: str, value: str | None) -> str:
    feature = schema.FEATURES_BY_NAME.get(column)
    if check.startswith("coerce_dtype"):
        reason = f"not a number: {value!r}"
    elif check == "not_nullable":
        reason = "missing value"
    elif check == _INTEGER_CHECK:
        reason = f"quality must be a whole number, got {value}"
    elif check.startswith("isin"):
        reason = f"unknown wine type {value!r}; expected one of {list(schema.WINE_TYPES)}"
    elif check.startswith("in_range") and column == schema.TARGET:
        reason = f"quality {value} is outside {schema.QUALITY_MIN}..{schema.QUALITY_MAX}"
    elif check.startswith("in_range") and feature is not None:
        reason = (
            f"{value} is outside the physical range [{feature.minimum:g}, "
            f"{feature.maximum:g}] {feature.unit}"
        )
    else:
        reason = f"failed {check} with {value!r}"
    return reason


def _failures(pandera_schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame | None:
    try:
        pandera_schema.validate(frame, lazy=True)
    except SchemaErrors as e:
        cases: pd.DataFrame = e.failure_cases
        return cases
    return None


def _table_problem(check: str, case: Any) -> str:
    if check == "column_in_schema":
        return f"unexpected column {case!r}; expected exactly {list(schema.DATA_COLUMNS)}"
    if check == "column_in_dataframe":
        return f"missing column {case!r}"
    return f"{check}: {case}"


def validate_frame(raw: pd.DataFrame) -> ValidationResult:
    """Check every row of a raw frame (text values, provenance columns) against the schema."""
    raw = raw.reset_index(drop=True)
    for column in (SOURCE_FILE, SOURCE_LINE):
        if column not in raw.columns:
            raw[column] = "<input>" if column == SOURCE_FILE else (raw.index + 1).astype("int64")
    pandera_schema = build_schema()
    cases = _failures(pandera_schema, raw)
    if cases is None:
        return ValidationResult(valid=finalise(raw), invalid=_empty_invalid(raw))

    table = cases[cases["index"].isna()]
    table_problems = [
        _table_problem(str(c), v)
        for c, v in zip(table["check"], table["failure_case"], strict=True)
        if not str(c).startswith("in_range")  # a range check on uncoerced text: see below
    ]
    cells = cases[cases["index"].notna()]
    coerce = cells[cells["check"].astype("str").str.startswith("coerce_dtype")]
    non_numeric = {(int(i), str(c)) for i, c in zip(coerce["index"], coerce["column"], strict=True)}
    if non_numeric:
        # Columns that failed to coerce skip their range checks; blank the offending cells and
        # validate again so the other rows are still judged (their blanks are not re-reported).
        blanked = raw.copy()
        for i, c in non_numeric:
            blanked.loc[i, c] = None
        again = _failures(pandera_schema, blanked)
        second = again[again["index"].notna()] if again is not None else cases.iloc[0:0]
        second = second[~second["check"].astype("str").str.startswith("coerce_dtype")]
        cells = pd.concat([coerce, second], ignore_index=True)
    problems: list[Problem] = []
    seen: set[tuple[int, str]] = set()
    for column, check, case, index in zip(
        cells["column"], cells["check"], cells["failure_case"], cells["index"], strict=True
    ):
        i, c, check_name = int(index), str(column), str(check)
        if check_name.startswith("dtype("):
            continue  # restates the coercion failure
        if check_name == "not_nullable" and (i, c) in non_numeric:
            continue
        if (i, c) in seen and check_name == _INTEGER_CHECK:
            continue  # an out-of-range quality need not also be called fractional
        seen.add((i, c))
        value = _text(raw.at[i, c]) if c in raw.columns else _text(case)
        problems.append(
            Problem(
                row=i,
                field=c,
                reason=_reason(c, check_name, value),
                kind=check_name,
                loc=(str(raw.at[i, SOURCE_FILE]), int(str(raw.at[i, SOURCE_LINE]))),
                value=value,
            )
        )
    problems.sort(key=lambda p: (p.row or 0, _column_order(p.field)))
    if table_problems:
        return ValidationResult(
            valid=_empty_valid(),
            invalid=_empty_invalid(raw),
            problems=problems,
            table_problems=table_problems,
        )
    bad_rows = sorted({p.row for p in problems if p.row is not None})
    reasons: dict[int | None, list[str]] = {}
    for p in problems:
        reasons.setdefault(p.row, []).append(f"{p.field}: {p.reason}")
    invalid = raw.loc[bad_rows].copy()
    invalid[REASON] = ["; ".join(reasons[i]) for i in bad_rows]
    good = raw.drop(index=bad_rows)
    return ValidationResult(
        valid=finalise(good), invalid=invalid.reset_index(drop=True), problems=problems
    )


_ORDER: Final[Mapping[str, int]] = {c: i for i, c in enumerate(schema.DATA_COLUMNS)}


def _column_order(column: str | None) -> int:
    return _ORDER.get(column or "", len(_ORDER))


def finalise(rows: pd.DataFrame) -> pd.DataFrame:
    """Valid rows -> exactly ``schema.DATA_COLUMNS``: float measurements, str type, int quality."""
    out = pd.DataFrame(
        {name: pd.to_numeric(rows[name]).astype("float64") for name in schema.FEATURE_NAMES}
    )
    out[schema.WINE_TYPE] = rows[schema.WINE_TYPE].astype("str")
    out[schema.TARGET] = pd.to_numeric(rows[schema.TARGET]).round().astype("int64")
    return out.loc[:, list(schema.DATA_COLUMNS)].reset_index(drop=True)


def _empty_valid() -> pd.DataFrame:
    return finalise(pd.DataFrame({c: pd.Series([], dtype="str") for c in schema.DATA_COLUMNS}))


def _empty_invalid(raw: pd.DataFrame) -> pd.DataFrame:
    empty = raw.iloc[0:0].copy()
    empty[REASON] = pd.Series([], dtype="str")
    return empty


def build_report(
    result: ValidationResult, source: str, policy: Policy, rows: int
) -> dict[str, Any]:
    """The JSON report: counts, problems per column and every problem with its location."""
    per_column: dict[str, int] = {}
    for p in result.problems:
        column = p.field or ""
        per_column[column] = per_column.get(column, 0) + 1
    passed = not result.table_problems and (
        not result.problems or (policy == "quarantine" and len(result.valid) > 0)
    )
    return {
        "input": source,
        "policy": policy,
        "passed": passed,
        "rows": rows,
        "valid_rows": len(result.valid),
        "invalid_rows": len(result.invalid) if not result.table_problems else rows,
        "quarantined_rows": len(result.invalid) if policy == "quarantine" and passed else 0,
        "table_problems": result.table_problems,
        "problems_per_column": per_column,
        "problems": [problem_json(p) for p in result.problems],
    }


def summary_lines(result: ValidationResult, limit: int = 10) -> Sequence[str]:
    """The first problems, readable, for the terminal."""
    lines = list(result.table_problems)
    lines += [describe(p) for p in result.problems[:limit]]
    hidden = len(result.problems) - limit
    if hidden > 0:
        lines.append(f"... and {hidden} more problem(s)")
    return lines
