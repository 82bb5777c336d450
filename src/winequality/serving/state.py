"""What the endpoints share: settings, the model manager, the metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from winequality.serving.metrics import ServingMetrics
from winequality.serving.model import ModelManager
from winequality.settings import Settings


@dataclass(frozen=True, slots=True)
class ServingState:
    settings: Settings
    manager: ModelManager
    metrics: ServingMetrics


def get_state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


StateDep = Annotated[ServingState, Depends(get_state)]
