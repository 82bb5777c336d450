"""The base of the two hot endpoints (``/predict``, V2 ``infer``): raw ASGI, one code path.

Content type and body size (``http_common.read_body``'s rules), model availability, predictor
failures, the remembered rows, metrics and payload logging are handled here once, so the
subclasses only turn a body into a matrix and a prediction into a body.

Every request of a small model costs about as much in fixed overhead as in work, so the path is
kept flat: one pass over the headers (Content-Type, Content-Length, X-Request-ID and the
subclass's header), the body of one message taken as it comes, no coroutine per step (the
in-process predictor runs inline, a remote one is awaited), the route's metrics bound once as
plain counts (``metrics.RouteMetrics``), the response headers built without a helper, and
request ids sliced from a pool of random bytes.
"""

from __future__ import annotations

import logging
from time import perf_counter, time
from typing import Any, ClassVar

from fastapi.routing import APIRoute

from winequality.contract.features import Matrix
from winequality.contract.problems import FeatureError
from winequality.http_common import (
    JSON_HEADER,
    JSON_MEDIA_TYPES,
    ASGIApp,
    BodyError,
    BodyTooLargeError,
    ClientDisconnectedError,
    Receive,
    Scope,
    Send,
    check_body_headers,
    given_request_id,
    read_body_from,
)
from winequality.inference.predictor import (
    Prediction,
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

log = logging.getLogger(__name__)

# Failures of the predictor, as (status, reason label); the message is the exception's.
_PREDICTOR_FAILURES: tuple[tuple[type[PredictorError], int, str], ...] = (
    (UpstreamTimeout, 504, "upstream_timeout"),
    (UpstreamUnavailable, 503, "upstream_unavailable"),
    (UpstreamBadResponse, 502, "upstream_bad_response"),
    (PredictorError, 500, "predictor_error"),
)


class HotEndpoint:
    """A POST endpoint answering JSON; subclasses implement ``parse`` and ``respond``."""

    route: ClassVar[str]
    """Route template, also the metrics label."""
    accepted_media_types: ClassVar[frozenset[bytes | None]] = JSON_MEDIA_TYPES
    extra_header: ClassVar[bytes | None] = None
    """A header ``parse`` reads (lower-case name), found in the same pass as X-Request-ID."""

    def __init__(self, state: ServingState) -> None:
        self.state = state
        self._max_body = state.settings.max_body_bytes
        self._max_rows = state.settings.max_batch_rows
        self._limit_digits = len(str(self._max_body))
        metrics = state.metrics
        self._metrics = metrics
        self._answered = metrics.requests.route(self.route)
        self._quality = metrics.quality
        self._recent = state.recent
        self._manager = state.manager
        self._media_ok: dict[bytes | None, bool] = {}
        """Whether a Content-Type value (as sent) names an accepted media type, by value."""

    def parse(self, body: bytes, extra: bytes | None) -> tuple[Matrix, Any]:
        """(model matrix, what ``respond`` needs of the request) or ``FeatureError`` /
        ``RequestError``; ``extra`` is the ``extra_header`` value."""
        raise NotImplementedError

    def respond(
        self, parsed: Any, prediction: Prediction, model: LoadedModel, rid: str, body: bytes
    ) -> tuple[bytes, bytes | Matrix]:
        """(response body, request payload for the logger: ``body`` itself when it is JSON)."""
        raise NotImplementedError

    async def __call__(  # noqa: PLR0912, PLR0915 (one flat path: a call per step costs)
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        start = perf_counter()
        given = extra = content_type = declared = None
        wanted = self.extra_header
        # One pass for every header the endpoint reads (the first value of each counts).
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value if content_type is None else content_type
            elif key == b"content-length":
                declared = value if declared is None else declared
            elif key == b"x-request-id":
                given = value if given is None else given
            elif key == wanted and extra is None:
                extra = value
        # The id the app issues is the only key of the served rows; the caller's X-Request-ID
        # is echoed as a correlation id and never names a row (see serving/recent.py).
        rid = REQUEST_IDS.next()
        status = 200
        logged: tuple[bytes | Matrix, LoadedModel] | None = None
        try:
            # A length with fewer digits than the limit is below it: no int() needed.
            if self._media_ok.get(content_type) is not True or (
                declared is not None and len(declared) >= self._limit_digits
            ):
                self._check_headers(content_type, declared)
            message = await receive()
            body = message.get("body", b"")
            if message.get("more_body", True) or message["type"] != "http.request":
                body = await read_body_from(scope, receive, message, self._max_body)
            elif len(body) > self._max_body:
                raise BodyTooLargeError(self._max_body)
            model = self._manager.current
            if model is None:
                raise RequestError(503, [], "no model loaded yet; see /health/ready", "no_model")
            matrix, parsed = self.parse(body, extra)
            predictor = model.predictor
            inline = getattr(predictor, "predict_sync", None)
            prediction = inline(matrix) if inline is not None else await predictor.predict(matrix)
            metadata = predictor.metadata
            self._recent.remember(rid, matrix, prediction.quality, metadata.version)
            self._quality.observe(prediction.quality)
            out, request = self.respond(parsed, prediction, model, rid, body)
            logged = (request, model)
        except ClientDisconnectedError:
            self._count_error("client_disconnected")
            return
        except (RequestError, BodyError, FeatureError, PredictorError) as exc:
            status, out = self._refusal(exc)
        except Exception:  # a bug, not the client's fault: still JSON, with the id, counted
            log.exception("%s request %s failed", self.route, rid)
            status, out = 500, error_body(f"internal server error (request id {rid})", "internal")
            self._count_error("internal")
        headers = [
            JSON_HEADER,
            (b"content-length", b"%d" % len(out)),
            (b"x-request-id", rid.encode()),
        ]
        if given is not None and given_request_id(given) is not None:
            headers.append((b"x-correlation-id", given))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})
        elapsed = perf_counter() - start
        if logged is not None:
            self._answered.answered(len(matrix), elapsed)
            payloads = self.state.payloads
            if payloads is not None:
                # After the answer is sent: the client never waits for this (a put_nowait).
                request, model = logged
                payloads.log(Exchange(rid, model.metadata.name, time(), request, out))
        else:
            self._metrics.observe_request(self.route, "POST", status, elapsed)

    def _check_headers(self, content_type: bytes | None, declared: bytes | None) -> None:
        """``read_body``'s checks of the headers; a Content-Type value found acceptable is
        remembered (a handful of values in practice: the cache stops growing at 64)."""
        check_body_headers(content_type, declared, self._max_body, self.accepted_media_types)
        if len(self._media_ok) < 64:
            self._media_ok[content_type] = True

    def _refusal(self, exc: Exception) -> tuple[int, bytes]:
        """(status, error body) of a refused or failed request, counted by reason."""
        if isinstance(exc, RequestError):
            status, out, reason = exc.status, exc.body(), exc.kind
        elif isinstance(exc, BodyError):
            status, out, reason = exc.status, error_body(exc.message, exc.reason), exc.reason
        elif isinstance(exc, FeatureError):
            refusal = RequestError.invalid(exc)
            status, out, reason = refusal.status, refusal.body(), refusal.kind
        else:
            for kind, status, reason in _PREDICTOR_FAILURES:  # noqa: B007 (first match wins)
                if isinstance(exc, kind):
                    break
            out = error_body(str(exc), reason)
        self._count_error(reason)
        return status, out

    def _count_error(self, reason: str) -> None:
        self._metrics.errors.labels(self.route, reason).inc()


class HotRoute(APIRoute):
    """An API route documented by FastAPI (signature, models) but served by a raw ASGI app."""

    def __init__(self, path: str, endpoint: Any, *, asgi: ASGIApp, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = asgi
