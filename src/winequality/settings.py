"""Runtime settings per service, read from the environment or a ``.env`` file.

One class per process, each with its own prefix, so a process reads only what it uses (the shape
of MLServer's ``Settings`` / ``ModelSettings``):

- ``ProjectSettings`` (``WINEQ_``): the project paths every command shares;
- ``TrackingSettings`` (``WINEQ_``, and ``MLFLOW_TRACKING_URI``): the MLflow store and registry;
- ``ServingSettings`` (``WINEQ_``): the serving app (its folders, ``AppDataSettings``, are shared
  with the retraining job);
- ``DetectorSettings`` (``WINEQ_DRIFT_``): the drift detector;
- ``WebhookSettings`` (``WINEQ_WEBHOOK_``): the retraining webhook;
- ``RetrainSettings`` (``WINEQ_``, one ``WINEQ_DRIFT_`` field): the retraining job it starts;
- ``ClusterSettings`` (``WINEQ_CLUSTER_``): where that job rolls a promotion out in Kubernetes.

``PORTS`` is the one table of default ports: the settings, ``winequality up``, the generated
Prometheus/Alertmanager configs and the tests take theirs from it. Each field is documented where
it is declared. Nothing here touches the disk or network at import: construct a settings object
where it is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from winequality.database import is_postgresql, normalize_url


@dataclass(frozen=True)
class Ports:
    """Default ports of the services; the local stack keeps its URLs the same between runs."""

    app: int = 8000
    """Serving app (REST, V2, metrics)."""
    detector: int = 8010
    """Drift detector (CloudEvents in, metrics out)."""
    webhook: int = 8082
    """Retraining webhook (Alertmanager receiver)."""
    mlflow: int = 5000
    """MLflow UI and tracking server of the local stack."""
    prometheus: int = 9090
    """Prometheus of the local stack."""
    alertmanager: int = 9093
    """Alertmanager of the local stack."""


PORTS: Final = Ports()
"""The default ports; the k8s manifests and Dockerfiles repeat them literally (a test holds them
equal)."""

DEFAULT_DETECTOR_MAX_BODY_BYTES: Final = 4_000_000
"""The detector's ``max_body_bytes`` unless configured, and so the app's assumption of it."""
DEFAULT_PAYLOAD_QUEUE_BYTES: Final = 8 * 1024 * 1024
"""The payload logger's buffer bound in bytes unless configured (``payload_queue_bytes``)."""


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", env_ignore_empty=True, extra="ignore"
    )


class ProjectSettings(BaseSettings):
    """The project paths every command shares."""

    model_config = _config("WINEQ_")

    project_dir: Path = Path(".")
    """Root of the project (where params.yaml and dvc.yaml live)."""
    params_file: Path = Path("params.yaml")
    """Pipeline parameters, one block per stage (relative to ``project_dir`` unless absolute)."""
    cache_dir: Path = Path.home() / ".cache" / "winequality"
    """Downloads (UCI data, the Triton server wheel, the Alibi venv) are cached here."""
    uci_url: str = "https://archive.ics.uci.edu/static/public/186/wine+quality.zip"
    """UCI Wine Quality archive fetched by ``winequality data ingest`` (a mirror may be set)."""

    def params_path(self) -> Path:
        """The params file in force (``project_dir / params_file``)."""
        return self.project_dir / self.params_file


class TrackingSettings(ProjectSettings):
    """The MLflow store and registry (the embedded store lives in the project)."""

    mlflow_tracking_uri: str | None = Field(default=None, validation_alias="MLFLOW_TRACKING_URI")
    """MLflow server; unset means the embedded SQLite store ``sqlite:///mlruns.db``."""
    mlflow_artifacts_dir: Path = Path("mlartifacts")
    """Artifact folder of the embedded store (ignored when a server is used)."""
    experiment_name: str = "wine-quality"
    """MLflow experiment that holds the training runs."""
    registered_model_name: str = "wine-quality"
    """Name of the model in the MLflow model registry."""

    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force (embedded SQLite unless a server is configured)."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.project_dir / 'mlruns.db').resolve()}"


class HttpServerSettings(BaseSettings):
    """What each service's HTTP server (``http_server``) reads, under the service's prefix."""

    model_config = _config("WINEQ_")  # the app's; the detector and the webhook set their own

    drain_s: float = 10.0
    """After SIGTERM: how long the open connections are still answered (readiness already
    false, new connections refused) before the rest are closed."""
    read_timeout_s: float = 10.0
    """A request body must arrive within this many seconds of its headers (408 after)."""


