"""Optional backend: Alibi Detect's ``TabularDrift`` (KS per feature + chi-squared for wine_type).

Alibi Detect pins numpy<2 and pandas<3 (and is BSL-licensed), so it never enters the main
environment: it lives in its own virtual env (``alibi-venv`` in the cache dir, created
with ``uv``) and runs in a subprocess. Data goes over an ``.npz`` file, the result comes back as
one JSON line on stdout and is mapped to the same ``DriftResult`` as the built-in backend.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from winequality.contract import schema
from winequality.contract.parsers import frame_rows
from winequality.monitoring.detector import (
    TEST_NAMES,
    DriftResult,
    type_counts,
    wine_type_test,
)
from winequality.params import DriftParams
from winequality.settings import ProjectSettings

ALIBI_REQUIREMENT: Final = "alibi-detect==0.13.*"
ALIBI_PYTHON_VERSION: Final = "3.11"

# Runs inside the Alibi venv: numpy 1.x and alibi_detect only, nothing from this package.
_RUNNER: Final = """
import json, sys
import numpy as np
from alibi_detect.cd import TabularDrift

data = np.load(sys.argv[1])
cfg = json.loads(sys.argv[2])
cd = TabularDrift(
    data["x_ref"], p_val=cfg["p_val"], correction=cfg["correction"],
    categories_per_feature={cfg["categorical"]: None},
)
results = []
for k in range(cfg["windows"]):
    out = cd.predict(data[f"x_{k}"], drift_type="batch", return_p_val=True, return_distance=True)
    out = out["data"]
    results.append({
        "is_drift": int(out["is_drift"]),
        "p_val": np.asarray(out["p_val"], dtype=float).tolist(),
        "distance": np.asarray(out["distance"], dtype=float).tolist(),
        "threshold": np.asarray(out["threshold"], dtype=float).tolist(),
    })
print(json.dumps(results))
"""


class AlibiBackendError(RuntimeError):
    """The Alibi venv could not be built or the detector subprocess failed."""


def alibi_venv_dir(settings: ProjectSettings | None = None) -> Path:
    return (settings or ProjectSettings()).cache_dir / "alibi-venv"


def alibi_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def alibi_available(venv: Path) -> bool:
    """True when the venv exists and imports alibi_detect."""
    python = alibi_python(venv)
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import alibi_detect"], capture_output=True, timeout=120, check=False
    )
    return probe.returncode == 0


def ensure_alibi_venv(venv: Path | None = None, timeout_s: float = 1800.0) -> Path:
    """Create the venv with ``uv venv`` + ``uv pip install`` unless it already works."""
    venv = venv or alibi_venv_dir()
    if alibi_available(venv):
        return venv
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` exports its own path as UV
    if uv is None:
        raise AlibiBackendError("`uv` is needed to build the Alibi Detect venv; it is not on PATH")
    steps = [
        [uv, "venv", "--python", ALIBI_PYTHON_VERSION, str(venv)],
        [uv, "pip", "install", "--python", str(alibi_python(venv)), ALIBI_REQUIREMENT],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise AlibiBackendError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return venv


def _matrix(measurements: np.ndarray[Any, Any], is_white: np.ndarray[Any, Any]) -> Any:
    return np.column_stack((measurements, is_white.astype(np.float64)))


def detect_alibi(
    reference: pd.DataFrame,
    window: pd.DataFrame,
    params: DriftParams,
    venv: Path | None = None,
    timeout_s: float = 300.0,
) -> DriftResult:
    """Same test as ``detector.detect`` but computed by Alibi Detect in its own venv."""
    return detect_alibi_many(reference, [window], params, venv, timeout_s)[0]


def detect_alibi_many(
    reference: pd.DataFrame,
    windows: list[pd.DataFrame],
    params: DriftParams,
    venv: Path | None = None,
    timeout_s: float = 300.0,
) -> list[DriftResult]:
    """Several windows in one subprocess (importing Alibi Detect takes seconds)."""
    venv = venv or alibi_venv_dir()
    if not alibi_python(venv).exists():
        raise AlibiBackendError(
            f"no Alibi Detect venv at {venv}: run `winequality drift alibi-venv` first"
        )
    ref_x, ref_white = frame_rows(reference)
    rows = [frame_rows(w) for w in windows]
    cfg = {
        "p_val": params.p_val,
        "correction": params.correction,
        "categorical": len(schema.FEATURE_NAMES),
        "windows": len(rows),
    }
    with tempfile.TemporaryDirectory(prefix="wineq-alibi-") as tmp:
        arrays = Path(tmp) / "data.npz"
        np.savez(
            arrays,
            x_ref=_matrix(ref_x, ref_white),
            **{f"x_{k}": _matrix(x, white) for k, (x, white) in enumerate(rows)},
        )
        done = subprocess.run(
            [str(alibi_python(venv)), "-c", _RUNNER, str(arrays), json.dumps(cfg)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AlibiBackendError(
            f"alibi detector failed ({done.returncode}):\n{done.stderr[-2000:]}"
        )
    outputs = json.loads(lines[-1])
    ref_counts = type_counts(ref_white)
    return [
        _to_result(
            out,
            params,
            ref_counts=ref_counts,
            n_window=x.shape[0],
            window_white=white,
            n_reference=ref_x.shape[0],
        )
        for out, (x, white) in zip(outputs, rows, strict=True)
    ]


def _to_result(
    out: dict[str, Any],
    params: DriftParams,
    *,
    ref_counts: Any,
    n_window: int,
    window_white: Any,
    n_reference: int,
) -> DriftResult:
    p_values = [float(p) for p in out["p_val"]]
    threshold = out["threshold"]
    # FDR with nothing significant returns the whole array of BH critical values.
    scalar = np.ndim(threshold) == 0
    corrected = float(threshold) if scalar else params.p_val / len(p_values)
    significant = [p < corrected for p in p_values] if scalar else [False] * len(p_values)
    distances = [float(d) for d in out["distance"]]
    # Alibi reports the chi-squared statistic for wine_type; the result type carries the
    # total-variation distance there, as the built-in backend does.
    distances[-1] = wine_type_test(ref_counts, type_counts(window_white))[0]
    return DriftResult(
        is_drift=bool(out["is_drift"]),
        p_values=dict(zip(TEST_NAMES, p_values, strict=True)),
        distances=dict(zip(TEST_NAMES, distances, strict=True)),
        drifted=[n for n, s in zip(TEST_NAMES, significant, strict=True) if s],
        threshold=params.p_val,
        corrected_threshold=corrected,
        correction=params.correction,
        window_size=n_window,
        reference_size=n_reference,
        backend="alibi",
    )
