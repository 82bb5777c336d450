"""The base of the two hot endpoints (``/predict``, V2 ``infer``): raw ASGI, one code path.

Content type and body size (``http_common.read_body``), model availability and predictor
failures are handled here once, so the subclasses only turn a body into a matrix and a
prediction into a body.
"""

from __future__ import annotations

from time import perf_counter, time
from typing import Any, ClassVar

from fastapi.routing import APIRoute

from winequality.contract.features import Matrix
from winequality.contract.problems import FeatureError
from winequality.http_common import (
    JSON_MEDIA_TYPES,
    ASGIApp,
    BodyError,
    ClientDisconnectedError,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    send_json,
)
from winequality.inference.predictor import (
    PredictorError,
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from winequality.serving.errors import RequestError, error_body
from winequality.serving.model import LoadedModel
from winequality.serving.payload_logger import Exchange
from winequality.serving.recent import REQUEST_IDS
from winequality.serving.state import ServingState

# Failures of the predictor, as (status, reason label); the message is the exception's.
_PREDICTOR_FAILURES: tuple[tuple[type[PredictorError], int, str], ...] = (
    (UpstreamTimeout, 504, "upstream_timeout"),
    (UpstreamUnavailable, 503, "upstream_unavailable"),
    (UpstreamBadResponse, 502, "upstream_bad_response"),
    (PredictorError, 500, "predictor_error"),
)


class HotEndpoint:
    """A POST endpoint answering JSON; subclasses implement ``answer``."""

    route: ClassVar[str]
    """Route template, also the metrics label."""
    accepted_media_types: ClassVar[frozenset[bytes | None]] = JSON_MEDIA_TYPES

    def __init__(self, state: ServingState) -> None:
        self.state = state
        self._max_body = state.settings.max_body_bytes
        self._max_rows = state.settings.max_batch_rows
        # Label lookups are resolved once here, not per request.
        self._rows = state.metrics.rows.labels(self.route)
        self._recent = state.recent

    async def answer(
        self, scope: Scope, body: bytes, model: LoadedModel, rid: str
    ) -> tuple[bytes, bytes | Matrix]:
        """(response body, request payload for the logger: ``body`` itself when it is JSON)."""
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = perf_counter()
        # The id the app issues is the only key of the served rows; the caller's X-Request-ID
        # is echoed as a correlation id and never names a row (see serving/recent.py).
        rid = REQUEST_IDS.next()
        status = 200
        logged: tuple[bytes | Matrix, LoadedModel] | None = None
        try:
            out, logged = await self._respond(scope, receive, rid)
        except RequestError as exc:
            status, out = exc.status, exc.body()
            self._count_error(exc.kind)
        except BodyError as exc:
            status, out = exc.status, error_body(exc.message, exc.reason)
            self._count_error(exc.reason)
        except FeatureError as exc:
            refusal = RequestError.invalid(exc)
            status, out = refusal.status, refusal.body()
            self._count_error(refusal.kind)
        except ClientDisconnectedError:
            self._count_error("client_disconnected")
            return
        except PredictorError as exc:
            for kind, code, reason in _PREDICTOR_FAILURES:  # noqa: B007 (first match wins)
                if isinstance(exc, kind):
                    break
            status, out = code, error_body(str(exc), reason)
            self._count_error(reason)
        await send_json(send, status, out, rid, header(scope, b"x-request-id"))
        self.state.metrics.observe_request(self.route, "POST", status, perf_counter() - start)
        payloads = self.state.payloads
        if payloads is not None and logged is not None:
            # After the answer is sent: the client never waits for this (a put_nowait).
            request, model = logged
            payloads.log(Exchange(rid, model.metadata.name, time(), request, out))

    async def _respond(
        self, scope: Scope, receive: Receive, rid: str
    ) -> tuple[bytes, tuple[bytes | Matrix, LoadedModel]]:
        body = await read_body(scope, receive, self._max_body, self.accepted_media_types)
        model = self.state.manager.current
        if model is None:
            raise RequestError(503, [], "no model loaded yet; see /health/ready", "no_model")
        out, request = await self.answer(scope, body, model, rid)
        return out, (request, model)

    def _count_error(self, reason: str) -> None:
        self.state.metrics.errors.labels(self.route, reason).inc()


class HotRoute(APIRoute):
    """An API route documented by FastAPI (signature, models) but served by a raw ASGI app."""

    def __init__(self, path: str, endpoint: Any, *, asgi: ASGIApp, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = asgi
