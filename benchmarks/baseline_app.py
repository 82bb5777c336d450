"""The apps the serving benchmark measures ours against, each an ASGI app factory for uvicorn.

* ``tutorial``: what most "deploy your model with FastAPI" tutorials write: a pydantic model per
  wine, a pandas DataFrame built from the parsed request, ``model.predict`` of a pickled
  scikit-learn pipeline (``BASELINE_MODEL``), a dict returned for FastAPI to serialise.
* ``lean``: FastAPI + orjson + onnxruntime on the bundle's ONNX file (``LEAN_MODEL``), validating
  nothing: the cheapest honest FastAPI app serving the same model.
* ``constant``: a raw ASGI app reading the body and answering a constant JSON body of the size of
  a single-row answer: what uvicorn itself costs per request, the floor.
* ``constant_in_protocol``: the same answer to ``POST /predict`` and V2 ``infer`` from an
  ``answer_sync`` endpoint, which the project's server (``winequality.http_server``) calls from
  its protocol as it does the app's hot endpoints: what that server path costs per request
  (whatever the body's size: V2 JSON's is 3.5x /predict's), the second floor. Run by
  ``python -m benchmarks.baseline_app --port N`` (under ``http_server.serve``, as the app).

The model is the same StandardScaler + ElasticNet as the served bundle, trained on the same real
data (by benchmarks/serving.py).

    BASELINE_MODEL=/path/model.pkl uvicorn --factory benchmarks.baseline_app:tutorial
    LEAN_MODEL=/path/model.onnx uvicorn --factory benchmarks.baseline_app:lean
    uvicorn --factory benchmarks.baseline_app:constant
    python -m benchmarks.baseline_app --port 8000
"""

from __future__ import annotations

import argparse
import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

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


def _health(app: FastAPI) -> None:
    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}


def tutorial() -> FastAPI:
    import pandas as pd

    app = FastAPI()
    model = pickle.loads(Path(os.environ["BASELINE_MODEL"]).read_bytes())
    _health(app)

    @app.post("/predict")
    def predict(request: Wines) -> dict[str, list[dict[str, float | int]]]:
        frame = pd.DataFrame([wine.model_dump() for wine in request.wines])
        frame[schema.IS_WHITE] = (frame[schema.WINE_TYPE] == "white").astype(float)
        scores = model.predict(frame[list(schema.MODEL_COLUMNS)])
        return {
            "predictions": [
                {"quality": float(s), "quality_class": int(min(max(round(s), 0), 10))}
                for s in scores
            ]
        }

    return app


def lean() -> FastAPI:
    import numpy as np
    import onnxruntime as ort
    import orjson

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        os.environ["LEAN_MODEL"], options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    features = schema.FEATURE_NAMES
    app = FastAPI()
    _health(app)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        wines = orjson.loads(await request.body())["wines"]
        matrix = np.array(
            [[*(w[f] for f in features), w[schema.WINE_TYPE] == "white"] for w in wines],
            dtype=np.float32,
        )
        scores = np.clip(session.run(None, {name: matrix})[0].reshape(-1), 0.0, 10.0)
        body = orjson.dumps(
            {
                "predictions": [
                    {"quality": q, "quality_class": c}
                    for q, c in zip(
                        scores.tolist(), np.rint(scores).astype(int).tolist(), strict=True
                    )
                ]
            }
        )
        return Response(body, media_type="application/json")

    return app


CONSTANT_BODY = (
    b'{"model_name":"wine-quality","model_version":"bench","request_id":'
    b'"0123456789abcdef0123456789abcdef","predictions":[{"quality":5.4321,"quality_class":5}]}'
)


def constant() -> ASGIApp:
    def headers(body: bytes) -> list[tuple[bytes, bytes]]:
        return [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

    answer, answer_headers = CONSTANT_BODY, headers(CONSTANT_BODY)
    ready = b'{"status":"ok"}'
    ready_headers = headers(ready)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: nothing to set up
            message: Any = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, head = answer, answer_headers
        if scope["method"] == "POST":
            message = await receive()
            while message.get("more_body"):
                message = await receive()
        else:
            body, head = ready, ready_headers
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": body})

    return app


class _ConstantAnswer:
    """What ``answer_sync`` returns (``http_server.SyncAnswer``): the constant, nothing after."""

    def __init__(self, body: bytes) -> None:
        self.status = 200
        self.body = body
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
        ]

    def finish(self) -> None:
        pass


class _ConstantEndpoint:
    """``http_server.SyncEndpoint``: the constant answer to any complete request."""

    def __init__(self, body: bytes) -> None:
        self._answer = _ConstantAnswer(body)

    def answer_sync(self, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> _ConstantAnswer:
        return self._answer


class _InProtocol:
    """``constant``, with ``POST /predict`` and V2 ``infer`` answered in the server's protocol."""

    def __init__(self) -> None:
        self.app = constant()
        endpoint = _ConstantEndpoint(CONSTANT_BODY)
        v2_infer = f"/v2/models/{schema.MODEL_NAME}/infer"
        self.hot_endpoints = {"/predict": endpoint, v2_infer: endpoint}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def constant_in_protocol() -> ASGIApp:
    return _InProtocol()


def main() -> None:
    from winequality.http_server import serve
    from winequality.settings import HttpServerSettings

    parser = argparse.ArgumentParser(description="constant_in_protocol under http_server.serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(
        constant_in_protocol(),
        host=args.host,
        port=args.port,
        settings=HttpServerSettings(_env_file=None),  # type: ignore[call-arg]
        log_level="warning",
    )


if __name__ == "__main__":
    main()