class AppDataSettings(BaseSettings):
    """The app's folders, shared with the retraining job that writes into them."""

    model_config = _config("WINEQ_")

    model_dir: Path = Path("models/serving")
    """Directory written by ``winequality registry pull``: model.onnx + metadata.json; a
    promotion by the retraining job moves it (a symlink in the local stack) to the new bundle."""
    feedback_db: Path = Path("data/feedback.sqlite")
    """SQLite database with labelled production feedback (the retraining job reads it), unless
    ``database_url`` names another store."""
    database_url: str | None = None
    """The feedback store (``WINEQ_DATABASE_URL``): labels, and the served rows they are joined
    to. ``postgresql://user:password@host:port/dbname`` is a PostgreSQL server that every app
    replica and the retraining job share; ``sqlite:///path`` or a path is an embedded SQLite
    file (one host); unset means ``feedback_db``."""

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None:
            normalize_url(value)  # raises ValueError naming an unknown scheme
        return value

    def store_url(self) -> str:
        """The SQLAlchemy URL of the feedback store in force."""
        return normalize_url(self.database_url or self.feedback_db)


class ServingSettings(ProjectSettings, AppDataSettings, HttpServerSettings):
    """The serving app: its model, backend, limits, admin token and payload logging."""

    backend: Literal["onnx", "remote"] = "onnx"
    """``onnx`` runs the model in process; ``remote`` proxies to a V2 server (Seldon/Triton)."""
    remote_url: str = "http://127.0.0.1:8001"
    """Base URL of the V2 inference server in ``remote`` mode."""
    remote_model: str = "wine-quality"
    """Model name on the V2 server."""
    remote_timeout_s: float = 2.0
    """Per-request timeout towards the V2 server."""
    remote_retries: int = 2
    """Retries on connection errors only (never on timeouts: the request may have run)."""
    remote_binary_data: bool = True
    """Send tensors with the V2 binary tensor data extension (Triton, KServe); false sends V2
    JSON, for a V2 server without the extension."""
    triton_max_batch_size: int = 1024
    """``max_batch_size`` of the exported Triton models; the remote predictor sends larger
    matrices as several requests of at most this many rows."""
    onnx_threads: int = 1
    """Intra-op threads of the onnxruntime session."""
    max_batch_rows: int = 10_000
    """Largest number of wines accepted in one request."""
    max_body_bytes: int = 4_000_000
    """Largest request body accepted (413 above)."""
    admin_token: str | None = None
    """Bearer token for ``POST /admin/reload``; unset disables the endpoint (401)."""
    feedback_token: str | None = None
    """Bearer token ``POST /feedback`` requires (labels become training rows); unset leaves it
    open, for development only (the app says so at startup). ``winequality up`` sets one."""
    feedback_rate_per_s: float = 100.0
    """Feedback requests a second one client address may send after its burst (429 above);
    0 disables the limit."""
    feedback_burst: int = 1_000
    """Feedback requests one client address may send at once (a labelling job's backlog)."""
    reload_watch_s: float = 0.0
    """Poll interval of the model dir's metadata.json for automatic reloads; 0 disables."""
    host: str = "127.0.0.1"
    """Interface the app binds to."""
    port: int = PORTS.app
    """Port the app binds to."""
    quality_window: int = 5_000
    """Labelled rows of the served model version over which realized quality is computed (the
    latest ones, joined to the scores served for them)."""
    quality_min_labels: int = 200
    """Fewest labelled rows before ``WineQualityDegraded`` may fire."""
    quality_alpha: float = 0.001
    """Time-uniform false-alarm level of the sequential tests "realized MSE / |bias| worse than
    the champion's test MSE / |bias|": the most a version's labels as good as its test set may
    ever fire, however often it is evaluated (``serving.quality``;
    ``benchmarks/quality_alarms.py`` measures it)."""
    detector_url: str | None = None
    """Drift detector base URL that receives CloudEvents; unset disables payload logging."""
    detector_ingest_token: str | None = Field(
        default=None,
        validation_alias=AliasChoices("detector_ingest_token", "WINEQ_DRIFT_INGEST_TOKEN"),
    )
    """The detector's ingestion token (``WINEQ_DRIFT_INGEST_TOKEN``, the same variable as the
    detector's), sent by the payload logger as ``Authorization: Bearer``."""
    detector_max_body_bytes: int = DEFAULT_DETECTOR_MAX_BODY_BYTES
    """The detector's body limit (its ``WINEQ_DRIFT_MAX_BODY_BYTES``) that the payload logger's
    batched POSTs stay under; set both together."""
    payload_queue_size: int = 10_000
    """Most answered requests buffered for the detector (a single-row one ~1 kB encoded);
    beyond it they are dropped and counted. Room for a linger at ~10,000 requests/s and a slow
    POST or two."""
    payload_queue_bytes: int = DEFAULT_PAYLOAD_QUEUE_BYTES
    """Most payload bytes (request and response bodies) buffered for the detector, beside
    ``payload_queue_size``: a 100-row batch is ~36 kB, so this bounds the buffer's memory
    whatever the batches' size. 8 MiB is about 230 such batches a linger, 100,000 rows a
    second, twice the detector's ingestion bar (50,000 rows/s, ``benchmarks/drift.py``);
    beyond it requests are dropped and counted (``queue_full``)."""
    payload_batch_max: int = 8_192
    """Most CloudEvents per POST to the detector (batched content mode, a JSON array streamed
    a slice at a time; bodies also stop under ``detector_max_body_bytes``); 1 sends each event
    alone in binary mode, as Seldon's request logger does."""
    payload_linger_s: float = 0.2
    """How long requests accumulate before the batched POST that carries them (one POST per
    linger at most): a POST's fixed cost then lands on a handful of requests a second
    (``benchmarks/payload_logging.py``); the detector sees rows that much later."""
    recent_requests: int = 10_000
    """Requests whose rows the app remembers so feedback can name them by request id."""
    database_timeout_s: float = 2.0
    """Bound on one attempt to reach the feedback store (connection, SQLite lock wait; five times
    over for a PostgreSQL statement): ``/feedback`` answers 503 within about this long when the
    database is down."""
    served_rows_shared: bool | None = None
    """Write every answered request's rows to the feedback store, so feedback by request id works
    on whichever replica receives it; unset: on for PostgreSQL, off for SQLite (one process,
    whose recent cache is enough)."""
    served_rows_queue_size: int = 10_000
    """Most answered requests (and ten times as many wines) waiting for the store; beyond it
    they are dropped and counted in ``winequality_served_rows_dropped_total``."""
    served_rows_linger_s: float = 1.0
    """How long answered requests accumulate before the insert that carries them: fewer, larger
    inserts take less of the app's CPU (``benchmarks/served_rows.py``); a label for a request
    another replica answered within this time waits for it (``served_rows_lookup_wait_s``)."""
    served_rows_lookup_wait_s: float = 2.0
    """Beyond a linger, how long a label for a request unknown here keeps looking for it in the
    store (another replica's write may be slow to get there: a busy database, its first
    connection) before the 404; the looks grow from 0.1 s apart."""
    served_rows_retention_s: float = 86_400.0
    """Served rows older than this are deleted from the store (a label must arrive within it)."""

    def shares_served_rows(self) -> bool:
        """Whether answered requests are written to the store (``served_rows_shared``)."""
        if self.served_rows_shared is not None:
            return self.served_rows_shared
        return is_postgresql(self.store_url())


