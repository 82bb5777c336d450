"""One label per (request id, row) on a real PostgreSQL server: the UNIQUE index holds whichever
store (replica) writes, and a database written before the index is migrated."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from tests.support.postgres import PostgresServer

from winequality.contract import schema
from winequality.feedback_store import FeedbackStore, LabelConflictError

pytestmark = pytest.mark.integration


def row() -> dict[str, object]:
    return {f.name: f.example for f in schema.FEATURES} | {schema.WINE_TYPE: "red"}


def test_two_stores_one_database_keep_one_label_a_row(postgres: PostgresServer) -> None:
    url = postgres.create_database("one_label")
    a, b = FeedbackStore(url), FeedbackStore(url)
    try:
        assert a.add([row()], [6], "rid", [0]) == 1
        assert b.add([row()], [6], "rid", [0]) == 0  # the same label, through another replica
        with pytest.raises(LabelConflictError, match="already labelled 6"):
            b.add([row()], [2], "rid", [0])

        # Racing replicas: exactly one insert wins, the others see the same label or a conflict.
        def label(q: int) -> str:
            try:
                return str((a if q % 2 else b).add([row()], [q], "race", [0]))
            except LabelConflictError:
                return "conflict"

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(label, [3, 4, 5, 6, 7, 8, 3, 4]))
        assert outcomes.count("1") == 1
        assert a.count() == 2
        assert a.add([row()], [5], None) == a.add([row()], [5], None) == 1  # no request id
    finally:
        a.close()
        b.close()


def test_a_database_with_repeated_labels_is_migrated(postgres: PostgresServer) -> None:
    url = postgres.create_database("old_labels")
    features = json.dumps(row(), sort_keys=True)
    with psycopg.connect(url) as conn:  # the schema before one label a row
        conn.execute(
            "CREATE TABLE feedback (id SERIAL PRIMARY KEY, received_at TEXT NOT NULL, "
            "request_id TEXT, row_index INTEGER, quality INTEGER NOT NULL, features TEXT NOT "
            "NULL, served_quality FLOAT, model_version TEXT)"
        )
        for rid, q in [("r", 6), ("r", 3), ("s", 5)]:
            conn.execute(
                "INSERT INTO feedback (received_at, request_id, row_index, quality, features) "
                "VALUES ('t', %s, 0, %s, %s)",
                (rid, q, features),
            )
    store = FeedbackStore(url)
    try:
        assert store.frame()[schema.TARGET].tolist() == [6, 5]
        with pytest.raises(LabelConflictError):
            store.add([row()], [3], "r", [0])
    finally:
        store.close()
    with psycopg.connect(url) as conn:
        aside = conn.execute("SELECT quality FROM feedback_relabelled").fetchall()
    assert aside == [(3,)]
