"""`winequality simulate` run in a child process against a running loop (its run folder)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def run_simulate(
    run_dir: Path, cwd: Path, env: Mapping[str, str], *args: str, timeout_s: float = 300
) -> dict[str, Any]:
    """`winequality simulate --run-dir RUN_DIR ARGS`; its JSON summary (the last line it prints).
    Its output is echoed, so a failing test shows what the simulation saw."""
    proc = subprocess.run(
        [sys.executable, "-m", "winequality.cli", "simulate", "--run-dir", str(run_dir), *args],
        cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(proc.stdout)
    summary: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return summary
