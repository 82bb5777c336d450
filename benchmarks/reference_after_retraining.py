"""Which reference should the detector load after a drift retraining? Flag rates, measured.

    uv run python benchmarks/reference_after_retraining.py [--data-dir DIR] [--windows 2000]

The README's demo on the real UCI data: ``prepare`` (dedup, stratified split, 1,000-row mixed
reference), then ``simulate --scenario drift --rows 600`` (white wines only, all labelled) and
the retraining's own ``refresh_data``. Each candidate reference is then tested, with the
detector's own ``detect`` and the ``drift:`` params of ``params.yaml``, against windows resampled
from three streams: mixed held-out rows (``simulate --scenario stable``: the test split), white
wines the drift scenario did not send, and the drifted white feedback itself. The figure is the
share of windows flagged (one window, no sequential rule: the per-window false-alarm rate the
decision rule starts from).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from winequality.contract import schema
from winequality.contract.parsers import frame_rows
from winequality.data.ingest import read_uci_dir
from winequality.data.prepare import prepare
from winequality.monitoring.detector import detect, reference_from_frame
from winequality.params import load_params
from winequality.pipeline.retrain import refresh_data, training_reference
from winequality.simulate import traffic


def flag_rate(
    reference: pd.DataFrame, stream: pd.DataFrame, windows: int, size: int, seed: int
) -> float:
    params = load_params().drift
    ref = reference_from_frame(reference)
    measurements, is_white = frame_rows(stream)
    rng = np.random.default_rng(seed)
    flagged = 0
    for _ in range(windows):
        rows = rng.integers(0, len(stream), size)
        flagged += detect(ref, measurements[rows], is_white[rows], params).is_drift
    return flagged / windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/wine-quality"))
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--drift-rows", type=int, default=600)
    args = parser.parse_args()

    params = load_params()
    wines = read_uci_dir(args.data_dir)
    p = params.prepare
    train, test, original, _ = prepare(wines, p.test_size, p.reference_size, p.seed)
    feedback = traffic("drift", args.drift_rows, data=args.data_dir, test_split=Path("-"))
    data = refresh_data(train, test, feedback, params.retrain)
    whites = wines[wines[schema.WINE_TYPE] == "white"].loc[:, list(schema.DATA_COLUMNS)]
    unsent = whites.merge(feedback.drop_duplicates(), how="left", indicator=True)
    unsent = unsent[unsent["_merge"] == "left_only"].drop(columns="_merge")

    size = params.retrain.reference_size
    candidates = {
        "original (prepare: training split)": original,
        # What the loop loaded before: the newest labelled production rows.
        "recent production (600 white feedback)": feedback.iloc[-size:],
        "new training data (base + feedback)": training_reference(data.train, size, p.seed),
    }
    streams = {
        "mixed held-out (stable)": test,
        "white, not yet sent": unsent,
        "white feedback (the drift)": feedback,
    }
    window = params.drift.window_size
    print(f"window {window} rows, p_val {params.drift.p_val} {params.drift.correction}, "
          f"{args.windows} resampled windows per cell; share of windows flagged")  # fmt: skip
    print(f"{'reference':42s}" + "".join(f"{s:>28s}" for s in streams))
    for name, reference in candidates.items():
        white_share = (reference[schema.WINE_TYPE] == "white").mean()
        cells = [
            flag_rate(reference, stream, args.windows, window, seed=i)
            for i, stream in enumerate(streams.values())
        ]
        label = f"{name} [{len(reference)} rows, {white_share:.0%} white]"
        print(f"{label:42s}" + "".join(f"{c:>28.4f}" for c in cells))


if __name__ == "__main__":
    main()
