"""The typed ``/predict`` decoder accepts only what the contract's parser accepts, with the same
matrix; everything else it leaves to that parser (None)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from winequality.contract import parsers, schema
from winequality.contract.problems import FeatureError
from winequality.serving.typed_decode import decode_v2, decode_wines

MAX_ROWS = 100


def random_wines(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    wines = []
    for _ in range(n):
        wine: dict[str, Any] = {
            f.name: float(rng.uniform(f.minimum, f.maximum)) for f in schema.FEATURES
        }
        wine[schema.FEATURE_NAMES[0]] = int(rng.integers(4, 15))  # ints are numbers too
        wine[schema.FEATURES[1].name] = schema.FEATURES[1].maximum  # the bounds are inside
        wine[schema.FEATURES[2].name] = schema.FEATURES[2].minimum
        wine[schema.WINE_TYPE] = str(rng.choice(schema.WINE_TYPES))
        wines.append(wine)
    return wines


def agrees(body: bytes) -> np.ndarray | None:
    """The decoder's answer, after checking it is the parser's (or that it declined)."""
    got = decode_wines(body, MAX_ROWS)
    try:
        expected = parsers.parse_predict(body, MAX_ROWS)
    except FeatureError:
        assert got is None
        return None
    if got is not None:
        assert got.dtype == np.float32
        assert np.array_equal(got, expected)
    return got


@pytest.mark.parametrize("n", [1, 2, parsers.SMALL_ROWS, parsers.SMALL_ROWS + 1, 37, MAX_ROWS])
def test_valid_bodies_give_the_parser_matrix(n: int) -> None:
    body = orjson.dumps({"wines": random_wines(np.random.default_rng(n), n)})
    assert agrees(body) is not None


def test_many_digit_and_tiny_numbers_round_as_the_parser_rounds() -> None:
    wine = random_wines(np.random.default_rng(0), 1)[0]
    text = orjson.dumps({"wines": [wine]})
    for literal in (b"0.1000000000000000055511151231257827", b"5e-324", b"-0.0", b"7.4E0", b"1e1"):
        body = text.replace(b'"chlorides":', b'"chlorides":' + literal + b',"x":', 1)
        agrees(body)  # an unknown field: declined by both
        value = orjson.dumps(wine["chlorides"])
        agrees(text.replace(b'"chlorides":' + value, b'"chlorides":' + literal, 1))


@pytest.mark.parametrize(
    "literal",
    [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1" + b"0" * 400, b"true", b"null", b'"5"',
     b"[1]", b"{}", b"-1", b"25.000001"],
)  # fmt: skip
def test_values_the_parser_refuses_are_declined(literal: bytes) -> None:
    wine = random_wines(np.random.default_rng(1), 1)[0]
    text = orjson.dumps({"wines": [wine]})
    body = text.replace(b'"alcohol":' + orjson.dumps(wine["alcohol"]), b'"alcohol":' + literal)
    assert body != text
    assert agrees(body) is None


@pytest.mark.parametrize(
    "doc",
    [
        {"wines": []},
        {"wines": {}},
        {"wines": [1]},
        {"wines": [None]},
        {"rows": []},
        {"wines": [{"wine_type": "red"}]},
        [],
        "wines",
        None,
    ],
)
def test_malformed_documents_are_declined(doc: Any) -> None:
    assert agrees(orjson.dumps(doc)) is None


@pytest.mark.parametrize(
    "change",
    [{"wine_type": "Red"}, {"wine_type": "rose"}, {"wine_type": 1}, {"extra": 1}, {"ph": True}],
)
def test_invalid_wines_are_declined(change: dict[str, Any]) -> None:
    wines = random_wines(np.random.default_rng(2), 3)
    wines[1] |= change
    assert agrees(orjson.dumps({"wines": wines})) is None


def test_a_missing_field_and_an_extra_top_level_field_are_declined() -> None:
    wine = random_wines(np.random.default_rng(3), 1)[0]
    del wine["density"]
    assert agrees(orjson.dumps({"wines": [wine]})) is None
    whole = random_wines(np.random.default_rng(3), 1)
    assert agrees(orjson.dumps({"wines": whole, "id": 1})) is None


def test_duplicate_keys_are_read_as_the_parser_reads_them() -> None:
    wine = random_wines(np.random.default_rng(4), 1)[0]
    text = orjson.dumps({"wines": [wine]})
    agrees(text.replace(b'{"fixed_acidity"', b'{"alcohol":99,"fixed_acidity"', 1))
    agrees(text.replace(b'{"fixed_acidity"', b'{"alcohol":9,"fixed_acidity"', 1))
    agrees(text.replace(b'{"wines"', b'{"wines":[],"wines"', 1))


def test_more_rows_than_allowed_are_declined() -> None:
    body = orjson.dumps({"wines": random_wines(np.random.default_rng(5), MAX_ROWS + 1)})
    assert agrees(body) is None


@pytest.mark.parametrize(
    "body", [b"", b"{", b'{"wines":[]} x', b"\xff", b'\xef\xbb\xbf{"wines":[]}', b"  "]
)
def test_text_that_is_not_one_json_document_is_declined(body: bytes) -> None:
    assert agrees(body) is None


def test_whitespace_around_a_valid_document_is_read_as_the_parser_reads_it() -> None:
    body = orjson.dumps({"wines": random_wines(np.random.default_rng(6), 2)})
    assert agrees(b" \n" + body + b"\r\n\t") is not None


# --- V2 infer, JSON tensors -------------------------------------------------------------------


def v2_doc(wines: list[dict[str, Any]], nested: bool = False) -> dict[str, Any]:
    n = len(wines)
    inputs = [
        {
            "name": name,
            "datatype": "BYTES" if name == schema.WINE_TYPE else "FP32",
            "shape": [n, 1] if nested else [n],
            "data": [[w[name]] for w in wines] if nested else [w[name] for w in wines],
        }
        for name in (*schema.FEATURE_NAMES, schema.WINE_TYPE)
    ]
    return {"id": "x", "inputs": inputs}


def v2_agrees(doc: Any) -> bool:
    """Whether the decoder took ``doc``, after checking it read it as the parser does."""
    body = orjson.dumps(doc)
    got = decode_v2(body, MAX_ROWS)
    try:
        expected = parsers.parse_v2_infer(body, MAX_ROWS)
    except FeatureError:
        assert got is None
        return False
    if got is None:
        return False
    assert got.matrix.dtype == np.float32
    assert np.array_equal(got.matrix, expected.matrix)
    assert np.array_equal(got.measurements, expected.measurements)
    assert got.measurements.dtype == expected.measurements.dtype
    assert (got.id, got.column_shape, got.outputs) == (
        expected.id,
        expected.column_shape,
        expected.outputs,
    )
    return True


@pytest.mark.parametrize("n", [1, 2, parsers.SMALL_ROWS])
@pytest.mark.parametrize("nested", [False, True])
def test_v2_valid_requests_give_the_parser_request(n: int, nested: bool) -> None:
    doc = v2_doc(random_wines(np.random.default_rng(n), n), nested)
    # Nested rows ([[x], [y]]) are left to the parser, which accepts them.
    taken = not nested
    assert v2_agrees(doc) == taken
    doc["inputs"][3]["datatype"] = "FP64"
    doc["outputs"] = [{"name": "quality_class"}]
    del doc["id"]
    assert v2_agrees(doc) == taken
    doc["outputs"] = []
    doc["parameters"] = {"anything": [1]}
    doc["inputs"][0]["parameters"] = {"x": None}
    assert v2_agrees(doc) == taken
    doc["inputs"].reverse()
    doc["inputs"][1]["shape"] = [n] if nested else [n, 1]  # mixed shapes: outputs are [N]
    assert v2_agrees(doc) == (taken and not nested)


def test_v2_larger_requests_are_left_to_the_parser() -> None:
    doc = v2_doc(random_wines(np.random.default_rng(7), parsers.SMALL_ROWS + 1))
    assert not v2_agrees(doc)  # accepted by the parser, declined here: both fine


V2_CHANGES: list[tuple[str, Any]] = [
    ("datatype", "FP16"),
    ("datatype", "BYTES"),
    ("datatype", None),
    ("shape", [1, 2]),
    ("shape", [2]),
    ("shape", [1, 1, 1]),
    ("shape", []),
    ("shape", [True]),
    ("shape", [-1]),
    ("shape", "1"),
    ("data", [True]),
    ("data", ["7.4"]),
    ("data", [None]),
    ("data", [[7.4, 1]]),
    ("data", [1e9]),
    ("data", []),
    ("data", 7.4),
    ("name", "alcohol"),
    ("name", "colour"),
    ("name", 3),
    ("parameters", []),
]


@pytest.mark.parametrize(("field", "value"), V2_CHANGES)
def test_v2_invalid_tensors_are_declined(field: str, value: Any) -> None:
    doc = v2_doc(random_wines(np.random.default_rng(8), 1))
    doc["inputs"][0][field] = value
    assert not v2_agrees(doc)


@pytest.mark.parametrize(
    "wine_type", [["rose"], [1], [["red", "white"]], ["red", "red"], [None], "red"]
)
def test_v2_invalid_wine_types_are_declined(wine_type: Any) -> None:
    doc = v2_doc(random_wines(np.random.default_rng(9), 1))
    doc["inputs"][-1]["data"] = wine_type
    assert not v2_agrees(doc)


@pytest.mark.parametrize(
    "change",
    [
        {"id": 3},
        {"parameters": 1},
        {"outputs": [{"name": "score"}]},
        {"outputs": [{}]},
        {"outputs": {"name": "quality"}},
        {"outputs": [{"name": "quality", "parameters": 1}]},
        {"inputs": []},
        {"inputs": None},
    ],
)
def test_v2_invalid_documents_are_declined(change: dict[str, Any]) -> None:
    doc = v2_doc(random_wines(np.random.default_rng(10), 1)) | change
    assert not v2_agrees(doc)


def test_v2_a_missing_or_repeated_tensor_is_declined() -> None:
    doc = v2_doc(random_wines(np.random.default_rng(11), 1))
    doc["inputs"].pop(4)
    assert not v2_agrees(doc)
    doc["inputs"].append(doc["inputs"][0])
    assert not v2_agrees(doc)


def test_v2_unknown_members_are_ignored_as_the_parser_ignores_them() -> None:
    doc = v2_doc(random_wines(np.random.default_rng(12), 2))
    doc["extra"] = {"a": 1}
    doc["inputs"][2]["note"] = "x"
    assert v2_agrees(doc)
