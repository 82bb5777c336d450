"""Drift detector throughput: rows/s tested against the reference, ours vs a naive scipy loop.

    uv run python benchmarks/drift.py [--data-dir DIR] [--window 200] [--windows 300]

"ours" is ``detector.detect`` (one vectorised KS pass over the 11 features, asymptotic p-values,
chi-squared for wine_type, Bonferroni). The baselines call ``scipy.stats.ks_2samp`` once per
feature: with scipy's default method (exact p-values at these sample sizes, what a naive
implementation gets) and with ``method="asymp"`` (same p-values as ours).

"service ingestion" is what the detector service does per POST from the app, minus HTTP: parse a
CloudEvents batch of one-wine requests (built by the app's own ``EventEncoder``, responses
included), read the rows, fill the window, test every full one, step the sequential charts and
hand the state to its writer thread (persisted to a file, as the service does).
Target: >= 50,000 rows/s with a 1000-row reference and 200-row windows.
"""

from __future__ import annotations

import argparse
import gc
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from scipy import stats

from winequality.contract.parsers import frame_rows
from winequality.data.ingest import read_uci_dir
from winequality.monitoring.detector import (
    build_reference,
    correct,
    detect,
    type_counts,
    wine_type_test,
)
from winequality.monitoring.service import DetectorState, apply_events
from winequality.params import DriftParams
from winequality.serving.payload_logger import EventEncoder, Exchange

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wine-quality"


def naive(method: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], bool]:
    def run(ref_x: np.ndarray, ref_white: np.ndarray, x: np.ndarray, white: np.ndarray) -> bool:
        p = [stats.ks_2samp(ref_x[:, j], x[:, j], method=method).pvalue for j in range(11)]
        p.append(wine_type_test(type_counts(ref_white), type_counts(white))[1])
        return bool(correct(np.asarray(p), 0.05, "bonferroni")[0].any())

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--reference", type=int, default=1000)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--windows", type=int, default=300)
    args = parser.parse_args()

    wines = read_uci_dir(args.data_dir)
    x_all, white_all = frame_rows(wines)
    rng = np.random.default_rng(0)
    ref_rows = rng.choice(len(x_all), size=args.reference, replace=False)
    ref_x, ref_white = x_all[ref_rows], white_all[ref_rows]
    reference = build_reference(ref_x, ref_white)
    windows = [rng.choice(len(x_all), size=args.window, replace=False) for _ in range(args.windows)]
    params = DriftParams(window_size=args.window)

    def ours(_: np.ndarray, __: np.ndarray, x: np.ndarray, white: np.ndarray) -> bool:
        return detect(reference, x, white, params).is_drift

    candidates = {
        "ours (vectorised KS, asymp)": ours,
        "baseline: ks_2samp loop (asymp)": naive("asymp"),
        "baseline: ks_2samp loop (default: exact)": naive("auto"),
    }
    print(
        f"reference {args.reference} rows, {args.windows} windows of {args.window} rows, "
        f"11 features + wine_type"
    )
    print(f"{'detector':44s} {'ms/window':>10s} {'rows/s':>12s} {'drifted':>8s}")
    figures = {}
    for name, fn in candidates.items():
        fn(ref_x, ref_white, x_all[windows[0]], white_all[windows[0]])  # warm-up
        start = time.perf_counter()
        flagged = sum(fn(ref_x, ref_white, x_all[w], white_all[w]) for w in windows)
        elapsed = time.perf_counter() - start
        rate = args.windows * args.window / elapsed
        figures[name] = rate
        print(
            f"{name:44s} {1000 * elapsed / args.windows:10.2f} {rate:12,.0f} "
            f"{flagged:>5d}/{args.windows}"
        )
    base = figures["baseline: ks_2samp loop (default: exact)"]
    print(
        f"speed-up of ours over the default scipy loop: {figures[next(iter(figures))] / base:.1f}x"
    )
    rows = args.window * args.windows
    rate = ingestion(wines.iloc[ref_rows], wines.sample(rows, replace=True, random_state=1), params)
    print(f"{'service ingestion (batches of 1,000 events)':44s} {'':>10s} {rate:12,.0f}")


def ingestion(reference: pd.DataFrame, live: pd.DataFrame, params: DriftParams) -> float:
    """Rows/s through the service's batch path, for ``live`` sent one wine per request."""
    logging.getLogger("winequality.drift").setLevel(logging.ERROR)  # a line per drifted window
    encoder = EventEncoder("winequality-app/bench")
    columns = [c for c in live.columns if c != "quality"]
    response = b'{"predictions":[{"quality":5.0,"quality_class":5}]}'
    events = [
        encoder.encode(
            Exchange(f"r{i}", "wine-quality", 0.0, orjson.dumps({"wines": [w]}), response)
        )
        for i, w in enumerate(live[columns].to_dict("records"))
    ]
    batches = [b"[" + b",".join(events[i : i + 500]) + b"]" for i in range(0, len(events), 500)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reference.parquet"
        reference.to_parquet(path)
        state = DetectorState(
            params=params, reference_path=path, state_file=Path(tmp) / "drift-state.json"
        )
        state.load()  # calibrates the sequential threshold (not timed: once per reference)
        gc.collect()
        gc.freeze()  # as the service does once started
        start = time.perf_counter()
        for batch in batches:
            apply_events(state, batch, batched=True)
        elapsed = time.perf_counter() - start
        assert state.writer is not None
        state.writer.close()
        assert (Path(tmp) / "drift-state.json").is_file()
    assert state.metrics.registry.get_sample_value("wineq_drift_rows_total") == len(live)
    return len(live) / elapsed


if __name__ == "__main__":
    main()
