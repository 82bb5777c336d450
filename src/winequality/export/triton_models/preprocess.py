"""Triton Python-backend model ``preprocess``: named V2 inputs -> the validated model matrix.

Validation, column order and casting are ``winequality.contract.features.columns_to_matrix``,
the function the app runs in process, imported from the copy shipped in this version directory.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# The copies next to this file win over any installed winequality, so the repository behaves
# the same on the official Triton image (where only the copies exist) and on a dev machine.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import triton_python_backend_utils as pb_utils

from winequality.contract import schema
from winequality.contract.features import columns_to_matrix
from winequality.contract.problems import FeatureError


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            columns = {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in schema.FEATURE_NAMES
            }
            wine_type = pb_utils.get_input_tensor_by_name(request, schema.WINE_TYPE).as_numpy()
            try:
                matrix = columns_to_matrix(columns, wine_type.reshape(-1))
            except FeatureError as exc:
                # INVALID_ARG reaches the client as HTTP 400 / gRPC INVALID_ARGUMENT, with the
                # rows, fields and reasons in the message.
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor(schema.ONNX_INPUT, matrix)])
            )
        return responses
