"""The app's remote backend: ``RemoteV2Predictor`` whose inference POSTs skip httpx.

The V2 inference request is on the path of every prediction in ``remote`` mode, and httpx cost
about five times the app's own work per request (see ``serving/http11.py``), so it goes through
``LeanHttpClient``; readiness and metadata calls keep the httpx client of the base class.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson

from winequality.inference.features import Matrix
from winequality.inference.predictor import (
    Prediction,
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from winequality.inference.remote import RemoteV2Predictor, encode_request, parse_v2_response
from winequality.serving.http11 import (
    ConnectionDroppedError,
    InvalidResponseError,
    LeanHttpClient,
    NoAnswerError,
    UnreachableError,
)


def _error_text(body: bytes) -> str:
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode(errors="replace")
    if isinstance(doc, dict) and "error" in doc:
        return str(doc["error"])[:500]
    return body[:500].decode(errors="replace")


class LeanRemoteV2Predictor(RemoteV2Predictor):
    """``RemoteV2Predictor`` whose inference requests skip httpx (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lean = LeanHttpClient(
            self.base_url,
            timeout_s=self.timeout_s,
            retries=int(kwargs.get("retries", 2)),
            max_connections=int(kwargs.get("max_connections", 32)),
        )
        self._head = self._lean.head(self._infer_path)

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        try:
            return await self._lean.post(self._head, body)
        except UnreachableError as exc:
            raise UpstreamUnavailable(f"V2 server {self.base_url} unreachable: {exc}") from exc
        except NoAnswerError as exc:
            raise UpstreamTimeout(
                f"V2 server {self.base_url} did not answer within {self.timeout_s:g}s"
            ) from exc
        except ConnectionDroppedError as exc:
            raise UpstreamUnavailable(
                f"V2 server {self.base_url} dropped the request: {exc}"
            ) from exc
        except InvalidResponseError as exc:
            raise UpstreamBadResponse(f"V2 server {self.base_url}: {exc}") from exc

    async def _infer(self, matrix: Matrix) -> Prediction:
        status, content = await self._post(encode_request(matrix))
        if status == 503:
            raise UpstreamUnavailable(f"V2 server unavailable: {_error_text(content)}")
        if status != 200:
            raise UpstreamBadResponse(f"V2 server answered {status}: {_error_text(content)}")
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise UpstreamBadResponse(f"V2 server answered with invalid JSON: {exc}") from exc
        version = body.get("model_version") if isinstance(body, dict) else None
        if isinstance(version, str) and version != self._metadata.version:
            self._metadata = self._metadata.model_copy(update={"version": version})
        return parse_v2_response(body, matrix.shape[0])

    async def close(self) -> None:
        self._lean.close()
        with contextlib.suppress(Exception):
            await super().close()
