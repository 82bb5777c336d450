"""HTML drift report: the sequential decision's history, then per-feature reference-vs-live
distributions with the latest window's test results.

The decision part shows every CUSUM chart per window against its threshold (the reference's
reloads marked), the alarms with when and why they were raised (the tests whose chart crossed,
the windows that built them up) and how they ended; it is the detector's bounded history, kept
across reloads (``monitoring.decisions``). When the detector knows the serving app
(``WINEQ_DRIFT_APP_URL``) the report adds the app's realized quality from feedback labels and
its degradation decision, read from the app when the report is rendered
(``monitoring.realized``).

Rendered on request (never on the event path) with matplotlib's object-oriented API and the Agg
canvas: no pyplot global state, so concurrent requests in the server's thread pool are safe.
Figures are embedded as inline SVG, making the report one self-contained file that needs nothing
from the network (checked in Chromium by tests/integration/test_pages_offline.py).
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from winequality.contract import schema
from winequality.contract.features import BoolArray, FloatArray
from winequality.monitoring.decisions import AlarmRecord, DecisionLog
from winequality.monitoring.detector import TEST_NAMES, DriftResult, Reference, type_counts
from winequality.monitoring.realized import RealizedQualityView

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse}
td,th{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}.drift{color:#b00020;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:1rem}
figure{margin:0}figcaption{font-size:.85rem}
.wide{max-width:900px}
"""


