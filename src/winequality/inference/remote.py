"""``RemoteV2Predictor``: the model behind a V2 (Open Inference Protocol) server over HTTP.

Seldon Core and Triton serve the ``wine-quality`` ensemble (see ``export/triton.py``): named
inputs, one ``[N, 1]`` tensor per measurement plus ``wine_type`` as BYTES, and ``quality`` /
``quality_class`` out. The app has already validated the rows into the model matrix; this module
turns the matrix back into named tensors, sends them, and maps transport failures to the typed
errors of ``inference/predictor.py``.

Tensors travel with the V2 binary tensor data extension by default (Triton's
``docs/protocol/extension_binary_data.md``, also in KServe): a small JSON header, then the raw
little-endian columns, and outputs asked back as raw bytes. Formatting 1,200 floats as JSON text
and parsing them back costs both ends more than the whole request otherwise does; the header is a
template filled with two numbers, the columns one ``tobytes``. A server that ignores the output
request and answers JSON is understood too; ``binary_data=False`` sends V2 JSON, for servers
without the extension.

The inference POST is on the path of every prediction in ``remote`` mode, on the event loop that
serves the app, so the client is aiohttp (one pooled ``ClientSession``, C parser): it costs
less CPU per request than httpx did (``benchmarks/triton_proxy.py`` measures the whole path).
Failures: a connection that cannot be made is retried ``retries`` times (the request never
left); a connection dropped before the answer is retried once, since a V2 inference is a pure
function of its request (a keep-alive connection the server closed while idle is the usual
cause); a timeout is not retried (the request may still be running).

Each answer names the version that computed it (``model_version``), and the predictor's metadata
follows it: the bundle's metadata when ``versions`` maps that version to one (the bundled Triton,
whose version numbers need not be the registry's), else the given metadata with that version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final, TypeAlias
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import numpy.typing as npt
import orjson
from yarl import URL

from winequality.artifacts import ModelMetadata
from winequality.contract import schema
from winequality.contract.features import Matrix
from winequality.contract.parsers import V2_BYTES_RED, V2_BYTES_WHITE
from winequality.inference.predictor import (
    Prediction,
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
    check_example_scores,
    example_matrix,
)
from winequality.settings import ServingSettings

Buffer: TypeAlias = bytes | memoryview
_JSON: Final = {"Content-Type": "application/json"}
_INFERENCE_HEADER_LENGTH: Final = "Inference-Header-Content-Length"
_OUTPUT_DTYPES: Final[dict[Any, np.dtype[Any]]] = {
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
}
# No User-Agent to build, and no Accept-Encoding: a compressed answer would cost CPU both ends.
_SKIP_AUTO_HEADERS: Final = ("User-Agent", "Accept", "Accept-Encoding")


def build_v2_request(matrix: Matrix) -> dict[str, Any]:
    """Model matrix -> V2 inference request: one ``[N, 1]`` tensor per column of the schema."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != schema.N_MODEL_COLUMNS:
        raise ValueError(
            f"expected a [N, {schema.N_MODEL_COLUMNS}] model matrix, got shape {matrix.shape}"
        )
    rows = matrix.shape[0]
    # Contiguous rows per column, so orjson writes float32 values natively (shortest repr).
    columns = np.ascontiguousarray(matrix.T)
    inputs: list[dict[str, Any]] = [
        {"name": name, "shape": [rows, 1], "datatype": "FP32", "data": columns[i]}
        for i, name in enumerate(schema.FEATURE_NAMES)
    ]
    is_white = columns[schema.MODEL_COLUMNS.index(schema.IS_WHITE)]
    inputs.append(
        {
            "name": schema.WINE_TYPE,
            "shape": [rows, 1],
            "datatype": "BYTES",
            "data": np.where(is_white >= 0.5, "white", "red").tolist(),
        }
    )
    return {"inputs": inputs}


def encode_request(matrix: Matrix) -> bytes:
    """The V2 JSON request (also the payload logger's encoding of a matrix)."""
    return orjson.dumps(build_v2_request(matrix), option=orjson.OPT_SERIALIZE_NUMPY)


