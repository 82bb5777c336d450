"""The app's error body: the contract's problems, in the shape the OpenAPI document promises."""

from __future__ import annotations

import orjson

from winequality.contract.problems import FeatureError, Problem
from winequality.serving.errors import MAX_REPORTED, RequestError, error_body
from winequality.serving.schemas import ErrorResponse


def test_refused_input_is_a_422_listing_each_problem_as_documented() -> None:
    problem = Problem(1, "ph", "15.0 is outside", "value_error", ("body", "wines", 1, "ph"))
    refusal = RequestError.invalid(FeatureError([problem]))
    assert refusal.status == 422
    assert refusal.kind == "value_error"
    body = orjson.loads(refusal.body())
    assert body == {
        "error": "1 problem(s): wines.1.ph: 15.0 is outside",
        "detail": [
            {
                "loc": ["body", "wines", 1, "ph"],
                "index": 1,
                "field": "ph",
                "msg": "15.0 is outside",
                "type": "value_error",
            }
        ],
    }
    assert ErrorResponse.model_validate(body).model_dump() == body


def test_a_huge_refusal_lists_at_most_max_reported_problems() -> None:
    problems = [Problem(i, "ph", "bad", loc=("body", "wines", i, "ph")) for i in range(500)]
    body = orjson.loads(RequestError(422, problems).body())
    assert len(body["detail"]) == MAX_REPORTED
    assert body["error"].endswith("(+495 more)")


def test_a_refusal_of_the_request_as_a_whole_has_one_body_level_problem() -> None:
    assert orjson.loads(error_body("request body exceeds 10 bytes", "body_too_large")) == {
        "error": "request body exceeds 10 bytes",
        "detail": [
            {
                "loc": ["body"],
                "index": None,
                "field": None,
                "msg": "request body exceeds 10 bytes",
                "type": "body_too_large",
            }
        ],
    }
