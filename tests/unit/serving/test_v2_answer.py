"""V2 answers from templates are the documents orjson writes, byte for byte."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from winequality.contract import schema
from winequality.inference.predictor import Prediction
from winequality.serving.routes.v2 import AnswerEncoder
from winequality.serving.v2_decode import V2Infer

OUTPUTS = [
    (schema.OUTPUT_QUALITY, schema.OUTPUT_CLASS),
    (schema.OUTPUT_CLASS, schema.OUTPUT_QUALITY),
    (schema.OUTPUT_CLASS,),
    (),
]


def document(version: str, request_id: str, request: V2Infer, prediction: Prediction) -> bytes:
    n = len(request.matrix)
    data = {
        schema.OUTPUT_QUALITY: ("FP32", prediction.quality.tolist()),
        schema.OUTPUT_CLASS: ("INT32", prediction.quality_class.tolist()),
    }
    return orjson.dumps(
        {
            "model_name": schema.MODEL_NAME,
            "model_version": version,
            "id": request_id,
            "outputs": [
                {
                    "name": name,
                    "datatype": data[name][0],
                    "shape": [n, 1] if request.column_shape else [n],
                    "data": data[name][1],
                }
                for name in request.outputs
            ],
        }
    )


@pytest.mark.parametrize("outputs", OUTPUTS)
@pytest.mark.parametrize("column_shape", [True, False])
@pytest.mark.parametrize("n", [1, 3, 100])
def test_answers_are_the_documents_orjson_writes(
    outputs: tuple[str, ...], column_shape: bool, n: int
) -> None:
    rng = np.random.default_rng(n)
    quality = rng.uniform(0, 10, n).astype(np.float32)
    prediction = Prediction(quality, np.rint(quality).astype(np.int32))
    request = V2Infer(np.zeros((n, 12), np.float32), None, column_shape, outputs)
    encoder = AnswerEncoder()
    for version, request_id in [("7", "ab12"), ('v"%s@id@', 'x"\\%d\u00e9'), ("@id@", "@rows@")]:
        for _ in range(2):  # a template made, then reused
            got = encoder.encode(version, request_id, request, prediction)
            assert got == document(version, request_id, request, prediction)


def test_templates_kept_are_bounded() -> None:
    encoder = AnswerEncoder()
    prediction = Prediction(np.ones(1, np.float32), np.ones(1, np.int32))
    request = V2Infer(np.zeros((1, 12), np.float32), None, True, OUTPUTS[0])
    for i in range(AnswerEncoder.max_templates + 5):
        got = encoder.encode(str(i), "r", request, prediction)
        assert got == document(str(i), "r", request, prediction)
        assert len(encoder._templates) <= AnswerEncoder.max_templates


def test_answers_alternating_outputs_and_shapes_each_get_their_own_template() -> None:
    encoder = AnswerEncoder()
    prediction = Prediction(np.array([6.25], np.float32), np.array([6], np.int32))
    requests = [
        V2Infer(np.zeros((1, 12), np.float32), None, shape, outputs)
        for outputs in OUTPUTS
        for shape in (True, False)
    ]
    for _ in range(3):
        for request in requests:
            got = encoder.encode("7", "ab12", request, prediction)
            assert got == document("7", "ab12", request, prediction)


@pytest.mark.parametrize("klass", [-1, 11, 2**31 - 1])
def test_a_single_row_class_off_the_scale_is_written_as_it_is(klass: int) -> None:
    # No text is kept for a class off the scale: orjson writes it, as for several rows.
    prediction = Prediction(np.array([6.25], np.float32), np.array([klass], np.int32))
    request = V2Infer(np.zeros((1, 12), np.float32), None, True, OUTPUTS[0])
    got = AnswerEncoder().encode("7", "ab12", request, prediction)
    assert got == document("7", "ab12", request, prediction)