def _time(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _decision_plot(history: DecisionLog) -> str:
    """Every test's chart per window against the threshold; dashed lines mark reloads."""
    windows = history.windows
    fig = Figure(figsize=(9.0, 3.2))
    ax = fig.add_subplot()
    x = np.arange(len(windows))
    top = max(TEST_NAMES, key=lambda t: max(w.statistics[t] for w in windows))
    for name in TEST_NAMES:
        values = [w.statistics[name] for w in windows]
        if max(values) == 0.0:
            continue
        emphasis = {"lw": 1.8} if name == top else {"lw": 0.8, "alpha": 0.6}
        ax.plot(x, values, label=name, **emphasis)  # type: ignore[arg-type]
    ax.step(x, [w.threshold for w in windows], where="mid", color="k", ls="--", label="threshold")
    alarm = np.asarray([w.alarm for w in windows])
    if alarm.any():
        ax.fill_between(x, 0, 1, where=alarm, color="#b00020", alpha=0.12, step="mid",
                        transform=ax.get_xaxis_transform(), label="drift_found = 1")  # fmt: skip
    for i in range(1, len(windows)):
        if windows[i].reference != windows[i - 1].reference:
            ax.axvline(i - 0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("window (oldest kept to latest)")
    ax.set_ylabel("CUSUM")
    ax.legend(fontsize=6, ncol=4, loc="upper left")
    return _svg(fig)


def _alarm_rows(alarm: AlarmRecord) -> str:
    esc = html.escape
    if alarm.cleared_at is None:
        ended = "<b class='drift'>open</b>"
    else:
        how = "traffic back to the reference" if alarm.cleared_by == "traffic" else "reload"
        ended = f"{_time(alarm.cleared_at)} at window {alarm.cleared_window} ({how})"
    evidence = "; ".join(
        f"w{w.window}: " + ", ".join(f"{t} {w.statistics[t]:.1f}" for t in alarm.raised_by)
        for w in alarm.evidence
    )
    return (
        f"<tr><td>{_time(alarm.raised_at)}</td><td>{alarm.window}</td><td>{alarm.row}</td>"
        f"<td class='drift'>{esc(', '.join(alarm.raised_by))}</td><td>{alarm.threshold:.2f}</td>"
        f"<td>{esc(alarm.reference)}</td><td>{ended}</td></tr>"
        f"<tr><td colspan='7' style='text-align:left;font-size:.8rem'>evidence "
        f"({len(alarm.evidence)} windows): {esc(evidence)}</td></tr>"
    )


def _decision_section(history: DecisionLog, decision: Mapping[str, Any]) -> list[str]:
    parts = ["<h2>Sequential decision</h2>"]
    if not decision.get("calibrated"):
        parts.append("<p>The threshold is being calibrated for this reference.</p>")
    else:
        state = "<b class='drift'>DRIFT CONFIRMED</b>" if decision["alarm"] else "<b>no drift</b>"
        raised = ""
        if decision["alarm"]:
            raised = (
                f", raised at row {decision['raised_at_row']} by "
                f"{html.escape(', '.join(decision['raised_by']))}"
            )
        parts.append(
            f"<p>seldon_metric_drift_found: {state}{raised}. One CUSUM chart per test, threshold "
            f"{decision['threshold']:.2f} (k = {decision['k']:g}), calibrated for "
            f"{decision['budget_rows']:,} stable rows between false alarms; "
            f"{decision['windows']} windows ({decision['rows']:,} rows) since the reference "
            "was loaded.</p>"
        )
    if history.windows:
        parts.append(f"<figure class='wide'>{_decision_plot(history)}<figcaption>Charts of the "
                     f"last {len(history.windows)} windows.</figcaption></figure>")  # fmt: skip
    if history.alarms:
        parts.append(
            "<h3>Alarms</h3><table><tr><th>raised</th><th>window</th><th>row</th>"
            "<th>raised by</th><th>threshold</th><th>reference</th><th>ended</th></tr>"
        )
        parts.extend(_alarm_rows(a) for a in reversed(history.alarms))
        parts.append("</table>")
    else:
        parts.append("<p>No alarm raised yet.</p>")
    return parts


def _num(values: Mapping[str, float], key: str, fmt: str) -> str:
    value = values.get(key)
    return "-" if value is None or math.isnan(value) else format(value, fmt)  # NaN: no labels


def _realized_section(view: RealizedQualityView) -> list[str]:
    esc = html.escape
    parts = [
        "<h2>Realized quality (feedback labels)</h2>",
        f"<p>Read from the serving app ({esc(view.source)}) when this report was rendered: "
        "labels joined to the scores the app served, over its latest labelled rows of the "
        "served version; <i>degraded</i> is the sequential decision behind WineQualityDegraded "
        "(a z must reach its boundary).</p>",
    ]
    if view.error is not None:
        parts.append(f"<p class='drift'>The app's realized quality is unavailable: "
                     f"{esc(view.error)}</p>")  # fmt: skip
        return parts
    if not view.versions:
        parts.append("<p>The app exports no realized quality (no model served).</p>")
        return parts
    parts.append(
        "<table><tr><th>version</th><th>labels</th><th>RMSE</th><th>test RMSE</th><th>MAE</th>"
        "<th>within ±0.5</th><th>within ±1.0</th><th>bias</th><th>test bias</th>"
        "<th>MSE z / boundary</th><th>bias z / boundary</th><th>prediction KS</th>"
        "<th>degraded</th></tr>"
    )
    for version, g in sorted(view.versions.items()):
        degraded = g.get("realized_degraded") == 1.0
        flag = "<b class='drift'>DEGRADED</b>" if degraded else "no"
        parts.append(
            f"<tr><td>v{esc(version)}</td><td>{_num(g, 'realized_labels', '.0f')}</td>"
            f"<td>{_num(g, 'realized_rmse', '.3f')}</td>"
            f"<td>{_num(g, 'champion_test_rmse', '.3f')}</td>"
            f"<td>{_num(g, 'realized_mae', '.3f')}</td>"
            f"<td>{_num(g, 'realized_within_0_5', '.1%')}</td>"
            f"<td>{_num(g, 'realized_within_1_0', '.1%')}</td>"
            f"<td>{_num(g, 'realized_bias', '+.3f')}</td>"
            f"<td>{_num(g, 'champion_test_bias', '+.3f')}</td>"
            f"<td>{_num(g, 'realized_rmse_z', '.2f')} / "
            f"{_num(g, 'realized_rmse_z_threshold', '.2f')}</td>"
            f"<td>{_num(g, 'realized_bias_z', '.2f')} / "
            f"{_num(g, 'realized_bias_z_threshold', '.2f')}</td>"
            f"<td>{_num(g, 'prediction_ks', '.3f')}</td><td>{flag}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _svg(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _feature_plot(name: str, reference: FloatArray, live: FloatArray) -> str:
    fig = Figure(figsize=(4.2, 2.6))
    ax = fig.add_subplot()
    bins = np.histogram_bin_edges(np.concatenate((reference, live)), bins=30).tolist()
    ax.hist(reference, bins=bins, density=True, alpha=0.55, label=f"reference (n={reference.size})")
    ax.hist(live, bins=bins, density=True, alpha=0.55, label=f"live (n={live.size})")
    feature = schema.FEATURES_BY_NAME[name]
    ax.set_xlabel(f"{name} [{feature.unit}]")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return _svg(fig)


def _type_plot(reference_counts: list[int], live_counts: list[int]) -> str:
    fig = Figure(figsize=(4.2, 2.6))
    ax = fig.add_subplot()
    x = np.arange(len(schema.WINE_TYPES))
    ref_share = np.asarray(reference_counts) / max(sum(reference_counts), 1)
    live_share = np.asarray(live_counts) / max(sum(live_counts), 1)
    ax.bar(x - 0.2, ref_share, width=0.4, label="reference")
    ax.bar(x + 0.2, live_share, width=0.4, label="live")
    ax.set_xticks(x, list(schema.WINE_TYPES))
    ax.set_ylabel("share")
    ax.legend(fontsize=7)
    return _svg(fig)


def render_report(
    reference: Reference,
    live_features: FloatArray,
    live_is_white: BoolArray,
    result: DriftResult | None,
    title: str = "Wine-quality drift report",
    *,
    history: DecisionLog | None = None,
    decision: Mapping[str, Any] | None = None,
    realized: RealizedQualityView | None = None,
) -> str:
    """A self-contained HTML page; ``result`` is None while no window has been tested yet.

    ``history`` and ``decision`` (``DetectorState.decision()``): the sequential decision's
    section, left out when not given (a one-off check of a file has none). ``realized``: the
    serving app's realized quality, left out when the detector does not know the app.
    """
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
        # An inline (empty) icon: browsers would otherwise ask the detector for /favicon.ico.
        "<link rel='icon' href='data:,'>",
        f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1>",
        f"<p>Generated {datetime.now(UTC).isoformat(timespec='seconds')}. Reference: "
        f"{esc(reference.source or 'in memory')} ({reference.size} rows). Live rows shown: "
        f"{live_features.shape[0]}.</p>",
    ]
    if decision is not None:
        parts.extend(_decision_section(history or DecisionLog(), decision))
    if realized is not None:
        parts.extend(_realized_section(realized))
    parts.append("<h2>Latest window</h2>")
    if result is None:
        parts.append("<p>No window has been tested yet.</p>")
    else:
        verdict = "DRIFT" if result.is_drift else "no drift"
        css = " class='drift'" if result.is_drift else ""
        parts.append(
            f"<p{css}>Latest window: <b>{verdict}</b> ({result.window_size} rows, "
            f"{esc(result.correction)} correction, level {result.threshold:g}, per-test "
            f"threshold {result.corrected_threshold:.3g}).</p>"
            "<table><tr><th>test</th><th>distance</th><th>p-value</th><th>drift</th></tr>"
        )
        for name, p in result.p_values.items():
            flagged = name in result.drifted
            parts.append(
                f"<tr{' class=drift' if flagged else ''}><td>{esc(name)}</td>"
                f"<td>{result.distances[name]:.3f}</td><td>{p:.3g}</td>"
                f"<td>{'yes' if flagged else 'no'}</td></tr>"
            )
        parts.append("</table>")
    if live_features.shape[0] == 0:
        parts.append("<p>No live rows received yet: nothing to plot.</p></body></html>")
        return "".join(parts)
    parts.append("<h2>Distributions</h2><div class='grid'>")
    for j, name in enumerate(schema.FEATURE_NAMES):
        caption = ""
        if result is not None:
            caption = f"KS {result.distances[name]:.3f}, p = {result.p_values[name]:.3g}"
        plot = _feature_plot(name, reference.sorted_features[:, j], live_features[:, j])
        parts.append(f"<figure>{plot}<figcaption>{esc(caption)}</figcaption></figure>")
    type_plot = _type_plot(reference.type_counts.tolist(), type_counts(live_is_white).tolist())
    parts.append(f"<figure>{type_plot}<figcaption>{schema.WINE_TYPE}</figcaption></figure>")
    parts.append("</div></body></html>")
    return "".join(parts)
