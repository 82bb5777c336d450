from __future__ import annotations

import pytest

from winequality.training.gate import Candidate, decide

BASELINE = 0.88


def test_first_model_is_promoted_when_it_beats_the_mean_predictor() -> None:
    d = decide("rmse", Candidate("1", "r1", 0.73), None, BASELINE)
    assert d.promoted
    assert d.champion_after == "1"
    assert "first model" in d.reason


def test_first_model_no_better_than_the_mean_is_refused() -> None:
    d = decide("rmse", Candidate("1", "r1", 0.90), None, BASELINE)
    assert d.outcome == "refused"
    assert d.champion_after is None
    assert "does not beat the mean predictor (0.8800)" in d.reason


def test_better_challenger_replaces_the_champion() -> None:
    d = decide("rmse", Candidate("2", "r2", 0.70), Candidate("1", "r1", 0.73), BASELINE)
    assert d.promoted
    assert d.champion_after == "2"
    assert "beats champion v1 (0.7300)" in d.reason


def test_worse_challenger_is_refused_and_the_champion_stays() -> None:
    d = decide("rmse", Candidate("2", "r2", 0.75), Candidate("1", "r1", 0.73), BASELINE)
    assert d.outcome == "refused"
    assert d.champion_after == "1"
    assert d.reason == "challenger v2 rmse 0.7500 does not beat champion v1 (0.7300)"


def test_a_tie_is_refused() -> None:
    d = decide("rmse", Candidate("2", "r2", 0.73), Candidate("1", "r1", 0.73), BASELINE)
    assert d.outcome == "refused"


def test_min_improvement_is_required_over_the_champion() -> None:
    champion = Candidate("1", "r1", 0.73)
    small = decide("rmse", Candidate("2", "r2", 0.725), champion, BASELINE, min_improvement=0.01)
    large = decide("rmse", Candidate("3", "r3", 0.71), champion, BASELINE, min_improvement=0.01)
    assert small.outcome == "refused"
    assert "by more than 0.01" in small.reason
    assert large.promoted


def test_challenger_that_already_is_champion_leaves_things_unchanged() -> None:
    d = decide("rmse", Candidate("4", "r4", 0.7), Candidate("4", "r4", 0.7), BASELINE)
    assert d.outcome == "unchanged"
    assert not d.promoted
    assert d.champion_after == "4"


def test_non_finite_score_is_refused() -> None:
    d = decide("rmse", Candidate("2", "r2", float("nan")), None, BASELINE)
    assert d.outcome == "refused"
    assert "not a finite number" in d.reason


def test_negative_min_improvement_is_an_error() -> None:
    with pytest.raises(ValueError, match="min_improvement"):
        decide("rmse", Candidate("1", "r", 0.7), None, BASELINE, min_improvement=-1)


def test_decision_serializes_for_the_report() -> None:
    d = decide("rmse", Candidate("2", "r2", 0.75), Candidate("1", "r1", 0.73), BASELINE)
    report = d.as_dict()
    assert report["promoted"] is False
    assert report["champion"] == {"version": "1", "run_id": "r1", "score": 0.73}
    assert report["champion_after"] == "1"