def _binary_header_template() -> bytes:
    """The JSON header of a binary request, with ``%(rows)d``-style slots for what varies.

    Written by orjson once with string placeholders, so the template is valid JSON by
    construction; filling it is one bytes ``%`` per request.
    """

    def tensor(name: str, datatype: str, size: str) -> dict[str, Any]:
        return {
            "name": name,
            "shape": ["@rows@", 1],
            "datatype": datatype,
            "parameters": {"binary_data_size": f"@{size}@"},
        }

    doc = {
        "inputs": [
            *(tensor(name, "FP32", "fp32_size") for name in schema.FEATURE_NAMES),
            tensor(schema.WINE_TYPE, "BYTES", "bytes_size"),
        ],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in schema.OUTPUTS],
    }
    template = orjson.dumps(doc)
    for slot in ("rows", "fp32_size", "bytes_size"):
        template = template.replace(b'"@%b@"' % slot.encode(), b"%%(%b)d" % slot.encode())
    return template


_BINARY_HEADER: Final = _binary_header_template()


def encode_binary_request(matrix: Matrix) -> tuple[bytes, int]:
    """Model matrix -> (body, length of its JSON header) with the binary tensor data extension.

    The 11 measurement columns go as one block: the transposed matrix, C-contiguous, is exactly
    the inputs' data one after the other.
    """
    if matrix.ndim != 2 or matrix.shape[1] != schema.N_MODEL_COLUMNS:
        raise ValueError(
            f"expected a [N, {schema.N_MODEL_COLUMNS}] model matrix, got shape {matrix.shape}"
        )
    rows = matrix.shape[0]
    columns = np.ascontiguousarray(matrix[:, :-1].T, dtype="<f4").tobytes()
    is_white = (matrix[:, -1] >= 0.5).tolist()
    whites = sum(is_white)
    wine_types = b"".join([V2_BYTES_WHITE if w else V2_BYTES_RED for w in is_white])
    header = _BINARY_HEADER % {
        b"rows": rows,
        b"fp32_size": rows * 4,
        b"bytes_size": len(V2_BYTES_RED) * (rows - whites) + len(V2_BYTES_WHITE) * whites,
    }
    return b"".join((header, columns, wine_types)), len(header)


def _output(outputs: dict[Any, Any], name: str, rows: int, dtype: type[Any]) -> npt.NDArray[Any]:
    data = outputs.get(name)
    if not isinstance(data, list | np.ndarray):
        raise UpstreamBadResponse(f"the V2 response has no output {name!r}")
    try:
        values = np.asarray(data, dtype=dtype).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise UpstreamBadResponse(f"output {name!r} is not numeric: {exc}") from exc
    if values.shape[0] != rows:
        raise UpstreamBadResponse(f"output {name!r} has {values.shape[0]} values for {rows} rows")
    return values


