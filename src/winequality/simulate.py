"""``winequality simulate``: realistic traffic against a running stack, narrated as it happens.

Each batch is scored by the app (``POST /predict``) and then labelled (``POST /feedback`` with the
true qualities), as a shop would report the real scores later. Meanwhile the loop is watched:
the detector's drift flag, the scenario's alert in Prometheus (WineQualityDrift, or
WineQualityDegraded for ``degraded``), the app's realized-quality decision, retraining runs on
the webhook, the promotion decision, and the model version the app serves. The last line printed
is a JSON summary with the time of each milestone, counted from the first request.

Scenarios:
  * ``drift``: only white wines (the real ones when ``--data`` names the UCI folder, else the
    synthetic generator's) sent to a model whose reference is mixed red and white;
    ``--drift-kind shift`` instead raises the alcohol and sulphates of held-out rows.
  * ``stable``: held-out mixed rows of the champion's own distribution (the prepared test
    split, also with ``--data DIR``). After a drift retraining they are still in distribution:
    the new reference is a sample of the new training set, which keeps the mixed base data.
  * ``degraded``: the stable rows, labelled as concept drift (the same wines, true quality
    higher): each label is the true quality + 1 with probability 1/2 (``POST /feedback`` takes
    integer qualities, so this is the integer form of a +0.5 shift), capped at 10. Labels go by
    request id and index, so the app joins them to the scores it served and WineQualityDegraded
    can fire (the inputs are unchanged: the drift detector has nothing to see).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from winequality.contract import schema

if TYPE_CHECKING:
    import httpx
    import pandas as pd

Scenario = Literal["drift", "stable", "degraded"]
DriftKind = Literal["white", "shift"]
SCENARIO_ALERTS: dict[str, str] = {
    "drift": "WineQualityDrift",
    "stable": "WineQualityDrift",
    "degraded": "WineQualityDegraded",
}
"""The alert each scenario watches (stable: the one it must not raise)."""
DEGRADED_SEED_OFFSET = 1_000
"""The relabelling draws from ``seed + DEGRADED_SEED_OFFSET``, apart from the shuffle's."""


class SimulationError(RuntimeError):
    """The traffic cannot be produced or sent; the message says why."""


