"""Drift alarms over time: false alarms per million stable rows and detection delays.

    uv run python benchmarks/drift_alarms.py [--stable-rows 1000000] [--repeats 200]
        [--budget 10000000] [--k 2.0] [--no-alibi] [--alibi-ert 2000] [--alibi-stable-rows 10000]

Real data (``--data-dir``, the two UCI CSVs), deduplicated: the reference is 1,000 mixed red/white
rows, stable traffic is the other rows resampled. Three rules on the same streams:

- ``latch (today)``: ``seldon_metric_drift_found`` as the service sets it now, 1 from the first
  window whose Bonferroni-corrected test fires;
- ``sequential``: ``monitoring.sequential`` (per-test CUSUM, threshold calibrated on the reference
  for ``--budget`` stable rows between false alarms);
- ``alibi CVMDriftOnline``: Alibi Detect's online Cramér-von Mises detector in its own venv
  (``winequality drift alibi-venv``), configured for ``--alibi-ert`` rows, run in a subprocess.

Every alarm counts as a retraining: the rule that raised it is reset (as a reference reload
does) and the stream goes on. False alarms: raises per million rows of a stable stream. Delay:
rows from the first shifted row to the end of the batch in which the rule raises its alarm, over
``--repeats`` streams of a random stable prefix (so windows straddle the change) followed by
shifted rows: white-only traffic, alcohol + 0.3 reference sd, the 60 % of wines with the most
alcohol. Alarms raised during the prefix are false alarms (counted, the rule reset).

The rules are driven through a ``Monitor`` (``feed(rows) -> decision per rule``, ``reset``):
``InProcessMonitor`` runs the detector's own per-window computation (``detector.detect``) in
process; ``main(extra_monitors=...)`` runs more monitors on the same streams. ``--service`` adds
one: the real detector service (``winequality drift serve``, a child process on loopback, the
same reference and parameters), fed each batch of rows as one CloudEvents batch of one-wine
requests and their responses (the app's own ``EventEncoder``), its decision read from
``seldon_metric_drift_found`` on ``/metrics``, reset by ``POST /reference/reload``.
``--service-stable-rows`` caps the stable rows it is fed (HTTP costs far more per row than the
in-process rules; the rows/s are printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
import numpy as np
import orjson
import pandas as pd
import yaml

from winequality.contract import schema
from winequality.contract.features import BoolArray, FloatArray
from winequality.contract.parsers import frame_rows
from winequality.data.ingest import read_uci_dir
from winequality.monitoring import sequential
from winequality.monitoring.alibi_backend import alibi_python, alibi_venv_dir
from winequality.monitoring.detector import (
    Reference,
    build_reference,
    detect,
)
from winequality.params import DriftParams
from winequality.process import ManagedProcess, free_port
from winequality.serving.payload_logger import EventEncoder, Exchange

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wine-quality"
ALCOHOL: Final = schema.FEATURE_NAMES.index("alcohol")
SCENARIOS: Final = ("white-only", "alcohol +0.3 sd", "high-alcohol 60 %")
BARS: Final = {
    "false alarms": 0.0,
    "white-only": 600,
    "alcohol +0.3 sd": 1000,
    "high-alcohol 60 %": 1000,
}


@dataclass(frozen=True)
class Split:
    reference: Reference
    ref_x: FloatArray
    ref_white: BoolArray
    pool_x: FloatArray
    pool_white: BoolArray
    reference_frame: pd.DataFrame | None = None
    """The reference rows as read (what the service loads from a parquet file)."""


def load_split(data_dir: Path, reference_rows: int, seed: int) -> Split:
    wines = read_uci_dir(data_dir).drop_duplicates().reset_index(drop=True)
    x, white = frame_rows(wines)
    order = np.random.default_rng(seed).permutation(x.shape[0])
    ref, pool = order[:reference_rows], order[reference_rows:]
    return Split(
        build_reference(x[ref], white[ref]),
        x[ref],
        white[ref],
        x[pool],
        white[pool],
        wines.iloc[ref].reset_index(drop=True),
    )


@dataclass(frozen=True)
class Stream:
    x: FloatArray
    white: BoolArray
    shift_start: int
    """Index of the first shifted row (== len for a stable stream)."""


def shifted_rows(split: Split, scenario: str, n: int, rng: np.random.Generator) -> Stream:
    px, pw = split.pool_x, split.pool_white
    if scenario == "white-only":
        idx = rng.choice(np.flatnonzero(pw), n)
        return Stream(px[idx], pw[idx], 0)
    if scenario == "alcohol +0.3 sd":
        idx = rng.choice(px.shape[0], n)
        x = px[idx].copy()
        x[:, ALCOHOL] += 0.3 * split.ref_x[:, ALCOHOL].std()
        return Stream(x, pw[idx], 0)
    if scenario == "high-alcohol 60 %":
        alcohol = px[:, ALCOHOL]
        idx = rng.choice(np.flatnonzero(alcohol >= np.quantile(alcohol, 0.4)), n)
        return Stream(px[idx], pw[idx], 0)
    raise ValueError(scenario)


def stable_stream(split: Split, n: int, rng: np.random.Generator) -> Stream:
    idx = rng.choice(split.pool_x.shape[0], n)
    return Stream(split.pool_x[idx], split.pool_white[idx], n)


def scenario_stream(
    split: Split, scenario: str, prefix: int, after: int, rng: np.random.Generator
) -> Stream:
    before = stable_stream(split, prefix, rng)
    shifted = shifted_rows(split, scenario, after, rng)
    return Stream(
        np.concatenate((before.x, shifted.x)), np.concatenate((before.white, shifted.white)), prefix
    )


class Monitor(Protocol):
    """A drift detector seen from outside: feed rows, read each rule's decision."""

    names: tuple[str, ...]

    def feed(self, x: FloatArray, white: BoolArray) -> Mapping[str, bool]: ...

    def reset(self, name: str | None = None) -> None:
        """Reload the reference for one rule (after its alarm) or for all (None)."""


