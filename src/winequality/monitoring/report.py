"""HTML drift report: per-feature reference-vs-live distributions with the test results.

Rendered on request (never on the event path) with matplotlib's object-oriented API and the Agg
canvas: no pyplot global state, so concurrent requests in the server's thread pool are safe.
Figures are embedded as inline SVG, making the report one self-contained file that needs nothing
from the network (checked in Chromium by tests/integration/test_pages_offline.py).
"""

from __future__ import annotations

import html
import io
from datetime import UTC, datetime

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from winequality.contract import schema
from winequality.contract.features import BoolArray, FloatArray
from winequality.monitoring.detector import DriftResult, Reference, type_counts

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse}
td,th{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}.drift{color:#b00020;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:1rem}
figure{margin:0}figcaption{font-size:.85rem}
"""


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
) -> str:
    """A self-contained HTML page; ``result`` is None while no window has been tested yet."""
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
