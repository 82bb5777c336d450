"""The typed V2 decoder accepts only what the contract's parser accepts, with the same request;
everything else it leaves to that parser (None)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from tests.unit.serving.test_typed_decode import random_wines

from winequality.contract import parsers, schema
from winequality.contract.problems import FeatureError
from winequality.serving import v2_decode
from winequality.serving.v2_decode import V2BinaryDecoder, V2JsonDecoder, decode_v2

MAX_ROWS = 100


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
    return reads_as_the_parser(decode_v2(body, MAX_ROWS), body)


def reads_as_the_parser(got: Any, body: bytes, header_length: int | None = None) -> bool:
    """Whether a decoder took ``body`` (``got`` not None), after checking that it declined what
    the parser refuses and read what it took as the parser reads it."""
    try:
        expected = parsers.parse_v2_infer(body, MAX_ROWS, header_length)
    except FeatureError:
        assert got is None
        return False
    if got is None:
        return False
    assert got.matrix.dtype == np.float32
    assert np.array_equal(got.matrix, expected.matrix)
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


@pytest.mark.parametrize("member", ["name", "datatype", "shape", "data"])
@pytest.mark.parametrize("n", [1, 2])
def test_v2_a_tensor_member_missing_is_declined(member: str, n: int) -> None:
    doc = v2_doc(random_wines(np.random.default_rng(13), n))
    del doc["inputs"][5][member]
    assert not v2_agrees(doc)


def test_v2_unknown_members_are_ignored_as_the_parser_ignores_them() -> None:
    doc = v2_doc(random_wines(np.random.default_rng(12), 2))
    doc["extra"] = {"a": 1}
    doc["inputs"][2]["note"] = "x"
    assert v2_agrees(doc)


# --- V2 infer, binary tensor data extension ---------------------------------------------------


def binary_body(
    wines: list[dict[str, Any]],
    datatypes: dict[str, str] | None = None,
    nested: bool = True,
    **extra: Any,
) -> tuple[dict[str, Any], list[bytes]]:
    """(JSON header, tensor bytes per input) of a binary request, as tritonclient sends it."""
    n = len(wines)
    inputs, blobs = [], []
    for name in (*schema.FEATURE_NAMES, schema.WINE_TYPE):
        values = [w[name] for w in wines]
        datatype = (datatypes or {}).get(name, "BYTES" if name == schema.WINE_TYPE else "FP32")
        if datatype == "BYTES":
            blob = b"".join(len(v).to_bytes(4, "little") + v.encode() for v in values)
        else:
            blob = np.asarray(values, dtype="<f4" if datatype == "FP32" else "<f8").tobytes()
        inputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": [n, 1] if nested else [n],
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    return {"inputs": inputs, **extra}, blobs


def binary_agrees(
    header: Any, blobs: list[bytes] | bytes, decoder: V2BinaryDecoder | None = None
) -> bool:
    """Whether the binary decoder took the request, after checking it read it as the parser."""
    text = orjson.dumps(header) if not isinstance(header, bytes) else header
    body = text + (blobs if isinstance(blobs, bytes) else b"".join(blobs))
    decoder = decoder or V2BinaryDecoder(MAX_ROWS)
    return reads_as_the_parser(decoder.decode(body, len(text)), body, len(text))


@pytest.mark.parametrize("n", [1, 2, parsers.SMALL_ROWS])
@pytest.mark.parametrize("nested", [False, True])
def test_binary_valid_requests_give_the_parser_request(n: int, nested: bool) -> None:
    wines = random_wines(np.random.default_rng(20 + n), n)
    assert binary_agrees(*binary_body(wines, nested=nested))
    assert binary_agrees(*binary_body(wines, {"density": "FP64"}, nested, id="r-1"))
    header, blobs = binary_body(wines, nested=nested, outputs=[{"name": "quality_class"}])
    header["inputs"][0]["parameters"]["x"] = None  # other parameters: ignored by both
    header["inputs"][1]["data"] = ["not read"]  # the bytes count, not this
    header["parameters"] = {"binary_data_output": True}
    assert binary_agrees(header, blobs)
    header["inputs"].reverse()  # the bytes follow the inputs' order
    header["inputs"][0]["shape"] = [n, 1] if not nested else [n]  # mixed: outputs are [N]
    assert binary_agrees(header, blobs[::-1])


def test_binary_larger_requests_are_left_to_the_parser() -> None:
    wines = random_wines(np.random.default_rng(30), parsers.SMALL_ROWS + 1)
    assert not binary_agrees(*binary_body(wines))


def test_binary_more_rows_than_allowed_are_declined() -> None:
    header, blobs = binary_body(random_wines(np.random.default_rng(31), 3))
    text = orjson.dumps(header)
    assert V2BinaryDecoder(2).decode(text + b"".join(blobs), len(text)) is None
    assert V2BinaryDecoder(3).decode(text + b"".join(blobs), len(text)) is not None


def _bytes(*values: bytes) -> bytes:
    return b"".join(len(v).to_bytes(4, "little") + v for v in values)


# (input index, change to its header, its new bytes or None to keep them)
BINARY_CHANGES: list[tuple[int, dict[str, Any], bytes | None]] = [
    (0, {"datatype": "FP16"}, None),
    (0, {"datatype": "FP64"}, None),  # 4 bytes for an FP64 value
    (0, {"datatype": "BYTES"}, None),
    (0, {"shape": [2, 1]}, None),
    (0, {"shape": [1, 2]}, None),
    (0, {"shape": [1, 1, 1]}, None),
    (0, {"shape": []}, None),
    (0, {"shape": [True]}, None),
    (0, {"name": "alcohol"}, None),
    (0, {"name": "colour"}, None),
    (0, {"parameters": None}, None),
    (0, {"parameters": {}}, None),
    (0, {"parameters": {"binary_data_size": 4.0}}, None),
    (0, {"parameters": {"binary_data_size": True}}, None),
    (0, {"parameters": {"binary_data_size": -4}}, None),
    (0, {"parameters": {"binary_data_size": 8}}, None),
    (0, {}, np.float32("nan").tobytes()),
    (0, {}, np.float32("inf").tobytes()),
    (0, {}, np.float32(1e9).tobytes()),
    (0, {}, np.float32(-1).tobytes()),
    (0, {}, b"\x00\x00\x00"),
    (11, {}, _bytes(b"rose")),
    (11, {}, _bytes(b"Red")),
    (11, {}, b"0000"),
    (11, {}, _bytes(b"red", b"red")),
    (11, {}, _bytes(b"red") + b"\x00"),
    (11, {}, _bytes(b"red")[:-1]),
    (11, {"datatype": "FP32"}, None),
]


@pytest.mark.parametrize(("index", "change", "blob"), BINARY_CHANGES)
def test_binary_invalid_tensors_are_declined(
    index: int, change: dict[str, Any], blob: bytes | None
) -> None:
    header, blobs = binary_body(random_wines(np.random.default_rng(32), 1))
    tensor = header["inputs"][index]
    tensor.update(change)
    if blob is not None:
        blobs[index] = blob
        if "parameters" not in change:
            tensor["parameters"] = {"binary_data_size": len(blob)}
    decoder = V2BinaryDecoder(MAX_ROWS)
    assert binary_agrees(*binary_body(random_wines(np.random.default_rng(32), 1)), decoder)
    assert not binary_agrees(header, blobs, decoder)
    assert not binary_agrees(header, blobs, decoder)  # and again, its header now known


@pytest.mark.parametrize(
    "change",
    [
        {"id": 3},
        {"parameters": 1},
        {"outputs": [{"name": "score"}]},
        {"outputs": {"name": "quality"}},
        {"inputs": []},
    ],
)
def test_binary_invalid_documents_are_declined(change: dict[str, Any]) -> None:
    header, blobs = binary_body(random_wines(np.random.default_rng(33), 1))
    assert not binary_agrees(header | change, blobs)


def test_binary_a_missing_or_repeated_tensor_is_declined() -> None:
    header, blobs = binary_body(random_wines(np.random.default_rng(34), 1))
    del header["inputs"][4], blobs[4]
    assert not binary_agrees(header, blobs)
    header["inputs"].append(header["inputs"][0])
    blobs.append(blobs[0])
    assert not binary_agrees(header, blobs)


def test_binary_bytes_missing_or_left_over_are_declined() -> None:
    header, blobs = binary_body(random_wines(np.random.default_rng(35), 2))
    raw = b"".join(blobs)
    decoder = V2BinaryDecoder(MAX_ROWS)
    assert binary_agrees(header, raw, decoder)
    assert not binary_agrees(header, raw[:-1], decoder)
    assert not binary_agrees(header, raw + b"\x00", decoder)


@pytest.mark.parametrize("header", [b"", b"{", b'{"inputs": []} x', b"\xef\xbb\xbf{}"])
def test_binary_headers_that_are_not_one_json_document_are_declined(header: bytes) -> None:
    assert not binary_agrees(header, b"\x00" * 8)


@pytest.mark.parametrize("length", [0, -1, 10_000])
def test_binary_header_lengths_that_do_not_fit_are_declined(length: int) -> None:
    header, blobs = binary_body(random_wines(np.random.default_rng(36), 1))
    body = orjson.dumps(header) + b"".join(blobs)
    assert V2BinaryDecoder(MAX_ROWS).decode(body, length) is None


def test_binary_a_known_header_reads_each_request_s_own_values() -> None:
    decoder = V2BinaryDecoder(MAX_ROWS)
    rng = np.random.default_rng(37)
    for _ in range(5):
        wines = random_wines(rng, 1)
        wines[0][schema.WINE_TYPE] = "white"  # the same bytes count: the same header
        assert binary_agrees(*binary_body(wines), decoder)


def test_binary_headers_kept_are_bounded_and_those_with_an_id_not_kept() -> None:
    decoder = V2BinaryDecoder(MAX_ROWS)
    wines = random_wines(np.random.default_rng(38), 1)
    for i in range(V2BinaryDecoder.max_layouts + 10):
        assert binary_agrees(*binary_body(wines, parameters={"n": i}), decoder)
        assert len(decoder._layouts) <= V2BinaryDecoder.max_layouts
    decoder._layouts.clear()
    assert binary_agrees(*binary_body(wines, id="once"), decoder)
    assert not decoder._layouts


def test_binary_long_headers_are_not_kept() -> None:
    decoder = V2BinaryDecoder(MAX_ROWS)
    wines = random_wines(np.random.default_rng(39), 1)
    padding = "x" * V2BinaryDecoder.max_header_bytes
    assert binary_agrees(*binary_body(wines, parameters={"pad": padding}), decoder)
    assert not decoder._layouts


def test_binary_the_last_header_is_recognised_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    decoder = V2BinaryDecoder(MAX_ROWS)
    rng = np.random.default_rng(40)
    wines = random_wines(rng, 1)
    wines[0][schema.WINE_TYPE] = "white"
    assert binary_agrees(*binary_body(wines), decoder)
    # Neither looked up nor read again: the body starts with the last header kept.
    decoder._layouts.clear()
    monkeypatch.setattr(v2_decode, "_layout", lambda header: pytest.fail("header read again"))
    wines = random_wines(rng, 1)
    wines[0][schema.WINE_TYPE] = "white"  # other values, the same header
    assert binary_agrees(*binary_body(wines), decoder)


def test_binary_headers_of_one_length_in_turn_are_each_read_by_their_own_layout() -> None:
    decoder = V2BinaryDecoder(MAX_ROWS)
    wines = random_wines(np.random.default_rng(41), 1)
    wines[0][schema.WINE_TYPE] = "red"
    header, blobs = binary_body(wines)
    swapped = {"inputs": [header["inputs"][1], header["inputs"][0], *header["inputs"][2:]]}
    swapped_blobs = [blobs[1], blobs[0], *blobs[2:]]
    # The same length, and the same bytes but for the order of the first two tensors.
    assert len(orjson.dumps(swapped)) == len(orjson.dumps(header))
    for _ in range(2):
        assert binary_agrees(header, blobs, decoder)
        assert binary_agrees(swapped, swapped_blobs, decoder)


@pytest.mark.parametrize(
    "ids",
    [
        ["r-1", "r-22", "", "é-3"],
        ["r-1", 'quote"d', "back\\slash", "line\nfeed", "a\u2028b", "r-6"],
    ],
)
def test_binary_headers_with_a_new_id_each_are_read_with_their_own_id(ids: list[str]) -> None:
    decoder = V2BinaryDecoder(MAX_ROWS)
    wines = random_wines(np.random.default_rng(42), 1)
    for request_id in ids:
        assert binary_agrees(*binary_body(wines, id=request_id), decoder)


def test_binary_a_header_with_another_id_is_not_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoder = V2BinaryDecoder(MAX_ROWS)
    wines = random_wines(np.random.default_rng(43), 1)
    assert binary_agrees(*binary_body(wines, id="request-1"), decoder)
    monkeypatch.setattr(v2_decode, "_layout", lambda header: pytest.fail("header read again"))
    assert binary_agrees(*binary_body(wines, id="request-2"), decoder)
    # Only the id differs: any other change is no longer the template's header.
    monkeypatch.undo()
    assert binary_agrees(*binary_body(wines, id="request-3", parameters={"x": 1}), decoder)
    assert binary_agrees(
        *binary_body(wines, id="request-4", outputs=[{"name": "quality"}]), decoder
    )


@pytest.mark.parametrize("extra", [{"id": "FP32"}, {"id": "p", "parameters": {"copy": "p"}}])
def test_binary_an_id_whose_text_the_header_holds_twice_makes_no_template(
    extra: dict[str, Any],
) -> None:
    decoder = V2BinaryDecoder(MAX_ROWS)
    wines = random_wines(np.random.default_rng(44), 1)
    assert binary_agrees(*binary_body(wines, **extra), decoder)
    assert decoder._id_template is None
    again = extra | {"id": extra["id"] + "x"}
    assert binary_agrees(*binary_body(wines, **again), decoder)


def test_binary_a_long_header_with_an_id_makes_no_template() -> None:
    decoder = V2BinaryDecoder(MAX_ROWS)
    wines = random_wines(np.random.default_rng(45), 1)
    padding = "x" * V2BinaryDecoder.max_header_bytes
    assert binary_agrees(*binary_body(wines, id="r-1", parameters={"pad": padding}), decoder)
    assert decoder._id_template is None


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("feature", schema.FEATURES, ids=lambda f: f.name)
def test_binary_each_measurement_is_checked_against_its_range(n: int, feature: Any) -> None:
    decoder = V2BinaryDecoder(MAX_ROWS)
    wines = random_wines(np.random.default_rng(46), n)
    low, high = np.float32(feature.minimum), np.float32(feature.maximum)
    outside = [np.nextafter(low, np.float32(-np.inf)), np.nextafter(high, np.float32(np.inf))]
    for value in [low, high, *outside]:
        wines[-1][feature.name] = float(value)
        taken = binary_agrees(*binary_body(wines), decoder)
        assert not taken or value not in outside


# --- V2 infer, JSON tensors through the template of the last request ------------------------


def one_wine_body(seed: int, nested: bool = True) -> bytes:
    """A single-row request without an id, as Python's json module writes it (spaces after
    the separators), the layout a template is made of."""
    doc = v2_doc(random_wines(np.random.default_rng(seed), 1), nested=False)
    del doc["id"]
    for tensor in doc["inputs"]:
        tensor["shape"] = [1, 1] if nested else [1]
    return json.dumps(doc).encode()


def primed(body: bytes) -> V2JsonDecoder:
    decoder = V2JsonDecoder(MAX_ROWS)
    assert reads_as_the_parser(decoder.decode(body), body)
    assert decoder._template is not None  # what the tests below exercise
    return decoder


@pytest.mark.parametrize("nested", [False, True])
def test_v2_template_reads_each_request_s_own_values(nested: bool) -> None:
    primer = one_wine_body(20, nested)
    assert all(template_agrees(primer, one_wine_body(seed, nested)) for seed in range(21, 61))


def with_value(body: bytes, index: int, text: bytes) -> bytes:
    """``body`` with the text of tensor ``index``'s one value replaced by ``text``."""
    pieces = body.split(b"]")
    piece = pieces[2 * index + 1]
    pieces[2 * index + 1] = piece[: piece.rindex(b"[") + 1] + text
    return b"]".join(pieces)


