"""Ingestion: layout errors name file, line and column; sources give raw rows with provenance."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from winequality.contract import schema
from winequality.data.ingest import (
    RAW_COLUMNS,
    SOURCE_FILE,
    SOURCE_LINE,
    IngestError,
    SourceOptions,
    ingest,
    read_raw_file,
    read_uci_file,
    to_numeric,
    wine_type_from_name,
    write_raw,
)

UCI_HEADER = ";".join(f'"{f.uci_name}"' for f in schema.FEATURES) + ';"quality"'
ROW = "7.4;0.7;0;1.9;0.076;11;34;0.9978;3.51;0.56;9.4;5"
ROW2 = "7.8;0.88;0;2.6;0.098;25;67;0.9968;3.2;0.68;9.8;6"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def options(tmp_path: Path) -> SourceOptions:
    return SourceOptions(
        cache_dir=tmp_path / "cache",
        timeout=2.0,
        synthetic_rows=300,
        seed=7,
        synthetic_dir=tmp_path / "raw" / "synthetic",
    )


def test_uci_layout_is_read_as_text_with_snake_case_columns_and_provenance(tmp_path: Path) -> None:
    path = write(tmp_path / "winequality-red.csv", f"{UCI_HEADER}\n{ROW}\n{ROW2}\n")
    raw = read_raw_file(path)
    assert list(raw.columns) == list(RAW_COLUMNS)
    assert raw["fixed_acidity"].tolist() == ["7.4", "7.8"]
    assert raw[schema.WINE_TYPE].tolist() == ["red", "red"]
    assert raw[SOURCE_LINE].tolist() == [2, 3]
    assert raw[SOURCE_FILE].iloc[0].endswith("winequality-red.csv")


def test_snake_case_header_and_wine_type_column_are_accepted(tmp_path: Path) -> None:
    header = ";".join([*schema.FEATURE_NAMES, "quality", "wine_type"])
    path = write(tmp_path / "mixed.csv", f"{header}\n{ROW};white\n{ROW2};red\n")
    raw = read_raw_file(path)
    assert raw[schema.WINE_TYPE].tolist() == ["white", "red"]


def test_empty_file_is_rejected_with_its_name(tmp_path: Path) -> None:
    path = write(tmp_path / "winequality-red.csv", "")
    with pytest.raises(IngestError, match=r"winequality-red\.csv, line 1: the file is empty"):
        read_raw_file(path)


def test_header_only_file_has_no_data_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "winequality-red.csv", UCI_HEADER + "\n")
    with pytest.raises(IngestError, match="line 2: the file has a header but no data rows"):
        read_raw_file(path)


def test_comma_separated_file_is_rejected_at_line_one(tmp_path: Path) -> None:
    header = ",".join(f'"{f.uci_name}"' for f in schema.FEATURES) + ',"quality"'
    path = write(tmp_path / "winequality-red.csv", f"{header}\n{ROW.replace(';', ',')}\n")
    with pytest.raises(IngestError) as err:
        read_raw_file(path)
    assert err.value.line == 1
    assert "separated by ','" in str(err.value)
    assert "winequality-red.csv" in str(err.value)


def test_comma_separated_data_under_a_semicolon_header_names_line_and_column(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "winequality-red.csv", f"{UCI_HEADER}\n{ROW}\n{ROW.replace(';', ',')}\n"
    )
    with pytest.raises(IngestError) as err:
        read_raw_file(path)
    assert (err.value.line, err.value.column) == (3, "fixed_acidity")


def test_truncated_last_line_is_reported_as_truncated(tmp_path: Path) -> None:
    cut = ROW2[: ROW2.index(";0.68")]  # the file stops in the middle of the last line
    path = write(tmp_path / "winequality-red.csv", f"{UCI_HEADER}\n{ROW}\n{cut}")
    with pytest.raises(IngestError, match="truncated") as err:
        read_raw_file(path)
    assert err.value.line == 3
    assert err.value.column == "sulphates"


def test_last_line_cut_after_a_separator_is_reported_as_truncated(tmp_path: Path) -> None:
    cut = ROW2[: ROW2.rindex(";") + 1]
    path = write(tmp_path / "winequality-red.csv", f"{UCI_HEADER}\n{ROW}\n{cut}")
    with pytest.raises(IngestError, match="truncated") as err:
        read_raw_file(path)
    assert (err.value.line, err.value.column) == (3, "quality")


def test_missing_column_is_named(tmp_path: Path) -> None:
    header = UCI_HEADER.replace(';"pH"', "")
    row = "7.4;0.7;0;1.9;0.076;11;34;0.9978;0.56;9.4;5"
    path = write(tmp_path / "winequality-white.csv", f"{header}\n{row}\n")
    with pytest.raises(IngestError, match=r"missing column\(s\) \['ph'\]") as err:
        read_raw_file(path)
    assert (err.value.line, err.value.column) == (1, "ph")


def test_unexpected_column_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "winequality-white.csv", f'{UCI_HEADER};"colour"\n{ROW};3\n')
    with pytest.raises(IngestError, match="unexpected column 'colour'") as err:
        read_raw_file(path)
    assert (err.value.line, err.value.column) == (1, "colour")


def test_duplicated_column_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "winequality-white.csv", f'{UCI_HEADER};"alcohol"\n{ROW};9\n')
    with pytest.raises(IngestError, match="appears twice") as err:
        read_raw_file(path)
    assert err.value.column == "alcohol"


def test_row_with_an_extra_field_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "winequality-red.csv", f"{UCI_HEADER}\n{ROW}\n{ROW2};42\n{ROW}\n")
    with pytest.raises(IngestError, match="13 fields where the header has 12") as err:
        read_raw_file(path)
    assert (err.value.line, err.value.column) == (3, "field 13")


def test_row_with_a_missing_field_in_the_middle_is_not_called_truncated(tmp_path: Path) -> None:
    short = ROW[: ROW.rindex(";")]
    path = write(tmp_path / "winequality-red.csv", f"{UCI_HEADER}\n{short}\n{ROW2}\n")
    with pytest.raises(IngestError) as err:
        read_raw_file(path)
    assert (err.value.line, err.value.column) == (2, "quality")
    assert "truncated" not in str(err.value)


def test_wine_type_is_required_when_the_name_does_not_tell_it(tmp_path: Path) -> None:
    path = write(tmp_path / "wines.csv", f"{UCI_HEADER}\n{ROW}\n")
    with pytest.raises(IngestError, match=r"missing column\(s\) \['wine_type'\]"):
        read_raw_file(path)


def test_wine_type_from_file_name() -> None:
    assert wine_type_from_name("winequality-white.csv") == "white"
    assert wine_type_from_name("RED_2024.csv") == "red"
    assert wine_type_from_name("red-and-white.csv") is None
    assert wine_type_from_name("wines.csv") is None


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "winequality-red.csv"
    path.write_bytes(f"{UCI_HEADER}\n{ROW}\n".encode() + b"7.4;\xff\n")
    with pytest.raises(IngestError, match="not UTF-8") as err:
        read_raw_file(path)
    assert err.value.line == 3


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path: Path) -> None:
    path = write(tmp_path / "winequality-red.csv", f"{UCI_HEADER}\n{ROW}\n\n{ROW2}\n\n")
    assert read_raw_file(path)[SOURCE_LINE].tolist() == [2, 4]


def test_to_numeric_names_the_first_non_numeric_cell(tmp_path: Path) -> None:
    bad = ROW2.replace("9.8", "9,8")
    path = write(tmp_path / "winequality-red.csv", f"{UCI_HEADER}\n{ROW}\n{bad}\n")
    with pytest.raises(IngestError, match="expected a number, got '9,8'") as err:
        read_uci_file(path, "red")
    assert (err.value.line, err.value.column) == (3, "alcohol")


def test_to_numeric_rejects_a_fractional_quality(tmp_path: Path) -> None:
    path = write(tmp_path / "winequality-red.csv", f"{UCI_HEADER}\n{ROW[:-1]}5.5\n")
    with pytest.raises(IngestError, match=r"expected an integer, got '5\.5'"):
        to_numeric(read_raw_file(path))


def test_read_uci_dir_matches_pandas_on_the_real_files(
    shared_data_dir: Path, real_wines: pd.DataFrame
) -> None:
    expected = pd.concat(
        [
            pd.read_csv(shared_data_dir / f"winequality-{t}.csv", sep=";")
            .rename(columns=schema.UCI_TO_SNAKE)
            .assign(wine_type=t)
            for t in schema.WINE_TYPES
        ],
        ignore_index=True,
    ).loc[:, list(schema.DATA_COLUMNS)]
    assert list(real_wines.columns) == list(schema.DATA_COLUMNS)
    assert len(real_wines) == 1599 + 4898
    assert real_wines[schema.TARGET].dtype == np.int64
    assert (real_wines[list(schema.FEATURE_NAMES)].dtypes == np.float64).all()
    pd.testing.assert_frame_equal(real_wines, expected, check_dtype=False)


def test_folder_source_reads_both_files_with_hashes(shared_data_dir: Path, tmp_path: Path) -> None:
    got = ingest(str(shared_data_dir), options(tmp_path))
    assert got.kind == "path"
    assert len(got.frame) == 6497
    assert got.frame[schema.WINE_TYPE].value_counts().to_dict() == {"white": 4898, "red": 1599}
    hashes = {Path(k).name: v for k, v in got.files.items()}
    # Published in the shared data's README.
    assert hashes["winequality-red.csv"].startswith("4a402cf041b0")
    assert hashes["winequality-white.csv"].startswith("76c3f809815c")
    assert got.reason is None


def test_folder_without_both_files_is_rejected(tmp_path: Path) -> None:
    write(tmp_path / "winequality-red.csv", f"{UCI_HEADER}\n{ROW}\n")
    with pytest.raises(IngestError, match=r"winequality-white\.csv"):
        ingest(str(tmp_path), options(tmp_path))


def test_single_file_source_takes_the_wine_type_from_its_name(tmp_path: Path) -> None:
    path = write(tmp_path / "my-white-wines.csv", f"{UCI_HEADER}\n{ROW}\n")
    got = ingest(str(path), options(tmp_path))
    assert got.kind == "path"
    assert got.frame[schema.WINE_TYPE].tolist() == ["white"]


def test_unknown_source_is_explained(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no such file or folder"):
        ingest(str(tmp_path / "nope"), options(tmp_path))


def test_local_uci_zip_is_extracted_into_the_cache(shared_data_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "wine+quality.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("winequality-red.csv", "winequality-white.csv"):
            z.write(shared_data_dir / name, name)
        z.writestr("winequality.names", "description")
    got = ingest(str(archive), options(tmp_path))
    assert len(got.frame) == 6497
    assert len(got.files) == 3  # the archive and both members
    assert all(str(tmp_path / "cache") in str(f) for f in got.frame[SOURCE_FILE].unique())


def test_zip_without_the_uci_files_is_rejected(tmp_path: Path) -> None:
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "nothing here")
    with pytest.raises(IngestError, match="lacks"):
        ingest(str(archive), options(tmp_path))


def test_synthetic_source_goes_through_the_uci_files(tmp_path: Path) -> None:
    opts = options(tmp_path)
    got = ingest("synthetic", opts)
    assert got.kind == "synthetic"
    assert len(got.frame) == 300
    assert sorted(p.name for p in opts.synthetic_dir.iterdir()) == [
        "winequality-red.csv",
        "winequality-white.csv",
    ]
    assert got.frame[SOURCE_LINE].min() == 2


def test_write_raw_round_trips_the_text_and_records_the_source(
    shared_data_dir: Path, tmp_path: Path
) -> None:
    got = ingest(str(shared_data_dir), options(tmp_path))
    wines, meta = write_raw(got, tmp_path / "raw", requested=str(shared_data_dir))
    back = pd.read_csv(wines, dtype="str")
    assert list(back.columns) == list(RAW_COLUMNS)
    assert back["density"].iloc[0] == "0.9978"
    provenance = json.loads(meta.read_text())
    assert provenance["kind"] == "path"
    assert provenance["rows"] == 6497
    assert provenance["reason"] is None
    assert len(provenance["sha256"]) == 2


def test_windows_line_endings_are_read_like_unix_ones(tmp_path: Path) -> None:
    path = tmp_path / "winequality-red.csv"
    path.write_bytes(f"{UCI_HEADER}\r\n{ROW}\r\n{ROW2}\r\n".encode())
    raw = read_raw_file(path)
    assert raw["quality"].tolist() == ["5", "6"]
    assert raw[SOURCE_LINE].tolist() == [2, 3]
