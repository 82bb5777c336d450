"""Triton Python-backend model running ``model.onnx`` with onnxruntime.

For Triton builds without the onnxruntime backend (the server bundled in the nvidia-pytriton
wheel). Tensor names come from the generated config.pbtxt, identical to the
``onnxruntime_onnx`` variant's, so the ensemble is the same either way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        options = ort.SessionOptions()
        # One instance per core is the scaling knob (instance_group), not threads per call.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests: list[Any]) -> list[Any]:
        # The dynamic batcher hands over several requests at once: one onnxruntime call for all.
        batches = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        (scores,) = self.session.run([self.output], {self.input: np.concatenate(batches)})
        scores = np.asarray(scores, dtype=np.float32)
        bounds = np.cumsum([len(b) for b in batches])[:-1]
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(self.output, part)])
            for part in np.split(scores, bounds)
        ]