def template_agrees(primer: bytes, body: bytes) -> bool:
    """Whether the template made of ``primer`` took ``body`` itself, which it must exactly when
    the full decoder does (with the parser's request); the decoder's answer is the same."""
    decoder = primed(primer)
    template = decoder._template
    assert template is not None
    took = reads_as_the_parser(template.read(body), body)
    assert took == reads_as_the_parser(decode_v2(body, MAX_ROWS), body)
    assert reads_as_the_parser(decoder.decode(body), body) == took
    return took


# JSON-invalid numbers Python's float() reads, numbers out of range, members' text, counts.
TEMPLATE_VALUES = [
    b"07", b".5", b"+1", b"1.", b"1_0", b"0x10", b"nan", b"NaN", b"Infinity", b"-Infinity",
    b"1e5", b"-1", b"-0", b"0", b"3", b"1E0", b" 7.25 ", b"\n7.25", b"7.4, 1", b"", b",",
    b'"7.4"', b"true", b"null", b"[7.4", b"{}", b"7.4}, {", b'7.4, "data": [7.4', b"1e",
]  # fmt: skip
TEMPLATE_WINE_TYPES = [
    b'"red"', b'"white"', b'"whit\\u0065"', b'"rose"', b'"red", "red"', b"1", b' "red" ', b'"',
    b'"red', b"", b"null", b'"Red"',
]  # fmt: skip


