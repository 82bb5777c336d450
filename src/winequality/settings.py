"""Runtime settings, read from the environment (prefix ``WINEQ_``) or a ``.env`` file.

Each field is documented where it is declared. Nothing here touches the disk or network at import:
construct ``Settings()`` where it is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MAX_BODY_BYTES: Final = 4_000_000
"""``max_body_bytes`` unless configured: the app's and the detector's body limit, under which the
payload logger sizes its batched POSTs."""


class Settings(BaseSettings):
    """All knobs of the system with embedded defaults that work on a fresh machine."""

    model_config = SettingsConfigDict(
        env_prefix="WINEQ_", env_file=".env", env_ignore_empty=True, extra="ignore"
    )

    # --- paths -------------------------------------------------------------------------------
    project_dir: Path = Path(".")
    """Root of the project (where params.yaml and dvc.yaml live)."""
    params_file: Path = Path("params.yaml")
    """Pipeline parameters, one block per stage."""
    cache_dir: Path = Path.home() / ".cache" / "winequality"
    """Downloads (UCI data, the Triton server wheel) are cached here."""
    uci_url: str = "https://archive.ics.uci.edu/static/public/186/wine+quality.zip"
    """UCI Wine Quality archive fetched by ``winequality data ingest`` (a mirror may be set)."""

    # --- tracking ----------------------------------------------------------------------------
    mlflow_tracking_uri: str | None = Field(default=None, validation_alias="MLFLOW_TRACKING_URI")
    """MLflow server; unset means the embedded SQLite store ``sqlite:///mlruns.db``."""
    mlflow_artifacts_dir: Path = Path("mlartifacts")
    """Artifact folder of the embedded store (ignored when a server is used)."""
    experiment_name: str = "wine-quality"
    """MLflow experiment that holds the training runs."""
    registered_model_name: str = "wine-quality"
    """Name of the model in the MLflow model registry."""

    # --- serving -----------------------------------------------------------------------------
    model_dir: Path = Path("models/serving")
    """Directory written by ``winequality registry pull``: model.onnx + metadata.json."""
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
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest request body accepted (413 above)."""
    admin_token: str | None = None
    """Bearer token for ``POST /admin/reload``; unset disables the endpoint (401)."""
    reload_watch_s: float = 0.0
    """Poll interval of the model dir's metadata.json for automatic reloads; 0 disables."""
    host: str = "127.0.0.1"
    """Interface the app binds to."""
    port: int = 8000
    """Port the app binds to."""

    # --- monitoring --------------------------------------------------------------------------
    detector_url: str | None = None
    """Drift detector base URL that receives CloudEvents; unset disables payload logging."""
    payload_queue_size: int = 10_000
    """Most answered requests buffered for the detector (each ~1 kB encoded); beyond it they
    are dropped and counted. Room for a linger at ~10,000 requests/s and a slow POST or two."""
    payload_batch_max: int = 8_192
    """Most CloudEvents per POST to the detector (batched content mode, a JSON array streamed
    a slice at a time; bodies also stop under ``DEFAULT_MAX_BODY_BYTES``); 1 sends each event
    alone in binary mode, as Seldon's request logger does."""
    payload_linger_s: float = 0.2
    """How long requests accumulate before the batched POST that carries them (one POST per
    linger at most): a POST's fixed cost then lands on a handful of requests a second
    (``benchmarks/payload_logging.py``); the detector sees rows that much later."""
    feedback_db: Path = Path("data/feedback.sqlite")
    """SQLite database with labelled production feedback."""
    recent_requests: int = 10_000
    """Requests whose rows the app remembers so feedback can name them by request id."""
    drift_state_file: Path | None = None
    """The drift detector's sequential state and decision history (rewritten after every
    window), so a restart resumes its charts; unset: ``drift-state.json`` beside the reference
    file (in the bundle: a newly pulled bundle starts without one, as its reference does)."""

    # --- continuous training -----------------------------------------------------------------
    webhook_token: str | None = None
    """Bearer token Alertmanager must present to the retraining webhook; unset refuses all."""
    webhook_port: int = 8082
    """Port of the retraining webhook."""
    retrain_alerts: tuple[str, ...] = ("WineQualityDrift",)
    """Alert names that start a retraining."""
    retrain_cooldown_s: float = 300.0
    """Quiet period after a retraining during which new alerts are acknowledged, not acted on."""
    retrain_command: tuple[str, ...] = ("winequality", "retrain")
    """The job the webhook runs (in a child process, so the webhook stays small)."""
    app_url: str = "http://127.0.0.1:8000"
    """Serving app told to reload after a promotion."""

    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force (embedded SQLite unless a server is configured)."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.project_dir / 'mlruns.db').resolve()}"
