"""The tutorial-style FastAPI app the serving benchmark compares against.

What most "deploy your model with FastAPI" tutorials write: a pydantic model per wine, a pandas
DataFrame built from the parsed request, ``model.predict`` of a pickled scikit-learn pipeline,
a dict returned for FastAPI to serialise. The model is the same StandardScaler + ElasticNet as the
served bundle, trained on the same real data (by benchmarks/serving.py).

    BASELINE_MODEL=/path/model.pkl uvicorn benchmarks.baseline_app:app
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Literal

import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

from winequality.contract import schema


class Wine(BaseModel):
    fixed_acidity: float
    volatile_acidity: float
    citric_acid: float
    residual_sugar: float
    chlorides: float
    free_sulfur_dioxide: float
    total_sulfur_dioxide: float
    density: float
    ph: float
    sulphates: float
    alcohol: float
    wine_type: Literal["red", "white"]


class Wines(BaseModel):
    wines: list[Wine]


app = FastAPI()
model = pickle.loads(Path(os.environ["BASELINE_MODEL"]).read_bytes())


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
def predict(request: Wines) -> dict[str, list[dict[str, float | int]]]:
    frame = pd.DataFrame([wine.model_dump() for wine in request.wines])
    frame[schema.IS_WHITE] = (frame[schema.WINE_TYPE] == "white").astype(float)
    scores = model.predict(frame[list(schema.MODEL_COLUMNS)])
    return {
        "predictions": [
            {"quality": float(s), "quality_class": int(min(max(round(s), 0), 10))} for s in scores
        ]
    }
