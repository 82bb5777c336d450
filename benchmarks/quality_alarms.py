"""Realized-quality alarms: does ``WineQualityDegraded`` fire on degraded labels only?

    uv run python -m benchmarks.quality_alarms [--data-dir DIR] [--seeds 200]
        [--alpha A] [--min-labels N] [--mixture-labels R] [--every K] [--fixed]

Real data (the two UCI CSVs), deduplicated and split as ``params.yaml`` ``prepare`` does; a real
model (the serving tests' ElasticNet, exported to ONNX and scored by the app's ``OnnxPredictor``,
so the scores are the float32 ones the app serves) trained on the training split; its test RMSE
is what a bundle's ``metadata.metrics["rmse"]`` states. Labelled rows are drawn from the test split
with replacement, one stream per seed, and the app's decision (``quality.degradation_test`` with
the serving defaults unless overridden) is evaluated after every ``--every`` labels (default 1,
the strictest reading of a rule that Prometheus evaluates once per scrape; at 10 labels/s and a
15 s scrape it sees every 150th):

- ``stable``: 5,000 labelled rows as they are; a fire anywhere in the stream is a false fire;
- ``shift +0.5``: 500 rows whose true quality is 0.5 higher (concept drift: same wines, other
  labels); a fire by the 500th label is a detection;
- ``shift +1 on half``: the same mean shift as the integer labels ``POST /feedback`` accepts
  (each label +1 with probability 1/2).

Bars: every shifted stream fires by 500 labels, no stable stream ever fires.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tests.support.bundles import train_model, write_model_bundle

from winequality.contract import schema
from winequality.contract.parsers import frame_to_matrix
from winequality.data.ingest import read_uci_dir
from winequality.data.prepare import drop_duplicates, split
from winequality.inference.predictor import OnnxPredictor
from winequality.params import load_params
from winequality.serving.quality import MIXTURE_LABELS, degradation_test, realized_quality
from winequality.settings import ServingSettings

FloatArray = npt.NDArray[np.float64]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = next(
    (
        p
        for p in (Path("/work/shared/data/wine-quality"), ROOT.parent / "shared/data/wine-quality")
        if p.is_dir()
    ),
    ROOT.parent / "shared/data/wine-quality",
)
STABLE_ROWS = 5_000
SHIFTED_ROWS = 500


def scored_test_split(data_dir: Path) -> tuple[FloatArray, FloatArray, float]:
    """(labels, served scores, test RMSE) of the test split under a model of the train split."""
    params = load_params(ROOT / "params.yaml").prepare
    wines, _ = drop_duplicates(read_uci_dir(data_dir))
    train, test = split(wines, params.test_size, params.seed)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = write_model_bundle(Path(tmp) / "bundle", train_model(train))
        predictor = OnnxPredictor(bundle)
        scores = asyncio.run(predictor.predict(frame_to_matrix(test))).quality
        asyncio.run(predictor.close())
    labels = test[schema.TARGET].to_numpy(dtype=np.float64)
    served = scores.astype(np.float64)
    return labels, served, realized_quality(labels, served).rmse


Rule = Callable[[FloatArray, FloatArray], bool]
"""(labels so far, served scores so far) -> degraded?"""


def rule_for(args: argparse.Namespace, test_rmse: float) -> Rule:
    """The app's sequential decision, or (``--fixed``) a fixed-sample p < alpha at every look."""

    def decide(y: FloatArray, served: FloatArray) -> bool:
        test = degradation_test(
            y,
            served,
            test_rmse,
            alpha=args.alpha,
            min_labels=args.min_labels,
            mixture_labels=args.mixture_labels,
        )
        if args.fixed:
            return test.labels >= args.min_labels and test.p_value < args.alpha
        return test.degraded

    return decide


def first_fire(
    labels: FloatArray, served: FloatArray, rule: Rule, start: int, every: int
) -> int | None:
    """Label count at which the rule first says degraded, or None."""
    looks = [*range(every, len(labels), every), len(labels)]
    for n in (n for n in looks if n >= max(start, 2)):
        if rule(labels[:n], served[:n]):
            return n
    return None


def run(
    name: str,
    rows: int,
    relabel: Callable[[FloatArray, np.random.Generator], FloatArray],
    data: tuple[FloatArray, FloatArray, float],
    args: argparse.Namespace,
) -> list[int | None]:
    seeds = args.seeds
    rule = rule_for(args, data[2])
    labels, served, _ = data
    fires: list[int | None] = []
    rmses = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        pick = rng.integers(0, len(labels), rows)
        y = relabel(labels[pick], rng)
        rmses.append(realized_quality(y, served[pick]).rmse)
        fires.append(first_fire(y, served[pick], rule, args.min_labels, args.every))
    hit = [f for f in fires if f is not None]
    median = f"{int(np.median(hit))}" if hit else "-"
    p90 = f"{int(np.percentile(hit, 90))}" if hit else "-"
    print(
        f"{name:<20} {rows:>6} {seeds:>6} {len(hit) / seeds:>8.1%} {median:>9} {p90:>7}"
        f" {np.median(rmses):>10.3f}"
    )
    return fires


def main(argv: list[str] | None = None) -> int:
    defaults = ServingSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=defaults.quality_alpha)
    parser.add_argument("--min-labels", type=int, default=defaults.quality_min_labels)
    parser.add_argument("--mixture-labels", type=float, default=MIXTURE_LABELS)
    parser.add_argument(
        "--fixed", action="store_true", help="baseline: fixed-sample p < alpha at every look"
    )
    parser.add_argument("--every", type=int, default=1, help="labels between evaluations")
    args = parser.parse_args(argv)

    data = scored_test_split(args.data_dir)
    labels, _, test_rmse = data
    print(
        f"test split: {len(labels)} rows, test RMSE {test_rmse:.4f};"
        f" {'fixed-sample p < alpha' if args.fixed else 'sequential boundary'}, alpha"
        f" {args.alpha:g}, mixture labels {args.mixture_labels:g}, min labels {args.min_labels};"
        f" decision evaluated every {args.every} label(s)"
    )
    print(
        f"{'stream':<20} {'rows':>6} {'seeds':>6} {'fired':>8} {'median n':>9} {'p90 n':>7}"
        f" {'med RMSE':>10}"
    )
    stable = run(
        "stable",
        STABLE_ROWS,
        lambda y, _: y,
        data,
        args,
    )
    shifted = run(
        "shift +0.5",
        SHIFTED_ROWS,
        lambda y, _: y + 0.5,
        data,
        args,
    )
    half = run(
        "shift +1 on half",
        SHIFTED_ROWS,
        lambda y, rng: y + rng.integers(0, 2, len(y)),
        data,
        args,
    )
    false_rate = sum(f is not None for f in stable) / len(stable)
    bars = {
        "no stable stream of 5,000 labels fires": false_rate == 0.0,
        "every +0.5 stream fires by 500 labels": all(f is not None for f in shifted),
        "every +1-on-half stream fires by 500 labels": all(f is not None for f in half),
    }
    print(f"false-fire rate (stable): {false_rate:.2%} of {len(stable)} streams")
    for bar, ok in bars.items():
        print(f"bar: {bar}: {'PASS' if ok else 'FAIL'}")
    return 0 if all(bars.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
