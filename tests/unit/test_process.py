"""ManagedProcess: its own session by default (stopped as a group), or the caller's session
(stopped alone, the caller untouched)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from winequality.process import ManagedProcess

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