class InProcessMonitor:
    """The detector's per-window computation in process, feeding several rules at once."""

    def __init__(
        self,
        reference: Reference,
        params: DriftParams,
        calibrations: Mapping[str, sequential.Calibration],
    ) -> None:
        self.reference, self.params, self.calibrations = reference, params, calibrations
        self.names = ("latch (today)", *calibrations)
        self.buffer = sequential.WindowBuffer(sequential.WindowPolicy(params.window_size), 11)
        self.detect_seconds = 0.0
        self.step_seconds = 0.0
        self.windows = 0
        self.reset()

    def reset(self, name: str | None = None) -> None:
        if name is None:
            self.buffer.reset()
            self.latch = False
            self.states = {n: sequential.initial_state(c) for n, c in self.calibrations.items()}
        elif name == "latch (today)":
            self.latch = False
        else:
            self.states[name] = sequential.initial_state(self.calibrations[name])

    def feed(self, x: FloatArray, white: BoolArray) -> Mapping[str, bool]:
        for wx, ww in self.buffer.add(x, white, 0.0):
            t0 = time.perf_counter()
            result = detect(self.reference, wx, ww, self.params)
            t1 = time.perf_counter()
            z = sequential.result_scores(result)
            for n, c in self.calibrations.items():
                self.states[n] = sequential.step(self.states[n], z, wx.shape[0], c)
            self.detect_seconds += t1 - t0
            self.step_seconds += time.perf_counter() - t1
            self.windows += 1
            self.latch = self.latch or result.is_drift
        return {"latch (today)": self.latch, **{n: s.alarm for n, s in self.states.items()}}


