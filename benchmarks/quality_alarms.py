"""Realized-quality alarms: does ``WineQualityDegraded`` fire on degraded labels only?

    uv run python -m benchmarks.quality_alarms [--data-dir DIR] [--seeds 1000]
        [--alpha A] [--min-labels N] [--mixture-labels R] [--every K] [--known-sd]

Real data (the two UCI CSVs), deduplicated and split as ``params.yaml`` ``prepare`` does; a real
model (the serving tests' ElasticNet, exported to ONNX and scored by the app's ``OnnxPredictor``,
so the scores are the float32 ones the app serves) trained on the training split; its test RMSE
and test bias are what a bundle's ``metadata.metrics["rmse"]`` / ``["bias"]`` state. Labelled
rows are drawn from the test split with replacement, one stream per seed, and on the same
streams three rules are evaluated after every ``--every`` labels (default 1, the strictest
reading of a rule that Prometheus evaluates once per scrape; at 10 labels/s and a 15 s scrape it
sees every 150th):

- ``ours``: the app's decision (``quality.degradation_path`` with the serving defaults unless
  overridden: the MSE test and the bias test, at ``--alpha`` together);
- ``baseline``: the previous rule, the MSE test alone at alpha 0.02 (the bias unknown);
- ``fixed``: the MSE test as a fixed-sample p < alpha at every look (what re-testing costs).

With ``--known-sd`` the MSE test's z uses the test split's standard deviation of the squared
errors instead of the stream's (the alternative ``serving.quality`` explains it rejects).

Streams:

- ``stable``: 5,000 labelled rows as they are; a fire anywhere in the stream is a false fire;
- ``shift +0.5``: 500 rows whose true quality is 0.5 higher (concept drift: same wines, other
  labels); a fire by the 500th label is a detection;
- ``shift +1 on half``: the same mean shift as the integer labels ``POST /feedback`` accepts
  (each label +1 with probability 1/2);
- ``noise +-1 on 40%``: labels off by one either way on 40 % of the rows (errors that spread
  without a bias; no bar, it shows what the MSE test is for).

Bars: every shifted stream fires by 500 labels, no stable stream ever fires.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import special
from tests.support.bundles import train_model, write_model_bundle

from winequality.contract import schema
from winequality.contract.parsers import frame_to_matrix
from winequality.data.ingest import read_uci_dir
from winequality.data.prepare import drop_duplicates, split
from winequality.inference.predictor import OnnxPredictor
from winequality.params import load_params
from winequality.serving import quality
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
BASELINE_ALPHA = 0.02
"""The level of the previous rule (the MSE test alone)."""


def scored_test_split(data_dir: Path) -> tuple[FloatArray, FloatArray]:
    """(labels, served scores) of the test split under a model of the train split."""
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
    return labels, served


Rule = Callable[[FloatArray, FloatArray], int | None]
"""(labels, served scores) -> label count of the first fire, or None."""


@dataclass(frozen=True)
class Champion:
    """What the bundle states about its test split."""

    rmse: float
    bias: float
    sd_squared_errors: float


def rules(args: argparse.Namespace, champion: Champion) -> dict[str, Rule]:
    def first(path: quality.DegradationPath, n: int) -> int | None:
        looks = np.zeros(n, dtype=bool)
        looks[args.every - 1 :: args.every] = True
        looks[-1] = True
        hits = np.flatnonzero(path.degraded & looks)
        return int(hits[0]) + 1 if hits.size else None

    def ours(y: FloatArray, served: FloatArray) -> int | None:
        path = quality.degradation_path(
            y,
            served,
            champion.rmse,
            champion.bias,
            alpha=args.alpha,
            min_labels=args.min_labels,
            mixture_labels=args.mixture_labels,
        )
        if args.known_sd:
            n = np.arange(1, len(y) + 1)
            mse = np.cumsum((y - served) ** 2) / n
            z = (mse - champion.rmse**2) / (champion.sd_squared_errors / np.sqrt(n))
            bias_fire = path.bias_z >= path.bias_z_threshold
            degraded = (n >= args.min_labels) & ((z >= path.z_threshold) | bias_fire)
            path = dataclasses.replace(path, z=z, degraded=degraded)
        return first(path, len(y))

    def baseline(y: FloatArray, served: FloatArray) -> int | None:
        path = quality.degradation_path(
            y, served, champion.rmse, alpha=BASELINE_ALPHA, min_labels=args.min_labels
        )
        return first(path, len(y))

    def fixed(y: FloatArray, served: FloatArray) -> int | None:
        path = quality.degradation_path(
            y, served, champion.rmse, alpha=args.alpha, min_labels=args.min_labels
        )
        p = 0.5 * special.erfc(path.z / np.sqrt(2.0))
        n = np.arange(1, len(y) + 1)
        fixed_path = dataclasses.replace(path, degraded=(n >= args.min_labels) & (p < args.alpha))
        return first(fixed_path, len(y))

    return {"ours": ours, "baseline": baseline, "fixed": fixed}


Relabel = Callable[[FloatArray, np.random.Generator], FloatArray]

STREAMS: dict[str, tuple[int, Relabel]] = {
    "stable": (STABLE_ROWS, lambda y, _: y),
    "shift +0.5": (SHIFTED_ROWS, lambda y, _: y + 0.5),
    "shift +1 on half": (SHIFTED_ROWS, lambda y, rng: y + rng.integers(0, 2, len(y))),
    "noise +-1 on 40%": (
        SHIFTED_ROWS,
        lambda y, rng: y + rng.choice([-1.0, 0.0, 1.0], len(y), p=[0.2, 0.6, 0.2]),
    ),
}


def run(
    name: str,
    data: tuple[FloatArray, FloatArray],
    rule_set: dict[str, Rule],
    seeds: int,
) -> dict[str, list[int | None]]:
    """First fires of every rule on the same ``seeds`` streams; one line per rule."""
    rows, relabel = STREAMS[name]
    labels, served = data
    fires: dict[str, list[int | None]] = {rule: [] for rule in rule_set}
    rmses = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        pick = rng.integers(0, len(labels), rows)
        y = relabel(labels[pick], rng)
        rmses.append(quality.realized_quality(y, served[pick]).rmse)
        for rule, decide in rule_set.items():
            fires[rule].append(decide(y, served[pick]))
    for rule, got in fires.items():
        hit = [f for f in got if f is not None]
        median = f"{int(np.median(hit))}" if hit else "-"
        p90 = f"{int(np.percentile(hit, 90))}" if hit else "-"
        print(
            f"{name:<18} {rule:<9} {rows:>6} {seeds:>6} {len(hit) / seeds:>8.1%} {median:>9}"
            f" {p90:>7} {np.median(rmses):>10.3f}"
        )
    return fires


def main(argv: list[str] | None = None) -> int:
    defaults = ServingSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=defaults.quality_alpha)
    parser.add_argument("--min-labels", type=int, default=defaults.quality_min_labels)
    parser.add_argument("--mixture-labels", type=float, default=quality.MIXTURE_LABELS)
    parser.add_argument(
        "--known-sd",
        action="store_true",
        help="ours with the test split's sd of the squared errors instead of the stream's",
    )
    parser.add_argument("--every", type=int, default=1, help="labels between evaluations")
    args = parser.parse_args(argv)

    labels, served = scored_test_split(args.data_dir)
    q = quality.realized_quality(labels, served)
    champion = Champion(q.rmse, q.bias, float(np.std((labels - served) ** 2, ddof=1)))
    print(
        f"test split: {len(labels)} rows, test RMSE {champion.rmse:.4f}, test bias"
        f" {champion.bias:+.4f}; ours: MSE + bias tests, alpha {args.alpha:g}"
        f" (bias share {quality.BIAS_SHARE:g}){', known sd' if args.known_sd else ''};"
        f" baseline: MSE test alone, alpha {BASELINE_ALPHA:g}; fixed: p < {args.alpha:g} at every"
        f" look; mixture labels {args.mixture_labels:g}, min labels {args.min_labels};"
        f" evaluated every {args.every} label(s)"
    )
    print(
        f"{'stream':<18} {'rule':<9} {'rows':>6} {'seeds':>6} {'fired':>8} {'median n':>9}"
        f" {'p90 n':>7} {'med RMSE':>10}"
    )
    rule_set = rules(args, champion)
    fires = {name: run(name, (labels, served), rule_set, args.seeds) for name in STREAMS}
    bars_ok = True
    for rule in rule_set:
        false_rate = sum(f is not None for f in fires["stable"][rule]) / args.seeds
        bars = {
            "no stable stream of 5,000 labels fires": false_rate == 0.0,
            "every +0.5 stream fires by 500 labels": all(
                f is not None for f in fires["shift +0.5"][rule]
            ),
            "every +1-on-half stream fires by 500 labels": all(
                f is not None for f in fires["shift +1 on half"][rule]
            ),
        }
        verdict = ", ".join(f"{bar}: {'PASS' if ok else 'FAIL'}" for bar, ok in bars.items())
        print(f"{rule}: false-fire rate {false_rate:.2%} of {args.seeds} streams; {verdict}")
        if rule == "ours":
            bars_ok = all(bars.values())
    return 0 if bars_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