class DetectorSettings(HttpServerSettings):
    """The drift detector service."""

    model_config = _config("WINEQ_DRIFT_")

    host: str = "127.0.0.1"
    """Interface the detector binds to."""
    port: int = PORTS.detector
    """Port the detector binds to."""
    max_body_bytes: int = DEFAULT_DETECTOR_MAX_BODY_BYTES
    """Largest CloudEvents body accepted (413 above); the app's ``detector_max_body_bytes``
    must not exceed it."""
    admin_token: str | None = None
    """Bearer token for ``POST /reference/reload``; unset disables the endpoint (401)."""
    ingest_token: str | None = None
    """Bearer token ``POST /`` (CloudEvents in) requires, checked before the body is read: the
    serving app's payload logger sends it; unset leaves ingestion open, for development only
    (the detector says so at startup). ``winequality up`` sets one."""
    ingest_rate_per_s: float = 1_000.0
    """Ingestion POSTs a second one client address may send after its burst (429 above): room
    for the binary mode's two POSTs per prediction; 0 disables the limit."""
    ingest_burst: int = 2_000
    """Ingestion POSTs one client address may send at once."""
    model_dir: Path = Path("models/serving")
    """Model bundle whose ``reference.parquet`` is the reference sample."""
    params_file: Path = Path("params.yaml")
    """params.yaml whose ``drift`` block configures the test (relative to the working dir)."""
    state_file: Path | None = None
    """The drift detector's sequential state and decision history (rewritten after every
    window), so a restart resumes its charts; unset: ``drift-state.json`` beside the reference
    file (in the bundle: a newly pulled bundle starts without one, as its reference does)."""
    app_url: str | None = None
    """Serving app whose realized quality (``/metrics``) ``GET /report`` shows; unset: none."""


