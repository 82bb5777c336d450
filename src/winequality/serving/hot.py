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

The logic is one sync core (``_decide``: model, parse, predict inline, remember, observe,
respond; ``Answer.finish``: metrics and the payload log once the answer is out) with two callers:
the ASGI ``__call__``, which reads the body as messages and awaits a remote predictor, and
``answer_sync``, which the project's server (``http_server.DrainingProtocol``) calls from its
protocol for a POST whose whole body it holds, skipping the ASGI task, its receive/send
coroutines and message dicts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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


class Answer:
    """One request's answer: what is sent (``status``, ``headers``, ``body``), then ``finish()``
    once it is out (the route's metrics, the payload log)."""

    __slots__ = ("_endpoint", "_logged", "_rid", "_rows", "_start", "body", "headers", "status")

    def __init__(
        self,
        endpoint: HotEndpoint,
        request: _Request,
        status: int,
        body: bytes,
        *,
        logged: tuple[bytes | Matrix, LoadedModel] | None = None,
        rows: int = 0,
    ) -> None:
        self._endpoint = endpoint
        self._start = request.start
        self._rid = request.rid
        self._logged = logged
        self._rows = rows
        self.status = status
        self.body = body
        self.headers = [
            JSON_HEADER,
            (b"content-length", b"%d" % len(body)),
            (b"x-request-id", request.rid.encode()),
        ]
        given = request.given
        if given is not None and given_request_id(given) is not None:
            self.headers.append((b"x-correlation-id", given))

    def finish(self) -> None:
        """After the answer is sent: the client never waits for this (the logger's put_nowait)."""
        endpoint = self._endpoint
        elapsed = perf_counter() - self._start
        logged = self._logged
        if logged is None:
            endpoint._metrics.observe_request(endpoint.route, "POST", self.status, elapsed)
            return
        endpoint._answered.answered(self._rows, elapsed)
        payloads = endpoint.state.payloads
        if payloads is not None:
            request, model = logged
            payloads.log(Exchange(self._rid, model.metadata.name, time(), request, self.body))


class _Request:
    """What the endpoint read of a request's headers, and the id it issued."""

    __slots__ = ("content_type", "declared", "extra", "given", "rid", "start")

    def __init__(self, headers: Iterable[tuple[bytes, bytes]], wanted: bytes | None) -> None:
        self.start = perf_counter()
        given = extra = content_type = declared = None
        # One pass for every header the endpoint reads (the first value of each counts).
        for key, value in headers:
            if key == b"content-type":
                content_type = value if content_type is None else content_type
            elif key == b"content-length":
                declared = value if declared is None else declared
            elif key == b"x-request-id":
                given = value if given is None else given
            elif key == wanted and extra is None:
                extra = value
        self.given, self.extra = given, extra
        self.content_type, self.declared = content_type, declared
        # The id the app issues is the only key of the served rows; the caller's X-Request-ID
        # is echoed as a correlation id and never names a row (see serving/recent.py).
        self.rid = REQUEST_IDS.next()


class _Pending:
    """A request parsed for a predictor that must be awaited (a remote one)."""

    __slots__ = ("matrix", "model", "parsed")

    def __init__(self, model: LoadedModel, matrix: Matrix, parsed: Any) -> None:
        self.model, self.matrix, self.parsed = model, matrix, parsed


