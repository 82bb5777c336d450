"""What the bundled Triton's repository client does when a call loses its connection (the
gRPC transport scripted; the real server's calls are in ``tests/integration``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from tritonclient.utils import InferenceServerException

from winequality.process import ManagedProcess
from winequality.triton_reload import UNAVAILABLE_RETRIES, RepositoryClient, TritonReloadError


class Transport:
    """Raises the scripted errors in turn, then answers."""

    def __init__(self, *errors: InferenceServerException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def load_model(self, model: str, client_timeout: float) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)

    def close(self) -> None:
        pass


def dropped() -> InferenceServerException:
    return InferenceServerException(
        "Stream removed (Socket closed)", status="StatusCode.UNAVAILABLE"
    )


def client(transport: Transport, **kwargs: Any) -> RepositoryClient:
    repo = RepositoryClient("127.0.0.1:1", **kwargs)
    repo._client.close()
    repo._client = transport
    return repo


def test_a_call_that_lost_its_connection_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("winequality.triton_reload.UNAVAILABLE_PAUSE_S", 0.0)
    transport = Transport(dropped(), dropped())
    client(transport).load("elasticnet")
    assert transport.calls == 3


def test_a_connection_lost_on_every_try_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("winequality.triton_reload.UNAVAILABLE_PAUSE_S", 0.0)
    transport = Transport(*(dropped() for _ in range(UNAVAILABLE_RETRIES + 1)))
    with pytest.raises(TritonReloadError, match=r"loading elasticnet failed .*Socket closed"):
        client(transport).load("elasticnet")
    assert transport.calls == UNAVAILABLE_RETRIES + 1


def test_a_refusal_is_not_tried_again() -> None:
    refused = InferenceServerException("Protobuf parsing failed", status="StatusCode.INTERNAL")
    transport = Transport(refused)
    with pytest.raises(TritonReloadError, match="Protobuf parsing failed"):
        client(transport).load("elasticnet")
    assert transport.calls == 1


def test_a_server_that_exited_is_named_with_its_exit_code_and_log(tmp_path: Path) -> None:
    server = ManagedProcess(
        "tritonserver",
        [sys.executable, "-c", "print('Signal (11) received.'); raise SystemExit(139)"],
        tmp_path / "tritonserver.log",
    ).start()
    assert server.proc is not None
    server.proc.wait(30)
    transport = Transport(dropped())
    repo = client(transport, server=server)
    assert not repo.server_alive()
    with pytest.raises(TritonReloadError) as raised:
        repo.load("elasticnet")
    assert "exited with 139" in str(raised.value)
    assert "Signal (11) received." in str(raised.value)
    assert transport.calls == 1
