"""The typed ``/predict`` decoder accepts only what the contract's parser accepts, with the same
matrix; everything else it leaves to that parser (None)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from winequality.contract import parsers, schema
from winequality.contract.problems import FeatureError
from winequality.serving.typed_decode import decode_wines

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


@pytest.mark.parametrize("n", [1, parsers.SMALL_ROWS + 1])
@pytest.mark.parametrize("spelled", [b'"wh\\u0069te"', b'"\\u0072ed"', b'"red\\u0000"'])
def test_wine_types_written_with_escapes_are_read_as_the_parser_reads_them(
    n: int, spelled: bytes
) -> None:
    # The decoder reads a wine type as an enum member (its flag is the float it is): msgspec
    # compares the unescaped name, as the parser does.
    wines = random_wines(np.random.default_rng(7), n)
    body = orjson.dumps({"wines": wines})
    at = body.index(b'"wine_type":') + len(b'"wine_type":')
    old = orjson.dumps(wines[0][schema.WINE_TYPE])
    changed = body[:at] + spelled + body[at + len(old) :]
    assert (agrees(changed) is None) == (spelled == b'"red\\u0000"')


def test_the_matrix_is_the_models_own_to_keep() -> None:
    # Packed straight into a fresh array: writable, C-ordered, not a view of a shared buffer.
    body = orjson.dumps({"wines": random_wines(np.random.default_rng(8), parsers.SMALL_ROWS + 1)})
    first, second = decode_wines(body, MAX_ROWS), decode_wines(body, MAX_ROWS)
    assert first is not None
    assert second is not None
    assert first.flags.writeable
    assert first.flags.c_contiguous
    assert first.flags.owndata
    first[0, 0] = -1.0
    assert second[0, 0] != -1.0