class HotEndpoint:
    """A POST endpoint answering JSON; subclasses implement ``parse`` and ``respond``.

    One logic for two callers: the ASGI ``__call__`` (any predictor, bodies in several
    messages) and ``answer_sync``, which the project's server calls from its protocol for a
    request whose body it already holds, when the predictor runs in process.
    """

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

    # -- the two callers ---------------------------------------------------------------------

    def answer_sync(self, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> Answer | None:
        """The answer to a request whose whole ``body`` is in hand, computed here and now; None
        when the model's predictor must be awaited (the caller then goes through ASGI)."""
        model = self._manager.current
        if model is not None and getattr(model.predictor, "predict_sync", None) is None:
            return None
        request = _Request(headers, self.extra_header)
        try:
            self._check_head(request)
            if len(body) > self._max_body:
                raise BodyTooLargeError(self._max_body)
        except BodyError as exc:
            return self._refusal(request, exc)
        answer = self._decide(request, body, model)
        # Never pending: the predictor was looked at above, with no await in between.
        return None if isinstance(answer, _Pending) else answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = _Request(scope["headers"], self.extra_header)
        try:
            self._check_head(request)
            message = await receive()
            body = message.get("body", b"")
            if message.get("more_body", True) or message["type"] != "http.request":
                body = await read_body_from(scope, receive, message, self._max_body)
            elif len(body) > self._max_body:
                raise BodyTooLargeError(self._max_body)
        except ClientDisconnectedError:
            self._count_error("client_disconnected")
            return
        except BodyError as exc:
            answer = self._refusal(request, exc)
        else:
            decided = self._decide(request, body, self._manager.current)
            if isinstance(decided, _Pending):
                answer = await self._await_prediction(request, body, decided)
            else:
                answer = decided
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})
        answer.finish()

    # -- the steps ---------------------------------------------------------------------------

    def _check_head(self, request: _Request) -> None:
        """``read_body``'s checks of the headers; a Content-Type value found acceptable is
        remembered (a handful of values in practice: the cache stops growing at 64)."""
        content_type, declared = request.content_type, request.declared
        # A length with fewer digits than the limit is below it: no int() needed.
        if self._media_ok.get(content_type) is not True or (
            declared is not None and len(declared) >= self._limit_digits
        ):
            check_body_headers(content_type, declared, self._max_body, self.accepted_media_types)
            if len(self._media_ok) < 64:
                self._media_ok[content_type] = True

    def _decide(
        self, request: _Request, body: bytes, model: LoadedModel | None
    ) -> Answer | _Pending:
        """The answer to a whole body, or what to await for it when the predictor is remote."""
        try:
            if model is None:
                raise RequestError(503, [], "no model loaded yet; see /health/ready", "no_model")
            matrix, parsed = self.parse(body, request.extra)
            pending = _Pending(model, matrix, parsed)
            inline = getattr(model.predictor, "predict_sync", None)
            if inline is None:
                return pending
            return self._answer(request, body, pending, inline(matrix))
        except Exception as exc:
            return self._failure(request, exc)

    async def _await_prediction(self, request: _Request, body: bytes, pending: _Pending) -> Answer:
        try:
            prediction = await pending.model.predictor.predict(pending.matrix)
            return self._answer(request, body, pending, prediction)
        except Exception as exc:
            return self._failure(request, exc)

    def _answer(
        self, request: _Request, body: bytes, pending: _Pending, prediction: Prediction
    ) -> Answer:
        model, matrix = pending.model, pending.matrix
        version = model.predictor.metadata.version
        self._recent.remember(request.rid, matrix, prediction.quality, version)
        self._quality.observe(prediction.quality)
        out, logged = self.respond(pending.parsed, prediction, model, request.rid, body)
        return Answer(self, request, 200, out, logged=(logged, model), rows=len(matrix))

    def _failure(self, request: _Request, exc: Exception) -> Answer:
        if isinstance(exc, RequestError | BodyError | FeatureError | PredictorError):
            return self._refusal(request, exc)
        # A bug, not the client's fault: still JSON, with the id, counted.
        rid = request.rid
        log.error("%s request %s failed", self.route, rid, exc_info=exc)
        self._count_error("internal")
        out = error_body(f"internal server error (request id {rid})", "internal")
        return Answer(self, request, 500, out)

    def _refusal(self, request: _Request, exc: Exception) -> Answer:
        """The answer to a refused or failed request, counted by reason."""
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
        return Answer(self, request, status, out)

    def _count_error(self, reason: str) -> None:
        self._metrics.errors.labels(self.route, reason).inc()


class HotRoute(APIRoute):
    """An API route documented by FastAPI (signature, models) but served by a raw ASGI app."""

    def __init__(self, path: str, endpoint: Any, *, asgi: ASGIApp, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = asgi
