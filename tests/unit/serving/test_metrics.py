"""The batch-fed quality histogram follows Prometheus histogram semantics."""

from __future__ import annotations

import numpy as np
from prometheus_client import generate_latest

from winequality.serving.metrics import ServingMetrics


def sample(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[-1])


def test_quality_histogram_counts_values_into_le_buckets() -> None:
    metrics = ServingMetrics()
    metrics.quality.observe_many(np.array([0.2, 5.0, 5.2, 10.0], dtype=np.float32))
    metrics.quality.observe_many(np.array([6.7], dtype=np.float32))
    text = generate_latest(metrics.registry).decode()
    assert sample(text, 'winequality_predicted_quality_bucket{le="0.5"}') == 1
    # A value equal to an edge belongs to it ("less than or equal").
    assert sample(text, 'winequality_predicted_quality_bucket{le="5.0"}') == 2
    assert sample(text, 'winequality_predicted_quality_bucket{le="5.5"}') == 3
    assert sample(text, 'winequality_predicted_quality_bucket{le="7.0"}') == 4
    assert sample(text, 'winequality_predicted_quality_bucket{le="10.0"}') == 5
    assert sample(text, 'winequality_predicted_quality_bucket{le="+Inf"}') == 5
    assert sample(text, "winequality_predicted_quality_count") == 5
    assert abs(sample(text, "winequality_predicted_quality_sum") - 27.1) < 1e-4


def test_model_info_keeps_only_the_served_model() -> None:
    metrics = ServingMetrics()
    metrics.set_model("wine-quality", "1", "r1", "onnx")
    metrics.set_model("wine-quality", "2", None, "onnx")
    text = metrics.exposition().decode()
    assert 'version="1"' not in text
    assert (
        'winequality_model_info{backend="onnx",name="wine-quality",run_id="",version="2"} 1.0'
        in text
    )
