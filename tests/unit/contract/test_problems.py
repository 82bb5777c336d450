"""The one problem report: how it reads, in which order problems come."""

from __future__ import annotations

from winequality.contract.problems import FeatureError, Problem, in_order


def test_a_problem_names_its_row_and_field() -> None:
    assert str(Problem(3, "ph", "15.0 is outside")) == "row 3, ph: 15.0 is outside"
    assert str(Problem(None, "ph", "missing column")) == "ph: missing column"
    assert str(Problem(None, None, "invalid JSON")) == "invalid JSON"


def test_problems_of_the_whole_input_come_first_then_row_by_row() -> None:
    problems = [Problem(2, "ph", "x"), Problem(None, "alcohol", "y"), Problem(0, "ph", "z")]
    assert [p.row for p in in_order(problems)] == [None, 0, 2]


def test_feature_error_lists_the_first_ten_and_counts_the_rest() -> None:
    error = FeatureError([Problem(i, "ph", "bad") for i in range(12)])
    assert str(error).startswith("12 invalid value(s): row 0, ph: bad; row 1, ph: bad")
    assert "row 9, ph: bad" in str(error)
    assert "row 10" not in str(error)
    assert str(error).endswith("(+2 more)")
