"""A V2 request whose names, datatypes or parameters are not what JSON says they must be is a
``FeatureError`` naming the part (a 422), never a ``TypeError`` (a 500): JSON and binary."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from winequality.contract import schema
from winequality.contract.parsers import parse_v2_infer
from winequality.contract.problems import FeatureError
from winequality.monitoring.payloads import rows_from_payload


def _request(binary: bool, **changes: Any) -> tuple[bytes, int | None]:
    inputs: list[dict[str, Any]] = []
    raw = b""
    for f in schema.FEATURES:
        tensor: dict[str, Any] = {"name": f.name, "shape": [1], "datatype": "FP32"}
        if binary:
            tensor["parameters"] = {"binary_data_size": 4}
            raw += struct.pack("<f", f.example)
        else:
            tensor["data"] = [f.example]
        inputs.append(tensor)
    inputs.append({"name": schema.WINE_TYPE, "shape": [1], "datatype": "BYTES", "data": ["red"]})
    inputs[0] |= changes
    header = json.dumps({"inputs": inputs}).encode()
    return header + raw, (len(header) if binary else None)


ODD = [["alcohol"], {"a": 1}, 5, None, True]
CASES = [
    (part, value)
    for part in ("name", "datatype", "parameters")
    for value in ODD
    # No parameters, or an object of them, is valid.
    if not (part == "parameters" and (value is None or type(value) is dict))
]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(
    ("part", "value"), CASES, ids=[f"{p}-{type(v).__name__}" for p, v in CASES]
)
def test_odd_json_types_are_refused_naming_the_part(binary: bool, part: str, value: Any) -> None:
    body, json_length = _request(binary, **{part: value})
    with pytest.raises(FeatureError) as refused:
        parse_v2_infer(body, 100, json_length)
    assert any(
        part in p.loc or p.kind in ("extra_forbidden", "binary") for p in refused.value.problems
    )


@pytest.mark.parametrize("value", [["alcohol"], {"a": 1}])
def test_the_detector_reads_odd_tensor_names_as_a_refusal(value: Any) -> None:
    body, _ = _request(False, name=value)
    with pytest.raises(FeatureError):
        rows_from_payload(json.loads(body))
