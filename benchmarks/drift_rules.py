"""Which sequential rule: candidates over the same per-window scores, all at the same budget.

    uv run python benchmarks/drift_rules.py [--stable-windows 5000] [--shift-windows 300]

Per-window p-values come from ``detector.detect`` on real windows of 200 rows (reference: 1,000
deduplicated mixed rows, as in ``drift_alarms.py``); every candidate is calibrated the way
``monitoring.sequential`` calibrates (pseudo-references bootstrapped from the reference,
``--budget`` rows between false alarms) and run on the same streams: ``--stable-windows`` stable
windows (false alarms, each resetting the rule), then, ``--repeats`` times, 10 stable windows
followed by fully shifted ones (windows to alarm; ``drift_alarms.py`` measures rows, with
windows that straddle the change). Candidates: one CUSUM per test (the rule kept) for several
``k``, one CUSUM over the largest score of a window, one over the sum of the scores, and
persistence (``m`` consecutive windows whose largest score exceeds a calibrated level).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drift_alarms import DEFAULT_DATA, SCENARIOS, load_split, shifted_rows, stable_stream
from winequality.contract.features import FloatArray
from winequality.monitoring import sequential as sq
from winequality.monitoring.detector import (
    detect,
)
from winequality.params import DriftParams


@dataclass
class Rule:
    """A rule as (initial state, step(state, scores) -> (state, alarm)) and its threshold."""

    init: Callable[[], Any]
    step: Callable[[Any, FloatArray], tuple[Any, bool]]
    threshold: float


def cusum_threshold(null: FloatArray, k: float, target_windows: float) -> float:
    """``null`` [pseudo, chart, window] scores -> threshold, exactly as ``sq.calibrate``."""
    inc = null - k
    theta = sq.adjustment_coefficient(inc)
    mu, sd = inc.mean(axis=-1), inc.std(axis=-1)
    factor = sq.anchor_factor(inc, theta, mu, sd)
    return sq.threshold_for(target_windows * factor, theta, mu, sd)


def per_test(null: FloatArray, k: float, target: float) -> Rule:
    h = cusum_threshold(np.moveaxis(null, 1, -1), k, target)

    def step(s: FloatArray, z: FloatArray) -> tuple[FloatArray, bool]:
        s = np.clip(s + z - k, 0.0, 2 * h)
        return s, bool((s > h).any())

    return Rule(lambda: np.zeros(null.shape[-1]), step, h)


def aggregate(
    null: FloatArray, k: float, target: float, reduce: Callable[[FloatArray], FloatArray]
) -> Rule:
    h = cusum_threshold(reduce(null)[:, None, :], k, target)

    def step(s: float, z: FloatArray) -> tuple[float, bool]:
        s = min(max(s + float(reduce(z[None])[0]) - k, 0.0), 2 * h)
        return s, s > h

    return Rule(lambda: 0.0, step, h)


def persistence(null: FloatArray, m: int, target: float) -> Rule:
    top = null.max(axis=-1)  # [pseudo, window]
    level = 8.0
    for c in np.linspace(2.0, 8.0, 601):
        q = (top > c).mean(axis=1)
        if np.mean(q**m * (1 - q)) <= 1 / target:
            level = float(c)
            break

    def step(n: int, z: FloatArray) -> tuple[int, bool]:
        n = n + 1 if z.max() > level else 0
        return n, n >= m

    return Rule(lambda: 0, step, level)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stable-windows", type=int, default=5000)
    parser.add_argument("--shift-windows", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--budget", type=int, default=DriftParams().false_alarm_rows)
    args = parser.parse_args()

    split = load_split(args.data_dir, 1000, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    params = DriftParams()
    window = params.window_size

    def scores_of(x: FloatArray, white: Any) -> FloatArray:
        rows = range(0, x.shape[0], window)
        return np.array(
            [
                sq.result_scores(
                    detect(split.reference, x[i : i + window], white[i : i + window], params)
                )
                for i in rows
            ]
        )

    stable = stable_stream(split, args.stable_windows * window, rng)
    stable_z = scores_of(stable.x, stable.white)
    shifted = {}
    for s in SCENARIOS:
        rows = shifted_rows(split, s, args.shift_windows * window, rng)
        shifted[s] = scores_of(rows.x, rows.white)
    null = sq.null_scores(split.reference, window, 64, 500, 0)
    target = args.budget / window
    rules = {f"per-test CUSUM k={k}": per_test(null, k, target) for k in (1.0, 1.5, 2.0, 2.5)}
    for k in (2.5, 3.0):
        rules[f"max-score CUSUM k={k}"] = aggregate(null, k, target, lambda z: z.max(axis=-1))
    for k in (1.0, 2.0):
        rules[f"sum-score CUSUM k={k}"] = aggregate(
            null, k, target, lambda z: z.sum(axis=-1) / np.sqrt(z.shape[-1])
        )
    for m in (2, 3, 4):
        rules[f"persistence m={m}"] = persistence(null, m, target)

    print(
        f"budget {args.budget:,} rows; false alarms in {args.stable_windows} stable windows "
        f"({args.stable_windows * window:,} rows); windows to alarm after the first fully "
        f"shifted window, median / p90 ({args.repeats} repeats)"
    )
    print(f"{'rule':24s} {'threshold':>9s} {'FA':>4s}" + "".join(f"  {s:>18s}" for s in SCENARIOS))
    for name, rule in rules.items():
        state, raises = rule.init(), 0
        for z in stable_z:
            state, alarm = rule.step(state, z)
            if alarm:
                raises += 1
                state = rule.init()
        cells = []
        for s in SCENARIOS:
            delays = []
            for _ in range(args.repeats):
                state = rule.init()
                for z in stable_z[rng.integers(0, len(stable_z), 10)]:
                    state, _ = rule.step(state, z)
                delay = np.inf
                for t in range(1, 60):
                    state, alarm = rule.step(state, shifted[s][rng.integers(0, len(shifted[s]))])
                    if alarm:
                        delay = t
                        break
                delays.append(delay)
            med, p90 = np.median(delays), np.quantile(delays, 0.9)
            cells.append(
                f"{med:>8.0f} / {p90:>6.0f}" if np.isfinite(p90) else f"{med:>8.0f} /  inf"
            )
        print(
            f"{name:24s} {rule.threshold:9.2f} {raises:4d}" + "".join(f"  {c:>18s}" for c in cells)
        )


if __name__ == "__main__":
    main()