class FunctionMonitor:
    """A Monitor from two plain functions, e.g. for the real service: ``feed`` posts the rows as
    a CloudEvents batch and returns ``seldon_metric_drift_found`` read from ``/metrics``;
    ``reset`` posts ``/reference/reload``."""

    def __init__(
        self,
        name: str,
        feed: Callable[[FloatArray, BoolArray], bool],
        reset: Callable[[], None],
    ) -> None:
        self.names: tuple[str, ...] = (name,)
        self._feed, self._reset = feed, reset

    def feed(self, x: FloatArray, white: BoolArray) -> Mapping[str, bool]:
        return {self.names[0]: self._feed(x, white)}

    def reset(self, name: str | None = None) -> None:
        self._reset()


SERVICE_TOKEN: Final = "bench-admin"


class ServiceClient:
    """The real detector service on loopback: rows in as CloudEvents batches, decision out."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=120.0)
        self.encoder = EventEncoder("winequality-app/bench")
        self.response = b'{"predictions":[{"quality":5.0,"quality_class":5}]}'
        self.rows = 0
        self.seconds = 0.0
        self._count = 0

    def body(self, x: FloatArray, white: BoolArray) -> bytes:
        events = []
        for row, is_white in zip(x.tolist(), white.tolist(), strict=True):
            wine: dict[str, Any] = dict(zip(schema.FEATURE_NAMES, row, strict=True))
            wine[schema.WINE_TYPE] = "white" if is_white else "red"
            self._count += 1
            request = orjson.dumps({"wines": [wine]})
            events.append(
                self.encoder.encode(
                    Exchange(f"r{self._count}", "wine-quality", time.time(), request, self.response)
                )
            )
        return b"[" + b",".join(events) + b"]"

    def feed(self, x: FloatArray, white: BoolArray) -> bool:
        body = self.body(x, white)
        t0 = time.perf_counter()
        resp = self.http.post(
            f"{self.url}/",
            content=body,
            headers={"Content-Type": "application/cloudevents-batch+json"},
        )
        resp.raise_for_status()
        found = self.drift_found()
        self.seconds += time.perf_counter() - t0
        self.rows += x.shape[0]
        return found

    def drift_found(self) -> bool:
        for line in self.http.get(f"{self.url}/metrics").text.splitlines():
            if line.startswith("seldon_metric_drift_found "):
                return float(line.rsplit(" ", 1)[1]) == 1.0
        raise RuntimeError("seldon_metric_drift_found not exported")

    def reset(self) -> None:
        resp = self.http.post(
            f"{self.url}/reference/reload", headers={"Authorization": f"Bearer {SERVICE_TOKEN}"}
        )
        resp.raise_for_status()


@contextlib.contextmanager
def detector_service(split: Split, params: DriftParams, workdir: Path) -> Iterator[ServiceClient]:
    """``winequality drift serve`` on a free loopback port with this split's reference."""
    assert split.reference_frame is not None
    reference = workdir / "bundle" / "reference.parquet"
    reference.parent.mkdir(parents=True)
    split.reference_frame.to_parquet(reference)
    params_file = workdir / "params.yaml"
    params_file.write_text(yaml.safe_dump({"drift": params.model_dump(exclude_none=True)}))
    port = free_port()
    service = ManagedProcess(
        "detector",
        [sys.executable, "-m", "winequality.cli", "drift", "serve", "--reference", str(reference),
         "--params", str(params_file), "--port", str(port)],
        workdir / "detector.log",
        env={**os.environ, "WINEQ_DRIFT_ADMIN_TOKEN": SERVICE_TOKEN,
             "WINEQ_DRIFT_STATE_FILE": str(workdir / "drift-state.json")},
        own_session=False,
    )  # fmt: skip
    with service:
        service.wait_ready(f"http://127.0.0.1:{port}/health/ready", timeout=300)
        client = ServiceClient(f"http://127.0.0.1:{port}")
        try:
            yield client
        finally:
            client.http.close()


def run_stable(monitor: Monitor, stream: Stream, batch: int) -> dict[str, int]:
    """False alarms (raises; each resets its rule, as a retraining would) per rule."""
    monitor.reset()
    raises = dict.fromkeys(monitor.names, 0)
    for start in range(0, stream.x.shape[0], batch):
        decisions = monitor.feed(
            stream.x[start : start + batch], stream.white[start : start + batch]
        )
        for name, alarm in decisions.items():
            if alarm:
                raises[name] += 1
                monitor.reset(name)
    return raises


