"""The contract's JSON parsers (wine records, V2 tensors): every refusal names the wine index,
field and reason."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from winequality.contract import schema
from winequality.contract.parsers import parse_predict, parse_v2_infer
from winequality.contract.problems import FeatureError
from winequality.serving.errors import RequestError
from winequality.serving.schemas import example_wine


def body(doc: Any) -> bytes:
    return orjson.dumps(doc)


def refusal(raw: bytes, max_rows: int = 10) -> FeatureError:
    with pytest.raises(FeatureError) as info:
        parse_predict(raw, max_rows)
    return info.value


def only(err: FeatureError) -> tuple[int | None, str | None, str]:
    assert len(err.problems) == 1, err.problems
    p = err.problems[0]
    return p.row, p.field, p.reason


def test_valid_wines_become_the_model_matrix_in_schema_order() -> None:
    red, white = example_wine("red"), example_wine("white")
    matrix = parse_predict(body({"wines": [red, white]}), 10)
    assert matrix.dtype == np.float32
    assert matrix.shape == (2, schema.N_MODEL_COLUMNS)
    expected = np.array([f.example for f in schema.FEATURES], dtype=np.float32)
    np.testing.assert_array_equal(matrix[:, :-1], np.vstack([expected, expected]))
    assert matrix[:, -1].tolist() == [0.0, 1.0]


def test_integers_are_accepted_as_numbers() -> None:
    wine = example_wine() | {"citric_acid": 0, "free_sulfur_dioxide": 11}
    assert parse_predict(body({"wines": [wine]}), 10)[0, 2] == 0.0


def test_missing_field_names_wine_and_field() -> None:
    wine = example_wine()
    del wine["alcohol"]
    assert only(refusal(body({"wines": [example_wine(), wine]}))) == (
        1,
        "alcohol",
        "field required",
    )


def test_unknown_field_is_refused() -> None:
    err = refusal(body({"wines": [example_wine() | {"colour": 3}]}))
    assert only(err) == (0, "colour", "unknown field")


def test_unknown_field_in_place_of_a_required_one_names_both() -> None:
    # Same number of keys as a valid wine: the fast pass must not take it for one.
    wine = example_wine()
    wine["alcohol_pct"] = wine.pop("alcohol")
    problems = {(p.row, p.field, p.reason) for p in refusal(body({"wines": [wine]})).problems}
    assert problems == {(0, "alcohol", "field required"), (0, "alcohol_pct", "unknown field")}


def test_unhashable_wine_type_is_refused_naming_the_wine() -> None:
    err = refusal(body({"wines": [example_wine(), example_wine() | {"wine_type": ["red"]}]}))
    assert only(err)[:2] == (1, "wine_type")


def test_unknown_top_level_field_is_refused() -> None:
    err = refusal(body({"wines": [example_wine()], "debug": True}))
    assert err.problems[0].loc == ("body", "debug")
    assert "unknown field" in err.problems[0].reason


@pytest.mark.parametrize(
    ("value", "type_name"), [("9.4", "string"), (True, "boolean"), (None, "null"), ([9.4], "array")]
)
def test_non_numbers_are_refused_not_coerced(value: Any, type_name: str) -> None:
    err = refusal(body({"wines": [example_wine() | {"alcohol": value}]}))
    assert only(err) == (0, "alcohol", f"must be a number, got {type_name}")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_nan_and_infinity_literals_are_refused(literal: bytes) -> None:
    raw = body({"wines": [example_wine() | {"alcohol": 0}]}).replace(
        b'"alcohol":0', b'"alcohol":' + literal
    )
    err = refusal(raw)
    assert err.problems[0].kind == "json_invalid"


def test_values_outside_physical_ranges_name_row_field_and_range() -> None:
    wines = [example_wine(), example_wine() | {"ph": 15.0, "density": 0.5}]
    err = refusal(body({"wines": wines}))
    found = {(p.row, p.field) for p in err.problems}
    assert found == {(1, "ph"), (1, "density")}
    ph = next(p for p in err.problems if p.field == "ph")
    assert "15.0 is outside the physical range [0.0, 14.0]" in ph.reason


def test_negative_concentration_is_refused() -> None:
    err = refusal(body({"wines": [example_wine() | {"chlorides": -0.1}]}))
    assert only(err)[:2] == (0, "chlorides")


def test_unknown_wine_type_is_refused() -> None:
    err = refusal(body({"wines": [example_wine() | {"wine_type": "rose"}]}))
    assert only(err) == (0, "wine_type", "must be one of ['red', 'white'], got 'rose'")


def test_empty_list_is_refused() -> None:
    assert only(refusal(body({"wines": []})))[2] == "must contain at least 1 wine"


def test_too_many_rows_are_refused() -> None:
    err = refusal(body({"wines": [example_wine()] * 11}), max_rows=10)
    assert only(err)[2] == "at most 10 wines per request, got 11"


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ([example_wine()], "must be a JSON object with a 'wines' array, got array"),
        ({}, "field required"),
        ({"wines": example_wine()}, "must be an array, got object"),
    ],
)
def test_malformed_documents_are_refused(doc: Any, reason: str) -> None:
    assert refusal(body(doc)).problems[0].reason == reason


def test_item_that_is_not_an_object_is_refused() -> None:
    assert only(refusal(body({"wines": [example_wine(), 3]}))) == (
        1,
        None,
        "must be an object, got int",
    )


def test_every_problem_of_every_wine_is_reported() -> None:
    bad = example_wine() | {"alcohol": "x", "ph": -1}
    err = refusal(body({"wines": [bad, example_wine(), bad]}))
    assert [(p.row, p.field) for p in err.problems] == [
        (0, "alcohol"),
        (0, "ph"),
        (2, "alcohol"),
        (2, "ph"),
    ]
    detail = orjson.loads(RequestError.invalid(err).body())
    assert detail["detail"][0] == {
        "loc": ["body", "wines", 0, "alcohol"],
        "index": 0,
        "field": "alcohol",
        "msg": "must be a number, got string",
        "type": "number_type",
    }
    assert "wines.0.alcohol" in detail["error"]


def test_invalid_json_is_refused() -> None:
    assert refusal(b'{"wines": [').problems[0].kind == "json_invalid"


# --- V2 -----------------------------------------------------------------------------------------


def v2_inputs(wines: list[dict[str, Any]], column: bool = True) -> list[dict[str, Any]]:
    shape = [len(wines), 1] if column else [len(wines)]
    inputs: list[dict[str, Any]] = [
        {"name": n, "datatype": "FP32", "shape": shape, "data": [w[n] for w in wines]}
        for n in schema.FEATURE_NAMES
    ]
    inputs.append(
        {
            "name": schema.WINE_TYPE,
            "datatype": "BYTES",
            "shape": shape,
            "data": [w[schema.WINE_TYPE] for w in wines],
        }
    )
    return inputs


def v2_refusal(doc: Any) -> FeatureError:
    with pytest.raises(FeatureError) as info:
        parse_v2_infer(body(doc), 10)
    return info.value


def test_v2_named_tensors_become_the_same_matrix_as_predict() -> None:
    wines = [example_wine("red"), example_wine("white")]
    v2 = parse_v2_infer(body({"id": "a", "inputs": v2_inputs(wines)}), 10)
    np.testing.assert_array_equal(v2.matrix, parse_predict(body({"wines": wines}), 10))
    assert v2.id == "a"
    assert v2.column_shape
    assert v2.outputs == (schema.OUTPUT_QUALITY, schema.OUTPUT_CLASS)


def test_v2_accepts_flat_shape_and_nested_data() -> None:
    inputs = v2_inputs([example_wine()], column=False)
    inputs[0]["data"] = [[inputs[0]["data"][0]]]
    v2 = parse_v2_infer(body({"inputs": inputs}), 10)
    assert not v2.column_shape
    assert v2.matrix.shape == (1, schema.N_MODEL_COLUMNS)


def test_v2_missing_tensor_is_named() -> None:
    inputs = [t for t in v2_inputs([example_wine()]) if t["name"] != "ph"]
    err = v2_refusal({"inputs": inputs})
    assert [(p.field, p.reason) for p in err.problems] == [("ph", "missing input tensor 'ph'")]


def test_v2_unknown_tensor_is_named() -> None:
    inputs = [
        *v2_inputs([example_wine()]),
        {"name": "colour", "datatype": "FP32", "shape": [1], "data": [1]},
    ]
    err = v2_refusal({"inputs": inputs})
    assert err.problems[0].field == "colour"


def test_v2_out_of_range_value_names_row_and_tensor() -> None:
    wines = [example_wine(), example_wine() | {"alcohol": 80.0}]
    err = v2_refusal({"inputs": v2_inputs(wines)})
    assert [(p.row, p.field) for p in err.problems] == [(1, "alcohol")]


def test_v2_string_in_fp32_tensor_is_refused() -> None:
    inputs = v2_inputs([example_wine()])
    inputs[0]["data"] = ["7.4"]
    err = v2_refusal({"inputs": inputs})
    assert [(p.row, p.field, p.reason) for p in err.problems] == [
        (0, "fixed_acidity", "must be a number, got string")
    ]


def test_v2_wrong_datatype_and_shape_are_refused() -> None:
    inputs = v2_inputs([example_wine()])
    inputs[0]["datatype"] = "INT64"
    inputs[1]["shape"] = [2, 1]
    err = v2_refusal({"inputs": inputs})
    assert {(p.field, p.kind) for p in err.problems} == {
        ("fixed_acidity", "datatype"),
        ("volatile_acidity", "shape"),
    }


def test_v2_tensors_of_different_lengths_are_refused() -> None:
    inputs = v2_inputs([example_wine(), example_wine()])
    inputs[3] = v2_inputs([example_wine()])[3]
    assert v2_refusal({"inputs": inputs}).problems[0].kind == "shape_mismatch"


def test_v2_unknown_requested_output_is_refused() -> None:
    err = v2_refusal({"inputs": v2_inputs([example_wine()]), "outputs": [{"name": "price"}]})
    assert "unknown output 'price'" in err.problems[0].reason


def binary_request(
    wines: list[dict[str, Any]], wine_type_blob: bytes | None = None
) -> tuple[bytes, bytes]:
    """(JSON header, tensor bytes) of a V2 request with every tensor in the binary data
    extension, as tritonclient sends it by default."""
    inputs = v2_inputs(wines)
    blobs = []
    for tensor in inputs:
        if tensor["datatype"] == "FP32":
            blob = np.asarray(tensor["data"], dtype="<f4").tobytes()
        else:
            blob = b"".join(len(s).to_bytes(4, "little") + s.encode() for s in tensor["data"])
            blob = blob if wine_type_blob is None else wine_type_blob
        del tensor["data"]
        tensor["parameters"] = {"binary_data_size": len(blob)}
        blobs.append(blob)
    return body({"inputs": inputs}), b"".join(blobs)


def test_v2_binary_tensor_extension_is_decoded() -> None:
    wines = [example_wine("white"), example_wine("red"), example_wine("white")]
    header, blobs = binary_request(wines)
    v2 = parse_v2_infer(header + blobs, 10, json_length=len(header))
    expected = parse_predict(body({"wines": wines}), 10)
    np.testing.assert_allclose(v2.matrix, expected)


def test_v2_binary_wine_types_other_than_red_and_white_are_named() -> None:
    wines = [example_wine("white"), example_wine("red")]
    rose = b"".join(len(s).to_bytes(4, "little") + s for s in (b"white", b"rose"))
    header, blobs = binary_request(wines, rose)
    with pytest.raises(FeatureError) as info:
        parse_v2_infer(header + blobs, 10, json_length=len(header))
    assert [(p.row, p.field) for p in info.value.problems] == [(1, schema.WINE_TYPE)]


def test_v2_binary_wine_types_that_only_look_like_flags_are_refused() -> None:
    # Four bytes "0000" are a BYTES element length (808,464,432) with no data after it, not
    # four red wines.
    header, blobs = binary_request([example_wine("red")] * 4, b"0000")
    with pytest.raises(FeatureError) as info:
        parse_v2_infer(header + blobs, 10, json_length=len(header))
    assert info.value.problems[0].field == schema.WINE_TYPE
    assert "truncated" in info.value.problems[0].reason


def test_v2_truncated_binary_data_is_refused() -> None:
    inputs = v2_inputs([example_wine()])
    inputs[0].pop("data")
    inputs[0]["parameters"] = {"binary_data_size": 4}
    header = body({"inputs": inputs})
    with pytest.raises(FeatureError) as info:
        parse_v2_infer(header + b"\x00\x00", 10, json_length=len(header))
    assert info.value.problems[0].field == "fixed_acidity"


def test_overflowing_integer_is_out_of_range() -> None:
    err = refusal(body({"wines": [example_wine() | {"residual_sugar": 2**63}]}))
    assert only(err)[:2] == (0, "residual_sugar")