@pytest.mark.parametrize("text", TEMPLATE_VALUES)
@pytest.mark.parametrize("index", [0, 5, 10])
def test_v2_template_takes_what_the_parser_takes(text: bytes, index: int) -> None:
    template_agrees(one_wine_body(62), with_value(one_wine_body(63), index, text))


@pytest.mark.parametrize("text", TEMPLATE_WINE_TYPES)
def test_v2_template_wine_types_as_the_parser_reads_them(text: bytes) -> None:
    template_agrees(one_wine_body(64), with_value(one_wine_body(65), 11, text))


def test_v2_template_values_moved_across_pieces_are_declined() -> None:
    decoder = primed(one_wine_body(66))
    body = one_wine_body(67)
    pieces = body.split(b"]")
    # The second value's text moved into the first's piece: the same number of values.
    first, second = pieces[1], pieces[3]
    value = second[second.rindex(b"[") + 1 :]
    pieces[1] = first + b", " + first[: first.rindex(b"[") + 1] + value
    pieces[3] = value
    moved = b"]".join(pieces)
    assert decoder.decode(moved) is None
    with pytest.raises(FeatureError):
        parsers.parse_v2_infer(moved, MAX_ROWS)


def test_v2_template_is_not_made_of_requests_with_an_id_or_several_rows() -> None:
    decoder = V2JsonDecoder(MAX_ROWS)
    doc = json.loads(one_wine_body(68))
    assert decoder.decode(orjson.dumps(doc | {"id": "a"})) is not None
    assert decoder._template is None
    assert decoder.decode(orjson.dumps(v2_doc(random_wines(np.random.default_rng(69), 2))))
    assert decoder._template is None


def test_v2_other_layouts_still_decode_and_leave_the_template() -> None:
    body = one_wine_body(70)
    decoder = primed(body)
    template = decoder._template
    other = orjson.dumps(json.loads(one_wine_body(71)) | {"id": "b"})  # compact, with an id
    assert reads_as_the_parser(decoder.decode(other), other)
    assert decoder._template is template
    assert reads_as_the_parser(decoder.decode(body), body)