def _read_rows(path: Path) -> pd.DataFrame:
    import pandas as pd

    from winequality.data.ingest import read_uci_dir

    if path.is_dir():
        return read_uci_dir(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise SimulationError(f"{path}: expected the UCI folder, a .parquet or a .csv file")


def shift_rows(frame: pd.DataFrame, alcohol: float = 2.0, sulphates: float = 1.4) -> pd.DataFrame:
    """Covariate shift on two measurements, kept inside the physical ranges of the schema."""
    out = frame.copy()
    for name, values in (
        ("alcohol", out["alcohol"] + alcohol),
        ("sulphates", out["sulphates"] * sulphates),
    ):
        feature = schema.FEATURES_BY_NAME[name]
        out[name] = values.clip(feature.minimum, feature.maximum)
    return out


def degraded_labels(quality: pd.Series, seed: int) -> list[int]:
    """Concept drift in integers: each true quality + 1 with probability 1/2, at most 10."""
    import numpy as np

    bump = np.random.default_rng(seed + DEGRADED_SEED_OFFSET).integers(0, 2, len(quality))
    raised = np.minimum(quality.to_numpy(dtype=np.int64) + bump, int(schema.QUALITY_MAX))
    return [int(q) for q in raised]


def traffic(
    scenario: Scenario,
    rows: int,
    *,
    data: Path | None,
    test_split: Path,
    seed: int = 0,
    skip: int = 0,
    drift_kind: DriftKind = "white",
) -> pd.DataFrame:
    """``rows`` labelled wines (``schema.DATA_COLUMNS``) of the scenario, shuffled by ``seed``."""
    if rows <= 0:
        raise SimulationError(f"--rows must be positive, got {rows}")
    if scenario == "drift" and drift_kind == "white":
        if data is not None:
            source = _read_rows(data)
        else:
            from winequality.data.synthetic import generate

            # About a quarter of generated wines are red: generate enough whites.
            source = generate(max(2 * (rows + skip), 400), seed)
        source = source[source[schema.WINE_TYPE] == "white"]
    else:
        path = data if data is not None and not data.is_dir() else test_split
        if not path.is_file():
            raise SimulationError(
                f"{path}: no held-out split (run the pipeline first, or pass --data FILE)"
            )
        source = _read_rows(path)
        if scenario == "drift":
            source = shift_rows(source)
    shuffled = source.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    picked = shuffled.iloc[skip : skip + rows]
    if len(picked) < rows:
        raise SimulationError(
            f"only {len(shuffled)} {scenario} rows available, {skip} skipped: cannot send {rows}"
        )
    return picked.loc[:, list(schema.DATA_COLUMNS)].reset_index(drop=True)


@dataclass
class Observation:
    """One look at the stack (None where a service did not answer)."""

    drift_found: bool | None = None
    windows_tested: int | None = None
    alert: str | None = None
    """State of the watched alert in Prometheus: pending, firing or None (inactive)."""
    degraded: bool | None = None
    """The app's ``winequality_realized_degraded`` for the served version (None: not exported)."""
    realized: dict[str, float] = field(default_factory=dict)
    """The app's ``winequality_realized_*`` / ``champion_test_*`` gauges, by short name."""
    runs: list[dict[str, Any]] = field(default_factory=list)
    served_version: str | None = None


@dataclass
class Timeline:
    """Seconds from the first request to each milestone (None: not seen)."""

    first_drift: float | None = None
    first_degraded: float | None = None
    alert_firing: float | None = None
    retrain_started: float | None = None
    retrain_finished: float | None = None
    new_version_served: float | None = None
    drift_reset: float | None = None
    initial_version: str | None = None
    served_version: str | None = None
    alert_seen: bool = False
    retraining_runs: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    rows_sent: int = 0
    feedback_rows: int = 0
    drift_found: bool | None = None
    alert: str = "WineQualityDrift"
    realized: dict[str, float] = field(default_factory=dict)
    """The app's realized quality at the last look (labels, rmse, bias, test_rmse, ...)."""
    realized_when_degraded: dict[str, float] = field(default_factory=dict)
    """The same at the first look that saw the served version degraded."""


def _get(client: httpx.Client, url: str) -> Any:
    import httpx

    try:
        resp = client.get(url, timeout=5.0)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


REALIZED_GAUGE = re.compile(
    r'^winequality_(realized_\w+|champion_test_\w+)\{model_version="([^"]*)"\} (\S+)$', re.MULTILINE
)


def realized_gauges(exposition: str) -> tuple[bool | None, dict[str, float]]:
    """(degraded, gauges) of the app's ``/metrics`` text for the version it exports."""
    found = ((m[1], float(m[3])) for m in REALIZED_GAUGE.finditer(exposition))
    # NaN: no labels yet (and no valid JSON in the summary line).
    gauges = {name: value for name, value in found if not math.isnan(value)}
    degraded = gauges.pop("realized_degraded", None)
    return (None if degraded is None else degraded == 1.0), gauges


def observe(
    client: httpx.Client, urls: dict[str, str], alert: str = "WineQualityDrift"
) -> Observation:
    import httpx

    obs = Observation()
    drift = _get(client, f"{urls['detector']}/drift")
    if isinstance(drift, dict):
        obs.drift_found, obs.windows_tested = drift.get("drift_found"), drift.get("windows_tested")
    alerts = _get(client, f"{urls['prometheus']}/api/v1/alerts") if "prometheus" in urls else None
    if isinstance(alerts, dict):
        states = [
            a.get("state")
            for a in alerts.get("data", {}).get("alerts", [])
            if a.get("labels", {}).get("alertname") == alert
        ]
        obs.alert = "firing" if "firing" in states else (states[0] if states else None)
    status = _get(client, f"{urls['webhook']}/status") if "webhook" in urls else None
    if isinstance(status, dict):
        obs.runs = list(status.get("runs", []))
    meta = _get(client, f"{urls['app']}/metadata")
    if isinstance(meta, dict):
        obs.served_version = str(meta.get("model", {}).get("version"))
    try:
        resp = client.get(f"{urls['app']}/metrics", timeout=5.0)
    except httpx.HTTPError:
        return obs
    if resp.status_code == 200:
        obs.degraded, obs.realized = realized_gauges(resp.text)
    return obs


class Narrator:
    """Turns successive observations into lines like ``[ 12.3s] alert firing``."""

    def __init__(
        self, start: float, echo: Callable[[str], None], alert: str = "WineQualityDrift"
    ) -> None:
        self.start, self.echo, self.t = start, echo, Timeline(alert=alert)
        self._last = Observation()
        self._runs_seen: dict[int, bool] = {}
        """Run index -> finished already reported."""
        self._baseline_runs = 0

    def baseline(self, obs: Observation) -> None:
        """The state before the traffic: earlier retraining runs are not this simulation's."""
        self._runs_seen = {i: r.get("finished_at") is not None for i, r in enumerate(obs.runs)}
        self._baseline_runs = len(obs.runs)
        self.update(obs)

    def now(self) -> float:
        return round(time.monotonic() - self.start, 2)

    def say(self, message: str) -> None:
        self.echo(f"[{self.now():6.1f}s] {message}")

    def update(self, obs: Observation) -> None:
        t = self.t
        if t.initial_version is None and obs.served_version is not None:
            t.initial_version = obs.served_version
        self._drift(obs)
        self._degraded(obs)
        self._alert(obs)
        self._runs(obs)
        self._version(obs)
        self._last = obs

    def _drift(self, obs: Observation) -> None:
        t, last = self.t, self._last
        if obs.drift_found is not None:
            t.drift_found = obs.drift_found
        if obs.drift_found and not last.drift_found:
            if t.first_drift is None:
                t.first_drift = self.now()
            self.say(f"drift metric: seldon_metric_drift_found=1 (window {obs.windows_tested})")
        elif obs.drift_found is False and last.drift_found:
            t.drift_reset = self.now()
            self.say("drift metric back to 0 (the detector reloaded its reference)")

    def _degraded(self, obs: Observation) -> None:
        t, last = self.t, self._last
        if obs.realized:
            t.realized = obs.realized
        if obs.degraded and not last.degraded:
            if t.first_degraded is None:
                t.first_degraded = self.now()
                t.realized_when_degraded = obs.realized
            r = obs.realized
            self.say(
                "realized quality: winequality_realized_degraded=1 (RMSE"
                f" {r.get('realized_rmse', math.nan):.3f} vs test"
                f" {r.get('champion_test_rmse', math.nan):.3f}, bias"
                f" {r.get('realized_bias', math.nan):+.3f} over"
                f" {r.get('realized_labels', 0):.0f} labels)"
            )
        elif obs.degraded is False and last.degraded:
            self.say("realized quality back to not degraded (a new version's window)")

    def _alert(self, obs: Observation) -> None:
        t, last = self.t, self._last
        if obs.alert != last.alert and obs.alert is not None:
            self.say(f"alert {t.alert} {obs.alert}")
            if obs.alert == "firing":
                t.alert_seen = True
                if t.alert_firing is None:
                    t.alert_firing = self.now()
        elif obs.alert is None and last.alert is not None:
            self.say(f"alert {t.alert} resolved")

    def _runs(self, obs: Observation) -> None:
        t = self.t
        for i, run in enumerate(obs.runs):
            if i not in self._runs_seen:
                self.say(f"retraining started (pid {run.get('pid')}, reason {run.get('reason')})")
                if t.retrain_started is None:
                    t.retrain_started = self.now()
                self._runs_seen[i] = False
            if run.get("finished_at") is not None and not self._runs_seen[i]:
                self._runs_seen[i] = True
                result = run.get("result") or {}
                t.results.append(result)
                if t.retrain_finished is None:
                    t.retrain_finished = self.now()
                decision = "promoted" if result.get("promoted") else "not promoted"
                self.say(
                    f"retraining finished (exit {run.get('exit_code')}): v{result.get('version')} "
                    f"{decision}: {result.get('reason')}"
                )
        t.retraining_runs = max(t.retraining_runs, len(obs.runs) - self._baseline_runs)

    def _version(self, obs: Observation) -> None:
        t = self.t
        if obs.served_version is None:
            return
        # Compared with the last version seen, so a poll the app missed loses no change.
        if t.served_version is not None and obs.served_version != t.served_version:
            self.say(f"the app now serves v{obs.served_version} (was v{t.served_version})")
            if t.new_version_served is None:
                t.new_version_served = self.now()
        t.served_version = obs.served_version

    def loop_closed(self) -> bool:
        """A retraining finished and, if it promoted a model, the app serves it."""
        t = self.t
        if not t.results:
            return False
        last = t.results[-1]
        return not last.get("promoted") or t.served_version == str(last.get("version"))


def load_urls(run_dir: Path, overrides: dict[str, str | None]) -> dict[str, str]:
    """URLs of the stack from its ``stack.json``, with command-line overrides."""
    from winequality.stack import read_state

    found: dict[str, str] = dict(read_state(run_dir).get("urls", {}))
    found |= {k: v.rstrip("/") for k, v in overrides.items() if v}
    if "app" not in found or "detector" not in found:
        raise SimulationError(
            f"no running stack found in {run_dir} (start one with `winequality up`) "
            "and no --app-url/--detector-url given"
        )
    return found


def send_batch(
    client: httpx.Client,
    app: str,
    batch: pd.DataFrame,
    labels: list[int] | None = None,
    token: str | None = None,
) -> str:
    """Score a batch, then report its qualities (with the feedback ``token``); returns the
    request id.

    Without ``labels`` the true qualities go as labelled rows in one request; with them each
    label names its wine by request id and index, so the app joins it to the score it served.
    """
    wines = batch.loc[:, [*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict(orient="records")
    resp = client.post(f"{app}/predict", json={"wines": wines}, timeout=30.0)
    if resp.status_code != 200:
        raise SimulationError(f"POST {app}/predict answered {resp.status_code}: {resp.text[:300]}")
    request_id = str(resp.json().get("request_id"))
    if labels is None:
        quality = [int(q) for q in batch[schema.TARGET]]
        bodies: list[dict[str, Any]] = [{"wines": wines, "quality": quality}]
    else:
        bodies = [
            {"request_id": request_id, "index": i, "quality": q} for i, q in enumerate(labels)
        ]
    headers = {"Authorization": f"Bearer {token}"} if token else None
    for body in bodies:
        fb = client.post(f"{app}/feedback", json=body, headers=headers, timeout=30.0)
        if fb.status_code not in (200, 201):
            raise SimulationError(f"POST {app}/feedback answered {fb.status_code}: {fb.text[:300]}")
    return request_id


def run_simulation(
    frame: pd.DataFrame,
    urls: dict[str, str],
    *,
    batch: int,
    pause_s: float,
    follow_s: float,
    until_loop_closed: bool,
    poll_s: float = 0.5,
    echo: Callable[[str], None] = typer.echo,
    labels: list[int] | None = None,
    alert: str = "WineQualityDrift",
    feedback_token: str | None = None,
) -> Timeline:
    """Send the traffic batch by batch, narrating; then keep watching for ``follow_s``.

    ``labels``: the qualities to report for ``frame``'s rows by request id (default: their true
    qualities, as labelled rows); ``alert``: the Prometheus alert to watch.
    """
    import httpx

    with httpx.Client() as client:
        narrator = Narrator(time.monotonic(), echo, alert)
        narrator.baseline(observe(client, urls, alert))
        narrator.say(
            f"sending {len(frame)} rows in batches of {batch} to {urls['app']} "
            f"(serving v{narrator.t.initial_version})"
        )
        narrator.start = time.monotonic()
        last_poll = 0.0
        for start in range(0, len(frame), batch):
            chunk = frame.iloc[start : start + batch]
            chunk_labels = None if labels is None else labels[start : start + batch]
            send_batch(client, urls["app"], chunk, chunk_labels, feedback_token)
            narrator.t.rows_sent += len(chunk)
            narrator.t.feedback_rows += len(chunk)
            if time.monotonic() - last_poll >= poll_s:
                narrator.update(observe(client, urls, alert))
                last_poll = time.monotonic()
            if pause_s:
                time.sleep(pause_s)
        how = "their true quality" if labels is None else "shifted labels, by request id"
        narrator.say(f"sent {narrator.t.rows_sent} rows, all labelled with {how}")
        deadline = time.monotonic() + follow_s
        while True:
            narrator.update(observe(client, urls, alert))
            if until_loop_closed and narrator.loop_closed():
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(poll_s)
        return narrator.t


def simulate(
    *,
    scenario: Annotated[str, typer.Option(help="drift, stable or degraded.")] = "drift",
    rows: Annotated[int, typer.Option(help="Wines to send.")] = 600,
    batch: Annotated[int, typer.Option(help="Wines per request.")] = 50,
    pause: Annotated[float, typer.Option(help="Seconds between requests.")] = 0.0,
    data: Annotated[
        Path | None,
        typer.Option(help="UCI folder (real white wines for drift) or a parquet/CSV of rows."),
    ] = None,
    drift_kind: Annotated[
        str, typer.Option(help="white (white wines) or shift (more alcohol and sulphates).")
    ] = "white",
    seed: Annotated[int, typer.Option(help="Shuffle seed of the source rows.")] = 0,
    skip: Annotated[int, typer.Option(help="Source rows to skip (send fresh rows).")] = 0,
    follow: Annotated[
        float | None,
        typer.Option(
            help="Seconds to keep watching after the traffic (default: 180 for drift and"
            " degraded, so the demo shows the whole loop; 30 for stable)."
        ),
    ] = None,
    until_loop_closed: Annotated[
        bool, typer.Option(help="Stop following once a retraining finished and is served.")
    ] = True,
    run_dir: Annotated[Path, typer.Option(help="Run folder of `winequality up`.")] = Path(".stack"),
    app_url: Annotated[str | None, typer.Option(help="Serving app (default: stack.json).")] = (
        None
    ),
    detector_url: Annotated[str | None, typer.Option(help="Drift detector.")] = None,
    prometheus_url: Annotated[str | None, typer.Option(help="Prometheus.")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="Retraining webhook.")] = None,
) -> None:
    """Send drifted, stable or degraded traffic with feedback to the stack and narrate the loop.

    Prints the drift metric, the alert, retraining start/finish, the promotion decision and the
    version the app serves as they happen; the last line is a JSON summary with the times.
    """
    from winequality.settings import ProjectSettings
    from winequality.stack import read_feedback_token

    if scenario not in SCENARIO_ALERTS:
        raise typer.BadParameter("must be drift, stable or degraded", param_hint="--scenario")
    if drift_kind not in ("white", "shift"):
        raise typer.BadParameter("must be white or shift", param_hint="--drift-kind")
    if batch <= 0:
        raise typer.BadParameter("must be positive", param_hint="--batch")
    settings = ProjectSettings()
    try:
        urls = load_urls(
            run_dir,
            {
                "app": app_url,
                "detector": detector_url,
                "prometheus": prometheus_url,
                "webhook": webhook_url,
            },
        )
        frame = traffic(
            scenario,  # type: ignore[arg-type]
            rows,
            data=data,
            test_split=settings.project_dir / "data" / "prepared" / "test.parquet",
            seed=seed,
            skip=skip,
            drift_kind=drift_kind,  # type: ignore[arg-type]
        )
        timeline = run_simulation(
            frame,
            urls,
            batch=batch,
            pause_s=pause,
            follow_s=follow if follow is not None else (30.0 if scenario == "stable" else 180.0),
            until_loop_closed=until_loop_closed,
            labels=degraded_labels(frame[schema.TARGET], seed) if scenario == "degraded" else None,
            alert=SCENARIO_ALERTS[scenario],
            feedback_token=read_feedback_token(run_dir),
        )
    except SimulationError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps({"scenario": scenario, **asdict(timeline)}, sort_keys=True))
