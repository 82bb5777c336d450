"""The simulator's traffic and its narration of the loop (no services needed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from winequality.contract import schema
from winequality.simulate import (
    Narrator,
    Observation,
    SimulationError,
    degraded_labels,
    load_urls,
    realized_gauges,
    shift_rows,
    traffic,
)


@pytest.fixture
def test_split(tmp_path: Path, real_wines: pd.DataFrame) -> Path:
    path = tmp_path / "test.parquet"
    real_wines[real_wines[schema.WINE_TYPE] == "red"].iloc[:300].to_parquet(path)
    return path


def test_drift_traffic_is_real_white_wines_and_skip_gives_fresh_rows(
    shared_data_dir: Path, test_split: Path
) -> None:
    first = traffic("drift", 200, data=shared_data_dir, test_split=test_split, seed=1)
    second = traffic("drift", 200, data=shared_data_dir, test_split=test_split, seed=1, skip=200)
    assert (first[schema.WINE_TYPE] == "white").all()
    assert list(first.columns) == list(schema.DATA_COLUMNS)
    assert first.merge(second, how="inner").shape[0] < 5  # only UCI duplicates can coincide


def test_drift_without_data_uses_synthetic_white_wines(test_split: Path) -> None:
    rows = traffic("drift", 150, data=None, test_split=test_split, seed=2)
    assert len(rows) == 150
    assert (rows[schema.WINE_TYPE] == "white").all()


def test_stable_traffic_is_the_held_out_split(test_split: Path) -> None:
    rows = traffic("stable", 100, data=None, test_split=test_split)
    held_out = pd.read_parquet(test_split)
    assert rows.merge(held_out.drop_duplicates(), how="inner").shape[0] == 100


def test_stable_traffic_with_the_uci_folder_is_still_the_mixed_held_out_split(
    tmp_path: Path, real_wines: pd.DataFrame, shared_data_dir: Path
) -> None:
    mixed = tmp_path / "mixed.parquet"
    real_wines.drop_duplicates().sample(500, random_state=4).to_parquet(mixed)
    rows = traffic("stable", 400, data=shared_data_dir, test_split=mixed)
    assert set(rows[schema.WINE_TYPE]) == {"red", "white"}
    assert rows.merge(pd.read_parquet(mixed), how="inner").shape[0] == 400


def test_shifted_drift_raises_alcohol_within_physical_range(test_split: Path) -> None:
    base = pd.read_parquet(test_split)
    rows = traffic("drift", 100, data=None, test_split=test_split, drift_kind="shift")
    assert rows["alcohol"].mean() > base["alcohol"].mean() + 1.5
    assert rows["alcohol"].max() <= schema.FEATURES_BY_NAME["alcohol"].maximum
    shifted = shift_rows(base.assign(alcohol=24.5))
    assert shifted["alcohol"].max() == schema.FEATURES_BY_NAME["alcohol"].maximum


def test_asking_for_more_rows_than_exist_is_an_error(test_split: Path) -> None:
    with pytest.raises(SimulationError, match="only 300 stable rows"):
        traffic("stable", 301, data=None, test_split=test_split)
    with pytest.raises(SimulationError, match="no held-out split"):
        traffic("stable", 10, data=None, test_split=test_split.with_name("missing.parquet"))


def test_no_stack_and_no_urls_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SimulationError, match="winequality up"):
        load_urls(tmp_path, {"app": None})
    found = load_urls(tmp_path, {"app": "http://a/", "detector": "http://d"})
    assert found == {"app": "http://a", "detector": "http://d"}


def test_narrator_records_each_milestone_once() -> None:
    lines: list[str] = []
    n = Narrator(0.0, lines.append)
    n.baseline(Observation(drift_found=False, served_version="1", runs=[]))
    n.update(Observation(drift_found=True, windows_tested=2, served_version="1"))
    n.update(Observation(drift_found=True, alert="pending", served_version="1"))
    n.update(Observation(drift_found=True, alert="firing", served_version="1"))
    run = {"pid": 5, "reason": "WineQualityDrift", "finished_at": None}
    n.update(Observation(drift_found=True, alert="firing", runs=[run], served_version="1"))
    assert not n.loop_closed()
    done = run | {"finished_at": "t", "exit_code": 0, "result": {"promoted": True, "version": "2"}}
    n.update(Observation(drift_found=False, runs=[done], served_version="1"))
    assert not n.loop_closed()  # promoted but not served yet
    n.update(Observation(drift_found=False, runs=[done], served_version=None))  # app missed
    n.update(Observation(drift_found=False, runs=[done], served_version="2"))
    t = n.t
    assert n.loop_closed()
    assert t.alert_seen
    assert t.retraining_runs == 1
    assert t.initial_version == "1"
    assert t.served_version == "2"
    for milestone in (t.first_drift, t.alert_firing, t.retrain_started, t.retrain_finished,
                      t.new_version_served, t.drift_reset):  # fmt: skip
        assert milestone is not None
    assert sum("retraining started" in line for line in lines) == 1
    assert any("the app now serves v2 (was v1)" in line for line in lines)


def test_runs_from_before_the_simulation_are_not_counted() -> None:
    n = Narrator(0.0, lambda _: None)
    old = {"pid": 1, "reason": "x", "finished_at": "t", "result": {"promoted": True}}
    n.baseline(Observation(runs=[old], served_version="2"))
    n.update(Observation(runs=[old], served_version="2"))
    assert n.t.retraining_runs == 0
    assert n.t.retrain_started is None
    assert not n.loop_closed()


def test_degraded_labels_raise_about_half_the_qualities_by_one_within_the_scale(
    test_split: Path,
) -> None:
    rows = traffic("degraded", 300, data=None, test_split=test_split, seed=3)
    true = rows[schema.TARGET].astype(int)
    labels = degraded_labels(rows[schema.TARGET], 3)
    bumps = [q - t for q, t in zip(labels, true, strict=True)]
    assert set(bumps) <= {0, 1}
    assert 0.4 < sum(bumps) / len(bumps) < 0.6  # a +0.5 shift on average
    assert all(isinstance(q, int) for q in labels)
    assert labels == degraded_labels(rows[schema.TARGET], 3)  # seeded
    assert degraded_labels(pd.Series([10, 10, 10, 10]), 0) == [10, 10, 10, 10]
    # The wines are the stable scenario's: only the labels change.
    assert rows.equals(traffic("stable", 300, data=None, test_split=test_split, seed=3))


def test_realized_gauges_are_read_from_the_app_exposition() -> None:
    text = "\n".join(
        [
            "# HELP winequality_realized_rmse RMSE of the served scores against the labels.",
            'winequality_realized_rmse{model_version="3"} 0.91',
            'winequality_realized_labels{model_version="3"} 240.0',
            'winequality_champion_test_rmse{model_version="3"} 0.73',
            'winequality_realized_degraded{model_version="3"} 1.0',
            'winequality_realized_bias_z{model_version="3"} NaN',
            'winequality_model_info{name="wine-quality",version="3"} 1.0',
        ]
    )
    degraded, gauges = realized_gauges(text)
    assert degraded is True
    assert gauges == {
        "realized_rmse": 0.91,
        "realized_labels": 240.0,
        "champion_test_rmse": 0.73,
    }
    assert realized_gauges("") == (None, {})


def test_narrator_reports_the_degraded_decision_and_its_alert() -> None:
    lines: list[str] = []
    n = Narrator(0.0, lines.append, "WineQualityDegraded")
    n.baseline(Observation(degraded=False, served_version="1"))
    realized = {"realized_rmse": 0.95, "champion_test_rmse": 0.73, "realized_labels": 200.0}
    n.update(Observation(degraded=True, realized=realized, served_version="1"))
    n.update(Observation(degraded=True, alert="firing", realized=realized, served_version="1"))
    n.update(Observation(degraded=False, served_version="2"))
    t = n.t
    assert t.first_degraded is not None
    assert t.alert_seen
    assert t.realized == realized
    assert t.realized_when_degraded == realized
    assert any("winequality_realized_degraded=1 (RMSE 0.950 vs test 0.730" in x for x in lines)
    assert any("alert WineQualityDegraded firing" in line for line in lines)