def run_scenario(
    monitor: Monitor, stream: Stream, batch: int
) -> tuple[dict[str, float], dict[str, int]]:
    """Delay per rule (inf: not detected) and false alarms raised before the shift."""
    monitor.reset()
    delay = dict.fromkeys(monitor.names, np.inf)
    early = dict.fromkeys(monitor.names, 0)
    for start in range(0, stream.x.shape[0], batch):
        end = min(start + batch, stream.x.shape[0])
        decisions = monitor.feed(stream.x[start:end], stream.white[start:end])
        for name, alarm in decisions.items():
            if not alarm or np.isfinite(delay[name]):
                continue
            if end <= stream.shift_start:
                early[name] += 1
                monitor.reset(name)
            else:
                delay[name] = end - stream.shift_start
        if all(np.isfinite(d) for d in delay.values()):
            break
    return delay, early


# --- Alibi Detect, in its own venv -------------------------------------------------------------

_ALIBI_RUNNER: Final = """
import json, sys, time
import numpy as np
from alibi_detect.cd import CVMDriftOnline

data = np.load(sys.argv[1])
cfg = json.loads(sys.argv[2])
t0 = time.perf_counter()
cd = CVMDriftOnline(data["x_ref"], ert=cfg["ert"], window_sizes=cfg["window_sizes"],
                    n_bootstraps=cfg["n_bootstraps"], batch_size=cfg["batch_size"], verbose=False)
configure_s = time.perf_counter() - t0

def first_alarm(x, shift_start):
    cd.reset_state()
    early = 0
    for t in range(x.shape[0]):
        if cd.predict(x[t])["data"]["is_drift"]:
            if t + 1 <= shift_start:
                early += 1
                cd.reset_state()
            else:
                return t + 1 - shift_start, early
    return None, early

t0 = time.perf_counter()
stable = data["stable"]
cd.reset_state()
raises = 0
for t in range(stable.shape[0]):
    if cd.predict(stable[t])["data"]["is_drift"]:
        raises += 1
        cd.reset_state()
stable_s = time.perf_counter() - t0
out = {"configure_s": configure_s, "stable_rows": int(stable.shape[0]), "stable_raises": raises,
       "stable_s": stable_s, "scenarios": {}}
for name, count in cfg["scenarios"].items():
    delays, early = [], 0
    for k in range(count):
        d, e = first_alarm(data[f"{name}_{k}"], int(data[f"{name}_{k}_shift"]))
        delays.append(d)
        early += e
    out["scenarios"][name] = {"delays": delays, "early": early}
print(json.dumps(out))
"""


@dataclass(frozen=True)
class AlibiConfig:
    ert: int
    window_sizes: tuple[int, ...]
    n_bootstraps: int
    stable_rows: int
    repeats: int
    prefix: int
    """Stable rows kept before each shift (Alibi scores every row: ~100x our cost per row)."""