def _binary_output(tensor: dict[Any, Any], size: Any, binary: Buffer, offset: int) -> Any:
    """The values of one output sent as binary data at ``offset``."""
    name = tensor.get("name")
    if type(size) is not int or size < 0 or offset + size > len(binary):
        raise UpstreamBadResponse(
            f"output {name!r}: binary_data_size {size!r} does not fit the "
            f"{len(binary) - offset} bytes of binary data left"
        )
    dtype = _OUTPUT_DTYPES.get(tensor.get("datatype"))
    if dtype is None:
        raise UpstreamBadResponse(
            f"output {name!r} has datatype {tensor.get('datatype')!r}; "
            f"expected one of {sorted(_OUTPUT_DTYPES)}"
        )
    if size % dtype.itemsize:
        raise UpstreamBadResponse(
            f"output {name!r}: {size} bytes is not a whole number of {tensor['datatype']} values"
        )
    return np.frombuffer(binary, dtype, size // dtype.itemsize, offset)


def parse_v2_response(body: Any, rows: int, binary: Buffer = b"") -> Prediction:
    """V2 inference response -> ``Prediction``, or ``UpstreamBadResponse`` naming what is off.

    ``binary`` is what follows the JSON header when the server used the binary tensor data
    extension: the outputs with a ``binary_data_size`` parameter take their bytes from it, in
    order; the others carry JSON ``data``.
    """
    if not isinstance(body, dict) or not isinstance(body.get("outputs"), list):
        raise UpstreamBadResponse("the V2 response has no 'outputs' list")
    outputs: dict[Any, Any] = {}
    offset = 0
    for tensor in body["outputs"]:
        if not isinstance(tensor, dict):
            continue
        params = tensor.get("parameters")
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            outputs[tensor.get("name")] = tensor.get("data")
        else:
            outputs[tensor.get("name")] = _binary_output(tensor, size, binary, offset)
            offset += size
    if offset != len(binary):
        raise UpstreamBadResponse(
            f"{len(binary) - offset} bytes of binary data after the outputs' declared sizes"
        )
    quality = _output(outputs, schema.OUTPUT_QUALITY, rows, np.float32)
    klass = _output(outputs, schema.OUTPUT_CLASS, rows, np.int32)
    return Prediction(quality.astype(np.float32), klass.astype(np.int32))


def _error_text(body: bytes) -> str:
    """The ``error`` of a V2 error answer (or the start of the body), for the API client."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode(errors="replace")
    if isinstance(doc, dict) and "error" in doc:
        return str(doc["error"])[:500]
    return body[:500].decode(errors="replace")


def _split_binary(content: bytes, json_length: str | None) -> tuple[Buffer, Buffer]:
    """(JSON header, binary data) of a response; all JSON without the extension's header."""
    if json_length is None:
        return content, b""
    if not json_length.isdigit() or not 0 < int(json_length) <= len(content):
        raise UpstreamBadResponse(
            f"V2 server answered {_INFERENCE_HEADER_LENGTH}: {json_length!r} "
            f"for a body of {len(content)} bytes"
        )
    # Views, not copies: orjson and np.frombuffer both read a memoryview.
    view = memoryview(content)
    return view[: int(json_length)], view[int(json_length) :]


class RemoteV2Predictor:
    """A ``Predictor`` that calls ``POST {base_url}/v2/models/{model}/infer``."""

    def __init__(
        self,
        base_url: str,
        model: str = schema.MODEL_NAME,
        *,
        timeout_s: float = 2.0,
        retries: int = 2,
        max_batch_rows: int = 1024,
        max_connections: int = 32,
        binary_data: bool = True,
        metadata: ModelMetadata | None = None,
        versions: Mapping[str, ModelMetadata] | None = None,
    ) -> None:
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, got {max_batch_rows}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the V2 server URL must be http(s)://host[:port], got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_batch_rows = max_batch_rows
        self.max_connections = max_connections
        self.binary_data = binary_data
        self._given = metadata or ModelMetadata(name=model, version="unknown")
        self._metadata = self._given
        self._versions: Mapping[str, ModelMetadata] = versions if versions is not None else {}
        self._served: str | None = None
        """The server's version of the last answer (what ``_metadata`` describes)."""
        self._infer_url = self._url(f"/v2/models/{model}/infer")
        # Made on first use: aiohttp needs the running loop, and the app builds predictors in a
        # worker thread.
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(
        cls,
        settings: ServingSettings,
        metadata: ModelMetadata | None = None,
        versions: Mapping[str, ModelMetadata] | None = None,
    ) -> RemoteV2Predictor:
        return cls(
            settings.remote_url,
            settings.remote_model,
            timeout_s=settings.remote_timeout_s,
            retries=settings.remote_retries,
            max_batch_rows=settings.triton_max_batch_size,
            binary_data=settings.remote_binary_data,
            metadata=metadata,
            versions=versions,
        )

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def _url(self, path: str) -> URL:
        # Parsed once per path: yarl keeps the parsed form, aiohttp would re-parse a str.
        return URL(self.base_url + path)

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_connections),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def _send(
        self,
        method: str,
        url: URL,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str | None, bytes]:
        """(status, Inference-Header-Content-Length, body) of one request, or the typed error."""
        session = self._session or self._open()
        retry_dropped = True
        attempt = 0
        while True:
            try:
                async with session.request(method, url, data=body, headers=headers) as response:
                    json_length = response.headers.get(_INFERENCE_HEADER_LENGTH)
                    return response.status, json_length, await response.read()
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                if attempt < self.retries:
                    attempt += 1
                    continue
                raise UpstreamUnavailable(
                    f"V2 server {self.base_url} unreachable: {type(exc).__name__}: {exc}"
                ) from exc
            except TimeoutError as exc:
                raise UpstreamTimeout(
                    f"V2 server {self.base_url} did not answer within {self.timeout_s:g}s"
                ) from exc
            except aiohttp.ClientResponseError as exc:
                raise UpstreamBadResponse(
                    f"V2 server {self.base_url}: invalid HTTP response: {exc.message}"
                ) from exc
            except aiohttp.ClientError as exc:
                if retry_dropped:
                    retry_dropped = False
                    continue
                raise UpstreamUnavailable(
                    f"V2 server {self.base_url} dropped the request: {type(exc).__name__}: {exc}"
                ) from exc

    async def _infer(self, matrix: Matrix) -> Prediction:
        if self.binary_data:
            body, header_length = encode_binary_request(matrix)
            headers = {
                "Content-Type": "application/octet-stream",
                _INFERENCE_HEADER_LENGTH: str(header_length),
            }
        else:
            body, headers = encode_request(matrix), _JSON
        status, json_length, content = await self._send("POST", self._infer_url, body, headers)
        if status == 503:
            raise UpstreamUnavailable(f"V2 server unavailable: {_error_text(content)}")
        if status != 200:
            raise UpstreamBadResponse(f"V2 server answered {status}: {_error_text(content)}")
        header, binary = _split_binary(content, json_length)
        try:
            doc = orjson.loads(header)
        except orjson.JSONDecodeError as exc:
            raise UpstreamBadResponse(f"V2 server answered with invalid JSON: {exc}") from exc
        version = doc.get("model_version") if isinstance(doc, dict) else None
        if isinstance(version, str) and version != self._served:
            self._follow(version)
        return parse_v2_response(doc, matrix.shape[0], binary)

    def _follow(self, version: str) -> None:
        """Describe the server's ``version`` from now on."""
        self._served = version
        known = self._versions.get(version)
        if known is not None:
            self._metadata = known
        elif version == self._given.version:
            self._metadata = self._given
        else:
            self._metadata = self._given.model_copy(update={"version": version})

    async def predict(self, matrix: Matrix) -> Prediction:
        rows = matrix.shape[0]
        if rows == 0:
            return Prediction(np.empty(0, np.float32), np.empty(0, np.int32))
        if rows <= self.max_batch_rows:
            return await self._infer(matrix)
        chunks = [
            matrix[start : start + self.max_batch_rows]
            for start in range(0, rows, self.max_batch_rows)
        ]
        parts = await asyncio.gather(*(self._infer(chunk) for chunk in chunks))
        return Prediction(
            np.concatenate([p.quality for p in parts]),
            np.concatenate([p.quality_class for p in parts]),
        )

    async def self_check(self) -> None:
        """The upstream's predictions for the schema's examples (clipped already: the raw score
        stays on the server); ``Upstream*`` errors when it cannot be asked."""
        check_example_scores((await self.predict(example_matrix())).quality, "predictions")

    async def ready(self) -> bool:
        """The server is ready and so is the model (``/v2/health/ready``, ``.../ready``)."""
        for path in ("/v2/health/ready", f"/v2/models/{self.model}/ready"):
            try:
                status, _, _ = await self._send("GET", self._url(path))
            except (UpstreamUnavailable, UpstreamTimeout, UpstreamBadResponse):
                return False
            if status != 200:
                return False
        if self._served is None and self._metadata.version == "unknown":
            await self._fetch_version()
        return True

    async def _fetch_version(self) -> None:
        """The served version from ``GET /v2/models/{model}`` (the ensemble's is the bundle's)."""
        try:
            _, _, content = await self._send("GET", self._url(f"/v2/models/{self.model}"))
            versions = orjson.loads(content).get("versions") or []
        except (
            UpstreamUnavailable,
            UpstreamTimeout,
            UpstreamBadResponse,
            orjson.JSONDecodeError,
            AttributeError,
        ):
            return  # unreachable, or not a model metadata document: keep "unknown"
        if versions:
            latest = max(versions, key=lambda v: int(v) if str(v).isdigit() else -1)
            self._follow(str(latest))

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
