"""The promotion gate, as a pure decision over scores measured on one and the same test set.

A challenger becomes champion only if it beats the mean predictor and, when there is one, the
current champion by more than ``min_improvement``. Metrics here are errors: lower is better.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

Outcome = Literal["promoted", "refused", "unchanged"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A registered model version and its score on the current test set."""

    version: str
    run_id: str
    score: float


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reason: str
    metric: str
    challenger: Candidate
    champion: Candidate | None
    baseline_score: float
    min_improvement: float

    @property
    def promoted(self) -> bool:
        return self.outcome == "promoted"

    @property
    def champion_after(self) -> str | None:
        """Version holding the ``champion`` alias once the decision is applied."""
        if self.promoted:
            return self.challenger.version
        return self.champion.version if self.champion else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "promoted": self.promoted,
            "reason": self.reason,
            "metric": self.metric,
            "challenger": asdict(self.challenger),
            "champion": asdict(self.champion) if self.champion else None,
            "baseline_score": self.baseline_score,
            "min_improvement": self.min_improvement,
            "champion_after": self.champion_after,
        }


def decide(
    metric: str,
    challenger: Candidate,
    champion: Candidate | None,
    baseline_score: float,
    min_improvement: float = 0.0,
) -> Decision:
    """Promote, refuse, or leave unchanged (the challenger already is the champion)."""
    if min_improvement < 0:
        raise ValueError(f"min_improvement must be >= 0, got {min_improvement}")

    def result(outcome: Outcome, reason: str) -> Decision:
        return Decision(
            outcome, reason, metric, challenger, champion, baseline_score, min_improvement
        )

    new = f"challenger v{challenger.version} {metric} {challenger.score:.4f}"
    if champion is not None and champion.version == challenger.version:
        return result("unchanged", f"v{challenger.version} already is the champion")
    if not math.isfinite(challenger.score):
        return result("refused", f"{new} is not a finite number")
    # Strict comparisons: a model that only ties the baseline or the champion adds risk (a new
    # artifact in production) without a measured benefit.
    if not challenger.score < baseline_score:
        return result("refused", f"{new} does not beat the mean predictor ({baseline_score:.4f})")
    if champion is None:
        return result(
            "promoted",
            f"first model: {new} beats the mean predictor ({baseline_score:.4f})",
        )
    old = f"champion v{champion.version} ({champion.score:.4f})"
    if not challenger.score < champion.score - min_improvement:
        margin = f" by more than {min_improvement:g}" if min_improvement > 0 else ""
        return result("refused", f"{new} does not beat {old}{margin}")
    return result("promoted", f"{new} beats {old} and the mean predictor ({baseline_score:.4f})")