def run_alibi(
    split: Split,
    stable: Stream,
    scenarios: Mapping[str, Sequence[Stream]],
    cfg: AlibiConfig,
    venv: Path,
) -> dict[str, Any]:
    """Alibi's CVMDriftOnline on the same streams (a prefix of each); raises on failure."""
    python = alibi_python(venv)
    if not python.exists():
        raise RuntimeError(f"no Alibi venv at {venv}: run `winequality drift alibi-venv`")

    def matrix(x: FloatArray, white: BoolArray) -> FloatArray:
        return np.column_stack((x, white.astype(np.float64)))

    arrays: dict[str, np.ndarray] = {
        "x_ref": matrix(split.ref_x, split.ref_white),
        "stable": matrix(stable.x[: cfg.stable_rows], stable.white[: cfg.stable_rows]),
    }
    for name, streams in scenarios.items():
        for k, s in enumerate(streams[: cfg.repeats]):
            start = max(0, s.shift_start - cfg.prefix)
            arrays[f"{_key(name)}_{k}"] = matrix(s.x[start:], s.white[start:])
            arrays[f"{_key(name)}_{k}_shift"] = np.asarray(s.shift_start - start)
    config = {
        "ert": cfg.ert,
        "window_sizes": list(cfg.window_sizes),
        "n_bootstraps": cfg.n_bootstraps,
        "batch_size": 250,
        "scenarios": {_key(n): min(cfg.repeats, len(s)) for n, s in scenarios.items()},
    }
    with tempfile.TemporaryDirectory(prefix="wineq-alibi-online-") as tmp:
        path = Path(tmp) / "streams.npz"
        np.savez(path, allow_pickle=False, **arrays)
        done = subprocess.run(
            [str(python), "-c", _ALIBI_RUNNER, str(path), json.dumps(config)],
            capture_output=True,
            text=True,
            check=False,
        )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"alibi runner failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def alibi_bootstraps(ert: int, n_features: int, max_window: int) -> int:
    """Fewest simulated streams CVMDriftOnline accepts for ``ert``: it takes the 1 - beta
    quantile, beta = 1 - (1 - 1/ert)^(1/d), of the streams left after removing, at each of its
    2 * max_window - 1 steps, those that crossed; the quantile needs N >= 1/beta."""
    beta = 1.0 - (1.0 - 1.0 / ert) ** (1.0 / n_features)
    survivors = (1.0 - beta) ** (2 * max_window - 1)
    return int(np.ceil(1.05 / beta / survivors))


def _key(scenario: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in scenario)


# --- report ------------------------------------------------------------------------------------


def quantiles(delays: Sequence[float]) -> tuple[float, float, int]:
    """Median and p90 delay (inf counts as not detected), and how many were missed."""
    d = np.asarray(delays, dtype=np.float64)
    return float(np.median(d)), float(np.quantile(d, 0.9)), int(np.isinf(d).sum())


def fmt_delay(median: float, p90: float, missed: int) -> str:
    text = f"{median:6.0f} / {p90:6.0f}" if np.isfinite(p90) else f"{median:6.0f} / {'inf':>6s}"
    return text + (f" ({missed} missed)" if missed else "")


MonitorFactory = Callable[[Split, DriftParams], Sequence[Monitor]]


