"""The detector must start without MLflow or DVC (slim image, fast start)."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "winequality.monitoring.detector",
    "winequality.monitoring.payloads",
    "winequality.monitoring.service",
    "winequality.monitoring.report",
    "winequality.monitoring.alibi_backend",
    "winequality.monitoring.alerting_config",
    "winequality.monitoring.cli",
]


def test_detector_modules_do_not_import_mlflow_or_dvc() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "from winequality.monitoring.service import create_app\n"
        + "from winequality.monitoring.report import render_report\n"
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'dvc'))\n"
        + "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
