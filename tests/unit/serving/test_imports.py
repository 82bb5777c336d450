"""The serving app must start without MLflow or DVC (slim image, fast cold start)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import winequality.serving.app, winequality.serving.cli, winequality.serving.__main__
from winequality.serving.app import create_app
create_app()
bad = sorted(m for m in sys.modules if m.split('.')[0] in {'mlflow', 'dvc', 'sklearn', 'pandas'})
print(','.join(bad))
"""


def test_serving_app_imports_neither_mlflow_nor_dvc_nor_training_libraries() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"the serving app pulled in {out}"