class WebhookSettings(HttpServerSettings):
    """The retraining webhook that Alertmanager calls."""

    model_config = _config("WINEQ_WEBHOOK_")

    token: str | None = None
    """Bearer token Alertmanager must present; unset refuses all."""
    host: str = "127.0.0.1"
    """Interface the webhook binds to."""
    port: int = PORTS.webhook
    """Port the webhook binds to."""
    alerts: tuple[str, ...] = ("WineQualityDrift", "WineQualityDegraded")
    """Alert names that start a retraining."""
    cooldown_s: float = 300.0
    """Quiet period after a retraining during which new alerts are acknowledged, not acted on."""
    command: tuple[str, ...] = ("winequality", "retrain")
    """The job the webhook runs (in a child process, so the webhook stays small)."""


class ClusterSettings(BaseSettings):
    """Where a promotion goes in Kubernetes (``pipeline.cluster``): the model ConfigMap and the
    workloads restarted to serve it. The names are those of ``deploy/k8s``; the webhook's Role
    grants exactly what the client does to them (a test derives one from the other)."""

    model_config = _config("WINEQ_CLUSTER_")

    namespace: str | None = None
    """Namespace of the deployment (the manifests set it from the pod's own); unset means not
    in a cluster: a promotion is deployed by reloading the local app and detector."""
    api_url: str = "https://kubernetes.default.svc"
    """The Kubernetes API server, as seen from the pod."""
    service_account_dir: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount")
    """The mounted service account: ``token`` (bearer, re-read per rollout: it is rotated)
    and ``ca.crt`` (the API server's CA)."""
    model_configmap: str = "wine-quality-model"
    """ConfigMap whose ``MODEL_RUN_ID`` every model puller (Triton, app, detector) reads."""
    model_server_kind: Literal["SeldonDeployment", "InferenceService"] = "SeldonDeployment"
    """Kind of the model server resource (Seldon Core v1 or KServe)."""
    model_server_name: str = "wine-quality"
    """Name of the SeldonDeployment / InferenceService."""
    model_server_deployment: str = "wine-quality-default-0-wine-quality"
    """The Deployment its operator makes (Seldon: ``<sdep>-<predictor>-<index>-<containers>``;
    KServe standard mode: ``<isvc>-predictor``), whose status says when the rollout is done."""
    deployments: tuple[str, ...] = ("wine-quality-app", "drift-detector")
    """Deployments restarted after the model server (they pull the same run)."""
    rollout_timeout_s: float = 600.0
    """How long a rollout may take before the promotion is rolled back."""
    poll_interval_s: float = 2.0
    """Interval between reads of the Deployments' status while waiting."""
    request_timeout_s: float = 10.0
    """Timeout of one request to the API server."""


class RetrainSettings(TrackingSettings, AppDataSettings):
    """The retraining job: its data, where it deploys, and whom it tells to reload (and what
    ``winequality up`` reads: the project, the store, an explicit feedback database)."""

    app_url: str = f"http://127.0.0.1:{PORTS.app}"
    """Serving app told to reload after a promotion."""
    admin_token: str | None = None
    """The app's admin token (``WINEQ_ADMIN_TOKEN``) for its ``/admin/reload``."""
    detector_url: str | None = None
    """Drift detector told to reload its reference after a promotion; unset skips it."""
    detector_admin_token: str | None = Field(
        default=None,
        validation_alias=AliasChoices("detector_admin_token", "WINEQ_DRIFT_ADMIN_TOKEN"),
    )
    """The detector's admin token (``WINEQ_DRIFT_ADMIN_TOKEN``) for ``/reference/reload``."""