def main(argv: Sequence[str] | None = None, extra_monitors: MonitorFactory | None = None) -> None:
    """Run the benchmark; ``extra_monitors(split, params)`` adds monitors (e.g. the service
    path) run on the same stable stream and scenario streams as the in-process rules."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--reference", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50, help="rows per feed (delay resolution)")
    parser.add_argument("--stable-rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument(
        "--prefix", type=int, default=2000, help="stable rows before a shift (+ U[0, window))"
    )
    parser.add_argument("--after", type=int, default=4000, help="shifted rows per stream")
    parser.add_argument("--budget", type=int, default=DriftParams().false_alarm_rows)
    parser.add_argument("--k", type=float, default=DriftParams().cusum_k)
    parser.add_argument(
        "--check-budgets",
        type=int,
        nargs="*",
        default=[20_000, 100_000],
        help="extra budgets run on the stable stream only, to check the calibration",
    )
    parser.add_argument(
        "--service", action="store_true", help="also run the real detector service over HTTP"
    )
    parser.add_argument(
        "--service-stable-rows", type=int, default=None, help="default: all --stable-rows"
    )
    parser.add_argument("--service-repeats", type=int, default=None, help="default: all --repeats")
    parser.add_argument("--no-alibi", action="store_true")
    parser.add_argument(
        "--alibi-ert", type=int, default=2000, help="rows (needs bootstraps >= 12 x ert)"
    )
    parser.add_argument(
        "--alibi-bootstraps", type=int, default=None, help="default: the fewest Alibi accepts"
    )
    parser.add_argument("--alibi-windows", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--alibi-stable-rows", type=int, default=10_000)
    parser.add_argument("--alibi-repeats", type=int, default=20)
    parser.add_argument("--alibi-prefix", type=int, default=300)
    args = parser.parse_args(argv)

    split = load_split(args.data_dir, args.reference, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    params = DriftParams(window_size=args.window, false_alarm_rows=args.budget, cusum_k=args.k)
    print(
        f"reference {split.reference.size} deduplicated rows ({split.ref_white.mean():.0%} white), "
        f"stable pool {split.pool_x.shape[0]} rows; windows of {args.window} rows"
    )
    t0 = time.perf_counter()
    main_cal = sequential.calibrate(split.reference, params)
    print(
        f"calibration for {args.budget:,} rows between false alarms (k={args.k}): "
        f"threshold {main_cal.threshold:.2f}, {time.perf_counter() - t0:.1f} s"
    )
    check_cals = {
        f"sequential @{b:,}": sequential.calibrate(
            split.reference, params.model_copy(update={"false_alarm_rows": b})
        )
        for b in args.check_budgets
    }
    seq_name = f"sequential @{args.budget:,}"
    stable = stable_stream(split, args.stable_rows, rng)
    scenarios = {
        s: [
            scenario_stream(split, s, args.prefix + int(rng.integers(args.window)), args.after, rng)
            for _ in range(args.repeats)
        ]
        for s in SCENARIOS
    }

    stable_monitor = InProcessMonitor(split.reference, params, {seq_name: main_cal, **check_cals})
    t0 = time.perf_counter()
    raises = run_stable(stable_monitor, stable, args.batch)
    stable_s = time.perf_counter() - t0
    n_windows, n_rules = stable_monitor.windows, len(stable_monitor.calibrations)
    print(
        f"stable stream: {args.stable_rows:,} rows, {n_windows} windows in {stable_s:.0f} s; "
        f"per window: detect {1e3 * stable_monitor.detect_seconds / n_windows:.2f} ms, "
        f"sequential step {1e6 * stable_monitor.step_seconds / n_windows / n_rules:.0f} us"
    )
    print(
        "\ncalibration check (stable stream): stated budget vs measured rows between false alarms"
    )
    for name, cal in {seq_name: main_cal, **check_cals}.items():
        count = raises[name]
        measured = f"{args.stable_rows / count:,.0f}" if count else f"> {args.stable_rows:,} (none)"
        print(f"  {name:28s} budget {cal.budget_rows:>12,}  raises {count:5d}  measured {measured}")

    monitor = InProcessMonitor(split.reference, params, {seq_name: main_cal})
    delays: dict[str, dict[str, list[float]]] = {
        n: {s: [] for s in SCENARIOS} for n in monitor.names
    }
    early: dict[str, int] = dict.fromkeys(monitor.names, 0)
    prefix_rows = 0
    for scenario, streams in scenarios.items():
        for stream in streams:
            d, e = run_scenario(monitor, stream, args.batch)
            prefix_rows += stream.shift_start
            for rule in monitor.names:
                delays[rule][scenario].append(d[rule])
                early[rule] += e[rule]

    for extra in extra_monitors(split, params) if extra_monitors else ():
        for rule, count in run_stable(extra, stable, args.batch).items():
            raises[rule] = count
        for rule in extra.names:
            delays[rule] = {s: [] for s in SCENARIOS}
            early[rule] = 0
        for scenario, streams in scenarios.items():
            for stream in streams:
                d, e = run_scenario(extra, stream, args.batch)
                for rule in extra.names:
                    delays[rule][scenario].append(d[rule])
                    early[rule] += e[rule]

    stable_rows = dict.fromkeys(delays, args.stable_rows)
    service_note = ""
    if args.service:
        name = f"service @{args.budget:,} (HTTP)"
        n_stable = args.service_stable_rows or args.stable_rows
        n_repeats = args.service_repeats or args.repeats
        with (
            tempfile.TemporaryDirectory(prefix="wineq-drift-service-") as tmp,
            detector_service(split, params, Path(tmp)) as svc,
        ):
            service_monitor = FunctionMonitor(name, svc.feed, svc.reset)
            t0 = time.perf_counter()
            part = Stream(stable.x[:n_stable], stable.white[:n_stable], n_stable)
            raises[name] = run_stable(service_monitor, part, args.batch)[name]
            stable_s, stable_fed = time.perf_counter() - t0, svc.rows
            stable_rows[name] = n_stable
            delays[name] = {s: [] for s in SCENARIOS}
            early[name] = 0
            for scenario, streams in scenarios.items():
                for stream in streams[:n_repeats]:
                    d, e = run_scenario(service_monitor, stream, args.batch)
                    delays[name][scenario].append(d[name])
                    early[name] += e[name]
            service_note = (
                f"service: {n_stable:,} stable rows in {stable_s:.0f} s "
                f"({stable_fed / stable_s:,.0f} rows/s end to end, "
                f"{svc.rows / svc.seconds:,.0f} rows/s in POST + GET /metrics), {n_repeats} "
                f"streams per scenario; {svc.rows:,} rows posted in all, batches of {args.batch} "
                "one-wine request events + their responses"
            )

    table: dict[str, dict[str, str]] = {}
    for rule in delays:
        table[rule] = {
            "false alarms": f"{raises[rule] * 1e6 / stable_rows[rule]:8.1f}",
            **{s: fmt_delay(*quantiles(delays[rule][s])) for s in SCENARIOS},
        }
    alibi_note = ""
    if not args.no_alibi:
        cfg = AlibiConfig(
            args.alibi_ert,
            tuple(args.alibi_windows),
            args.alibi_bootstraps or alibi_bootstraps(args.alibi_ert, 12, max(args.alibi_windows)),
            args.alibi_stable_rows,
            args.alibi_repeats,
            args.alibi_prefix,
        )
        try:
            t0 = time.perf_counter()
            out = run_alibi(split, stable, scenarios, cfg, alibi_venv_dir())
            name = f"alibi CVMDriftOnline ert={cfg.ert:,}"
            sc = out["scenarios"]
            assert isinstance(sc, dict)
            table[name] = {
                "false alarms": f"{out['stable_raises'] * 1e6 / out['stable_rows']:8.1f}",
                **{
                    s: fmt_delay(
                        *quantiles([np.inf if v is None else v for v in sc[_key(s)]["delays"]])
                    )
                    for s in SCENARIOS
                },
            }
            alibi_note = (
                f"alibi: configured in {out['configure_s']:.0f} s "
                f"({cfg.n_bootstraps:,} bootstraps, "
                f"windows {list(cfg.window_sizes)}), {out['stable_rows']:,} stable rows "
                f"({out['stable_raises']} raises), {cfg.repeats} streams per scenario "
                f"({cfg.prefix} stable rows before the shift), "
                f"total {time.perf_counter() - t0:.0f} s"
            )
        except (RuntimeError, OSError) as exc:
            alibi_note = f"alibi: not run: {exc}"

    print(
        f"\nfalse alarms per million stable rows ({args.stable_rows:,} streamed) and detection "
        f"delay in rows, median / p90 ({args.repeats} streams per scenario, "
        f"feeds of {args.batch} rows)"
    )
    header = f"{'rule':34s} {'FA / 1e6 rows':>13s}" + "".join(f"  {s:>24s}" for s in SCENARIOS)
    print(header)
    bar = f"{'bar':34s} {'0':>13s}" + "".join(
        f"  {'<= ' + str(BARS[s]) + ' (median)':>24s}" for s in SCENARIOS
    )
    print(bar)
    for n, row in table.items():
        print(
            f"{n:34s} {row['false alarms']:>13s}" + "".join(f"  {row[s]:>24s}" for s in SCENARIOS)
        )
    print(
        f"false alarms before the shift ({prefix_rows:,} stable prefix rows): "
        + ", ".join(f"{n}: {e}" for n, e in early.items())
    )
    if alibi_note:
        print(alibi_note)
    if service_note:
        print(service_note)


if __name__ == "__main__":
    main(sys.argv[1:])
