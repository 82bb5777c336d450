"""ManagedProcess: its own session by default (stopped as a group), or the caller's session
(stopped alone, the caller untouched)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from winequality.process import LISTEN_PORTS, ManagedProcess, free_port

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_child_gets_its_own_session_and_is_stopped_by_pid(tmp_path: Path) -> None:
    child = ManagedProcess("sleeper", SLEEPER, tmp_path / "sleeper.log").start()
    try:
        assert os.getsid(child.pid) == child.pid
    finally:
        code = child.stop(timeout=5)
    assert code is not None
    assert not child.alive()


def test_a_child_can_stay_in_the_callers_session_and_is_stopped_alone(tmp_path: Path) -> None:
    child = ManagedProcess("sleeper", SLEEPER, tmp_path / "sleeper.log", own_session=False).start()
    try:
        assert os.getsid(child.pid) == os.getsid(0)
        assert os.getpgid(child.pid) == os.getpgid(0)
    finally:
        code = child.stop(timeout=5)
    # Signalling the group would have stopped this test process too.
    assert code == -15
    assert not child.alive()


def test_free_port_is_below_the_ephemeral_range_and_bindable() -> None:
    # Outgoing connections take their source ports from the ephemeral range: a port promised
    # to a service there can be taken before the service binds it.
    floor = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(20):
        port = free_port()
        assert LISTEN_PORTS[0] <= port < min(LISTEN_PORTS[1], floor)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))
