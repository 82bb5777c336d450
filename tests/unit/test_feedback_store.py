"""The feedback store (here on SQLite): durable, validated, read back in the data contract's
columns, recovering from a failed write; the served requests that labels are joined to."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from winequality.contract import schema
from winequality.contract.problems import FeatureError
from winequality.feedback_store import (
    FeedbackStore,
    LabelConflictError,
    ServedRequest,
    StoreError,
    read_feedback,
)


def example_row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {f.name: f.example for f in schema.FEATURES}
    row[schema.WINE_TYPE] = "red"
    return row | changes


def test_feedback_survives_reopening_and_reads_back_as_data_columns(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite")
    store.add([example_row(), example_row(wine_type="white", alcohol=12.5)], [5, 7], "req-1")
    store.close()
    reopened = FeedbackStore(tmp_path / "fb.sqlite")
    frame = reopened.frame()
    assert reopened.count() == 2
    assert list(frame.columns) == list(schema.DATA_COLUMNS)
    assert frame[schema.TARGET].tolist() == [5, 7]
    assert frame[schema.WINE_TYPE].tolist() == ["red", "white"]
    assert frame["alcohol"].iloc[1] == pytest.approx(12.5)


def test_empty_store_gives_an_empty_frame_with_the_right_columns(tmp_path: Path) -> None:
    frame = FeedbackStore(tmp_path / "fb.sqlite").frame()
    assert frame.empty
    assert list(frame.columns) == list(schema.DATA_COLUMNS)
    assert isinstance(frame, pd.DataFrame)


@pytest.mark.parametrize(
    ("row", "quality", "field", "reason"),
    [
        (example_row(ph=15.0), 5, "ph", "outside the physical range"),
        (example_row(wine_type="rose"), 5, "wine_type", "must be one of"),
        (example_row(alcohol="strong"), 5, "alcohol", "must be a number, got string"),
        ({k: v for k, v in example_row().items() if k != "density"}, 5, "density", "required"),
        (example_row(colour="red"), 5, "colour", "unknown field"),
        (example_row(), 11, "quality", "outside"),
        (example_row(), 5.5, "quality", "integer"),
        (example_row(), True, "quality", "integer"),
    ],
)
def test_bad_feedback_is_rejected_with_field_and_reason_and_nothing_is_stored(
    tmp_path: Path, row: dict[str, object], quality: object, field: str, reason: str
) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite")
    with pytest.raises(FeatureError) as info:
        store.add([row], [quality])  # type: ignore[list-item]
    assert any(p.field == field and reason in p.reason for p in info.value.problems), info.value
    assert store.count() == 0


def test_labels_are_stored_with_the_served_score_and_read_back_per_version(
    tmp_path: Path,
) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite")
    store.add([example_row()] * 2, [5, 6], "r1", [0, 1], served=[5.25, 5.5], model_version="1")
    store.add([example_row()], [7], "r2", [0], served=[6.0], model_version="2")
    store.add([example_row()], [4])  # labelled rows without a served score
    assert store.labelled("1", 10) == [(5.0, 5.25), (6.0, 5.5)]
    assert store.labelled("2", 10) == [(7.0, 6.0)]
    assert store.labelled("1", 1) == [(6.0, 5.5)]  # the latest ones
    assert store.count() == 4


def test_a_database_from_before_the_join_gains_the_columns_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL,"
        " request_id TEXT, row_index INTEGER, quality INTEGER NOT NULL, features TEXT NOT NULL)"
    )
    conn.execute(
        "INSERT INTO feedback (received_at, request_id, row_index, quality, features)"
        " VALUES ('2026-01-01', 'old', 0, 6, ?)",
        (json.dumps(example_row()),),
    )
    conn.commit()
    conn.close()
    store = FeedbackStore(path)
    store.add([example_row()], [5], "new", [0], served=[5.5], model_version="3")
    assert store.frame()[schema.TARGET].tolist() == [6, 5]
    assert store.labelled("3", 10) == [(5.0, 5.5)]
    store.close()
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(feedback)")}
    assert {"served_quality", "model_version"} <= columns


def test_a_write_that_fails_on_a_lock_rolls_back_and_the_next_one_works(tmp_path: Path) -> None:
    path = tmp_path / "fb.sqlite"
    store = FeedbackStore(path, timeout_s=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError, match="database is locked"):
        store.add([example_row()], [5], "locked")
    holder.execute("ROLLBACK")
    holder.close()
    # The failed transaction was rolled back: the same store takes the next write.
    assert store.add([example_row()], [6], "after") == 1
    assert store.add([example_row()], [7], "again") == 1
    assert store.frame()[schema.TARGET].tolist() == [6, 7]
    store.close()


def test_served_requests_read_back_by_id_the_latest_one_first_and_prune_by_age(
    tmp_path: Path,
) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite")
    rows = np.arange(2 * schema.N_MODEL_COLUMNS, dtype=np.float32).reshape(2, -1)
    scores = np.array([5.25, 6.5], dtype=np.float32)
    assert store.add_served([("r1", 100.0, ServedRequest(rows, scores, "3"))]) == 2
    assert store.add_served([("r2", 200.0, ServedRequest(rows[:1], None, None))]) == 1
    found = store.served("r1")
    assert found is not None
    assert np.array_equal(found.rows, rows)
    assert found.quality is not None
    assert found.quality.tolist() == [5.25, 6.5]
    assert found.model_version == "3"
    store.add_served([("r1", 300.0, ServedRequest(rows[1:], scores[1:], "4"))])
    latest = store.served("r1")
    assert latest is not None
    assert (len(latest.rows), latest.model_version) == (1, "4")  # a reused id: its latest request
    assert store.served("unknown") is None
    assert store.prune_served(before=250.0) == 2
    assert store.served("r2") is None
    assert store.served("r1") is not None
    store.close()


def test_reading_a_missing_embedded_store_gives_no_rows_and_creates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nowhere" / "fb.sqlite"
    frame = read_feedback(path)
    assert frame.empty
    assert list(frame.columns) == list(schema.DATA_COLUMNS)
    assert not path.parent.exists()


def test_an_unreachable_postgresql_store_raises_store_error_without_the_password() -> None:
    from winequality.process import free_port

    url = f"postgresql://wineq:hunter2@127.0.0.1:{free_port()}/wineq"
    with pytest.raises(StoreError) as info:
        FeedbackStore(url, timeout_s=1.0)
    message = str(info.value)
    assert "hunter2" not in message
    assert "postgresql://wineq:***@127.0.0.1" in message
    assert "cannot open" in message


def test_one_label_per_request_row_the_same_again_adds_nothing_another_is_refused(
    tmp_path: Path,
) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite")
    assert store.add([example_row()], [6], "req-1", [0]) == 1
    assert store.add([example_row()], [6], "req-1", [0]) == 0
    with pytest.raises(LabelConflictError, match="already labelled 6") as conflict:
        store.add([example_row()], [3], "req-1", [0])
    assert (conflict.value.index, conflict.value.stored, conflict.value.given) == (0, 6, 3)
    assert store.add([example_row()], [3], "req-1", [1]) == 1  # another wine of the request
    assert store.add([example_row()], [4], None) == 1  # labelled rows carry no request id
    assert store.add([example_row()], [4], None) == 1
    assert store.frame()[schema.TARGET].tolist() == [6, 3, 4, 4]


def test_the_unique_label_is_the_database_s_rule_not_only_the_store_s(tmp_path: Path) -> None:
    FeedbackStore(tmp_path / "fb.sqlite").close()
    with sqlite3.connect(tmp_path / "fb.sqlite") as conn:
        insert = (
            "INSERT INTO feedback (received_at, request_id, row_index, quality, features) "
            "VALUES ('t', 'r', 0, ?, '{}')"
        )
        conn.execute(insert, (5,))
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute(insert, (7,))


def test_an_old_file_with_repeated_labels_keeps_the_first_and_sets_the_others_aside(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:  # the schema before one label a row
        conn.execute(
            "CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT "
            "NULL, request_id TEXT, row_index INTEGER, quality INTEGER NOT NULL, features TEXT "
            "NOT NULL, served_quality FLOAT, model_version TEXT)"
        )
        features = json.dumps(example_row(), sort_keys=True)
        for rid, idx, q in [("r", 0, 6), ("r", 0, 3), ("r", 0, 8), ("r", 1, 5), (None, None, 4),
                            (None, None, 4)]:  # fmt: skip
            conn.execute(
                "INSERT INTO feedback (received_at, request_id, row_index, quality, features) "
                "VALUES ('t', ?, ?, ?, ?)",
                (rid, idx, q, features),
            )
    store = FeedbackStore(path)
    assert store.frame()[schema.TARGET].tolist() == [6, 5, 4, 4]
    with pytest.raises(LabelConflictError):
        store.add([example_row()], [3], "r", [0])
    store.close()
    with sqlite3.connect(path) as conn:
        aside = conn.execute("SELECT quality FROM feedback_relabelled ORDER BY id").fetchall()
    assert aside == [(3,), (8,)]
    FeedbackStore(path).close()  # reopening migrates nothing more
