"""``winequality serve --backend triton``: the bundled Triton server behind the app.

The model bundle is written as a ``python``-variant Triton model repository (the bundled server
has no onnxruntime backend) in a private temporary directory, Triton starts on free loopback
ports, and the app then runs in ``remote`` mode against it. ``BundledTriton`` is a context
manager: leaving it (normal exit, Ctrl-C, SIGTERM handled by uvicorn) stops Triton by PID and
removes the repository.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from winequality.settings import Settings
from winequality.triton_server import TritonServer

log = logging.getLogger(__name__)


class BundledTriton:
    """Triton serving ``settings.model_dir``; ``settings_for_app`` points the app at it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: TritonServer | None = None
        self._workdir: Path | None = None

    def start(self) -> TritonServer:
        # Imported here: only this backend needs the exporter and the server launcher.
        from winequality.export.triton import write_model_repository
        from winequality.triton_server import ensure_tritonserver, start_tritonserver

        self._workdir = Path(tempfile.mkdtemp(prefix="wineq-triton-"))
        repository = write_model_repository(
            self.settings.model_dir,
            self._workdir / "repository",
            "python",
            max_batch_size=self.settings.triton_max_batch_size,
        )
        dist = ensure_tritonserver(self.settings.cache_dir)
        log_file = self._workdir / "tritonserver.log"
        log.info("starting tritonserver on %s (log: %s)", repository, log_file)
        self.server = start_tritonserver(repository, dist, log_file)
        log.info("tritonserver ready at %s in %.1f s", self.server.http_url, self.server.startup_s)
        return self.server

    def settings_for_app(self) -> Settings:
        if self.server is None:
            raise RuntimeError("BundledTriton.start() was not called")
        return self.settings.model_copy(
            update={"backend": "remote", "remote_url": self.server.http_url}
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> BundledTriton:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
