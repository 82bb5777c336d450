"""Triton Python-backend model ``postprocess``: raw score -> quality and quality_class.

The rule is ``winequality.contract.features.postprocess``, imported from the copy shipped in
this version directory: the same function the app applies in process.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# See preprocess.py: the shipped copies take precedence over any installed winequality.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import triton_python_backend_utils as pb_utils

from winequality.contract import schema
from winequality.contract.features import postprocess


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            scores = pb_utils.get_input_tensor_by_name(request, schema.ONNX_OUTPUT).as_numpy()
            quality, quality_class = postprocess(scores)
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor(schema.OUTPUT_QUALITY, quality.reshape(-1, 1)),
                        pb_utils.Tensor(schema.OUTPUT_CLASS, quality_class.reshape(-1, 1)),
                    ]
                )
            )
        return responses
