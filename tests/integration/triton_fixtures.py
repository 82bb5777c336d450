"""A real Triton server (the one bundled in nvidia-pytriton) serving a real model bundle.

The model is a StandardScaler + ElasticNet fitted on the real UCI wines, exported to ONNX and
written as a bundle, then as a model repository (``python`` variant: the bundled server has no
onnxruntime backend). Used by the module-scoped fixtures of tests/integration/test_triton.py
(Triton takes a few seconds to start: one server for the module) and by
benchmarks/triton_proxy.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.linear_model import ElasticNet
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from winequality import artifacts
from winequality.bundled_triton import TritonServer, ensure_tritonserver, start_tritonserver
from winequality.contract import schema
from winequality.contract.parsers import frame_to_matrix
from winequality.export.onnx import export_onnx
from winequality.settings import ProjectSettings


def train_bundle(dest: Path, wines: pd.DataFrame, version: str = "1") -> Path:
    """Fit, export and write a bundle for ``wines`` (real data, real ONNX)."""
    pipeline = make_pipeline(StandardScaler(), ElasticNet(alpha=0.001, l1_ratio=0.5))
    pipeline.fit(frame_to_matrix(wines), wines[schema.TARGET].to_numpy())
    metadata = artifacts.ModelMetadata(version=version, family="elasticnet")
    return artifacts.write_bundle(dest, export_onnx(pipeline), metadata)


def start_server(repository: Path, log_dir: Path) -> TritonServer:
    """Fetch the server into the cache once, then start it on free loopback ports."""
    dist = ensure_tritonserver(ProjectSettings().cache_dir)
    return start_tritonserver(repository, dist, log_dir / "tritonserver.log")
