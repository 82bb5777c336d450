"""The serving app's realized quality, as the drift report shows it.

Realized quality lives in the app: it joins feedback labels to the scores it served
(``serving.quality``) and exports the statistics on its ``/metrics``. The detector never sees a
label, so its report reads those gauges from the app when it is rendered (``WINEQ_DRIFT_APP_URL``)
rather than keeping a second copy of the labels and of the rule. Parsed with prometheus_client's
own exposition parser; an app that does not answer is shown as such, never as "no degradation".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

PREFIX: Final = "winequality_"
GAUGES: Final = (
    "realized_labels",
    "realized_rmse",
    "realized_mae",
    "realized_within_0_5",
    "realized_within_1_0",
    "realized_bias",
    "champion_test_rmse",
    "champion_test_bias",
    "realized_rmse_z",
    "realized_rmse_z_threshold",
    "realized_bias_z",
    "realized_bias_z_threshold",
    "realized_degraded",
    "prediction_ks",
)
"""The app's realized-quality gauges (``serving.metrics``), without the prefix."""


@dataclass(frozen=True)
class RealizedQualityView:
    """The gauges by model version, read from ``source`` (or why they could not be)."""

    source: str
    versions: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str | None = None


def parse_exposition(text: str, source: str) -> RealizedQualityView:
    """The realized-quality gauges of an app's ``/metrics`` text, by ``model_version``."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {PREFIX + name: name for name in GAUGES}
    versions: dict[str, dict[str, float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            short = wanted.get(family.name)
            if short is None:
                continue
            for sample in family.samples:
                version = sample.labels.get("model_version")
                if version is not None:
                    versions.setdefault(version, {})[short] = float(sample.value)
    except ValueError as exc:
        return RealizedQualityView(source, error=f"not a Prometheus exposition: {exc}")
    return RealizedQualityView(source, versions)


async def fetch_realized(app_url: str, timeout_s: float = 3.0) -> RealizedQualityView:
    """``GET {app_url}/metrics``, parsed; never raises (the report says what went wrong)."""
    import httpx

    url = f"{app_url.rstrip('/')}/metrics"
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            resp = await client.get(url)
    except httpx.HTTPError as exc:
        return RealizedQualityView(url, error=f"{type(exc).__name__}: {exc}")
    if resp.status_code != 200:
        return RealizedQualityView(url, error=f"answered {resp.status_code}")
    return parse_exposition(resp.text, url)
