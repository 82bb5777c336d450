"""What the endpoints share: settings, model manager, metrics, recent rows, feedback, realized
quality, logger."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from winequality.feedback_store import FeedbackSink
from winequality.serving.metrics import ServingMetrics
from winequality.serving.model import ModelManager
from winequality.serving.payload_logger import PayloadLogger
from winequality.serving.quality import QualityMonitor
from winequality.serving.recent import RecentRequests
from winequality.settings import ServingSettings


@dataclass(frozen=True, slots=True)
class ServingState:
    settings: ServingSettings
    manager: ModelManager
    metrics: ServingMetrics
    recent: RecentRequests
    feedback: FeedbackSink
    quality: QualityMonitor
    """Realized quality of the served version, from the labels joined to its scores."""
    payloads: PayloadLogger | None = None
    """Forwards answered requests to the drift detector; None when no detector is set."""


def get_state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


StateDep = Annotated[ServingState, Depends(get_state)]
