"""Command line, environment and unpacking of the bundled Triton server (no server started)."""

from __future__ import annotations

import sysconfig
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from winequality import bundled_triton
from winequality.bundled_triton import (
    TritonDistribution,
    TritonFetchError,
    TritonPorts,
    backend_requirements,
    server_command,
    server_env,
)


@pytest.fixture
def dist(tmp_path: Path) -> TritonDistribution:
    return TritonDistribution(
        root=tmp_path,
        binary=tmp_path / "bin" / "tritonserver",
        libs_dir=tmp_path / "libs",
        backends_dir=tmp_path / "backends",
        caches_dir=tmp_path / "caches",
        python_bin=tmp_path / "env" / "bin",
    )


def test_command_serves_the_repository_on_loopback_ports(
    dist: TritonDistribution, tmp_path: Path
) -> None:
    cmd = server_command(dist, tmp_path / "repo", TritonPorts(8000, 8001, 8002))
    assert cmd[0] == str(dist.binary)
    for flag in (
        f"--model-repository={tmp_path / 'repo'}",
        f"--backend-directory={dist.backends_dir}",
        "--http-address=127.0.0.1",
        "--http-port=8000",
        "--grpc-address=127.0.0.1",
        "--grpc-port=8001",
        "--metrics-address=127.0.0.1",
        "--metrics-port=8002",
        "--strict-readiness=true",
    ):
        assert flag in cmd


def test_explicit_model_control_loads_nothing_and_asks_readiness_of_the_model(
    dist: TritonDistribution, tmp_path: Path
) -> None:
    ports = TritonPorts(8000, 8001, 8002)
    default = server_command(dist, tmp_path, ports)
    explicit = server_command(dist, tmp_path, ports, model_control="explicit")
    assert {"--model-control-mode=none", "--strict-readiness=true"} <= set(default)
    assert {"--model-control-mode=explicit", "--strict-readiness=false"} <= set(explicit)
    assert not any(a.startswith("--load-model") for a in explicit)


def test_each_server_gets_its_own_shared_memory_prefix(
    dist: TritonDistribution, tmp_path: Path
) -> None:
    ports = TritonPorts(8000, 8001, 8002)
    first, second = (
        {a for a in server_command(dist, tmp_path, ports) if "shm-region-prefix-name" in a}
        for _ in range(2)
    )
    assert len(first) == 1
    assert first != second


def test_free_ports_are_distinct() -> None:
    ports = TritonPorts.free()
    assert len({ports.http, ports.grpc, ports.metrics}) == 3


def test_env_puts_the_stub_python_first_and_libpython_on_the_library_path(
    dist: TritonDistribution, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIRTUAL_ENV", "/somewhere/.venv")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/src")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/lib")
    env = server_env(dist)
    assert env["PATH"].split(":")[0] == str(dist.python_bin)
    libs = env["LD_LIBRARY_PATH"].split(":")
    assert libs[0] == sysconfig.get_config_var("LIBDIR")
    assert str(dist.libs_dir) in libs
    assert libs[-1] == "/opt/lib"
    assert "VIRTUAL_ENV" not in env
    assert "PYTHONPATH" not in env


def test_stub_environment_pins_numpy_below_2_and_the_project_onnxruntime() -> None:
    assert backend_requirements() == ["numpy>=1.26,<2", f"onnxruntime=={version('onnxruntime')}"]


def test_a_wheel_without_the_server_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "nvidia_pytriton-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pytriton/__init__.py", "")
    with pytest.raises(TritonFetchError, match="does not contain pytriton/tritonserver"):
        bundled_triton._unpack(wheel, tmp_path / "out")


def test_unpacking_keeps_the_executable_bit(tmp_path: Path) -> None:
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        info = zipfile.ZipInfo("pytriton/tritonserver/bin/tritonserver")
        info.external_attr = 0o100755 << 16
        zf.writestr(info, "#!/bin/sh\n")
        zf.writestr("nvidia_pytriton.libs/libx.so", "")
        zf.writestr("pytriton/other.py", "")
    bundled_triton._unpack(wheel, tmp_path / "out")
    binary = tmp_path / "out" / "pytriton" / "tritonserver" / "bin" / "tritonserver"
    assert binary.stat().st_mode & 0o111
    assert (tmp_path / "out" / "nvidia_pytriton.libs" / "libx.so").is_file()
    assert not (tmp_path / "out" / "pytriton" / "other.py").exists()
