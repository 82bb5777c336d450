"""The Triton model repository: an ensemble ``preprocess -> <model> -> postprocess``.

Layout written by ``write_model_repository`` (``V`` is the bundle's registry version when it is a
positive integer, else 1)::

    OUT/wine-quality/config.pbtxt           ensemble: named V2 inputs -> quality, quality_class
    OUT/wine-quality/V/                     (empty: Triton requires a version directory)
    OUT/preprocess/config.pbtxt             Python backend
    OUT/preprocess/V/model.py               validates, orders and casts the named inputs
    OUT/preprocess/V/winequality/...        contract/{schema,problems,features}.py, copied verbatim
    OUT/elasticnet/config.pbtxt             ``onnxruntime_onnx`` platform, or the Python backend
    OUT/elasticnet/V/model.onnx             (+ model.py running onnxruntime for ``python``)
    OUT/postprocess/config.pbtxt            Python backend
    OUT/postprocess/V/model.py              clip to 0-10, round to the quality class
    OUT/postprocess/V/winequality/...

The step running the ONNX file is named after the bundle's model family (``elasticnet`` by
default). The pre/post-processing is the code the app runs in process: the Python-backend models
import the copies of ``schema.py``, ``problems.py`` and ``features.py`` shipped next to them, so
nothing is re-typed. The configs are written as text here (the export environment has no Triton
client); the tests parse every one of them as Triton's ``ModelConfig`` protobuf.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from winequality import artifacts
from winequality.contract import features, problems, schema

Variant = Literal["onnxruntime", "python"]
VARIANTS: Final[tuple[Variant, ...]] = ("onnxruntime", "python")

PREPROCESS: Final = "preprocess"
POSTPROCESS: Final = "postprocess"
MODEL_SOURCES: Final = Path(__file__).resolve().parent / "triton_models"
"""Python-backend ``model.py`` sources, one file per model."""

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class TritonExportError(ValueError):
    """The bundle or the options cannot produce a valid model repository."""


@dataclass(frozen=True, slots=True)
class _Enum:
    """A protobuf enum value: written bare in the text format, unlike strings."""

    value: str


PbValue = str | int | float | bool | _Enum | Mapping[str, "PbValue"] | Sequence["PbValue"]


def _render(fields: Mapping[str, PbValue], indent: int = 0) -> str:
    """Protobuf text format for a nested mapping (lists become repeated fields)."""
    pad = "  " * indent
    lines: list[str] = []
    for key, value in fields.items():
        if isinstance(value, Mapping):
            lines.append(f"{pad}{key} {{\n{_render(value, indent + 1)}{pad}}}")
        elif isinstance(value, list | tuple):
            if value and all(isinstance(v, Mapping) for v in value):
                items = ",\n".join(
                    f"{pad}  {{\n{_render(v, indent + 2)}{pad}  }}"
                    for v in value
                    if isinstance(v, Mapping)
                )
                lines.append(f"{pad}{key} [\n{items}\n{pad}]")
            else:
                lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "".join(line + "\n" for line in lines)


def _scalar(value: PbValue) -> str:
    if isinstance(value, _Enum):
        return value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"not a protobuf scalar: {value!r}")


def _tensor(name: str, data_type: str, dims: Sequence[int]) -> dict[str, PbValue]:
    return {"name": name, "data_type": _Enum(data_type), "dims": list(dims)}


FP32: Final = "TYPE_FP32"
INT32: Final = "TYPE_INT32"
STRING: Final = "TYPE_STRING"

FEATURE_INPUTS: Final = tuple(_tensor(n, FP32, [1]) for n in schema.FEATURE_NAMES)
WINE_TYPE_INPUT: Final = _tensor(schema.WINE_TYPE, STRING, [1])
MATRIX: Final = _tensor(schema.ONNX_INPUT, FP32, [schema.N_MODEL_COLUMNS])
SCORE: Final = _tensor(schema.ONNX_OUTPUT, FP32, [1])
QUALITY: Final = _tensor(schema.OUTPUT_QUALITY, FP32, [1])
QUALITY_CLASS: Final = _tensor(schema.OUTPUT_CLASS, INT32, [1])


def _latest_only() -> dict[str, PbValue]:
    # One live version per model: a new export replaces the repository instead of piling up
    # versions, and a rollback is a re-export of the previous champion.
    return {"latest": {"num_versions": 1}}


def _cpu(instances: int) -> list[PbValue]:
    return [{"kind": _Enum("KIND_CPU"), "count": instances}]


def preprocess_config(max_batch_size: int, instances: int = 1) -> str:
    """Named measurements + wine_type -> the validated [N, 12] model matrix."""
    return _render(
        {
            "name": PREPROCESS,
            "backend": "python",
            "max_batch_size": max_batch_size,
            "version_policy": _latest_only(),
            "input": [*FEATURE_INPUTS, WINE_TYPE_INPUT],
            "output": [MATRIX],
            "instance_group": _cpu(instances),
        }
    )


def model_config(
    name: str,
    variant: Variant,
    max_batch_size: int,
    max_queue_delay_us: int = 100,
    instances: int = 1,
) -> str:
    """The ONNX step: the official image's onnxruntime backend, or onnxruntime in Python."""
    runtime: dict[str, PbValue] = (
        {"platform": "onnxruntime_onnx"} if variant == "onnxruntime" else {"backend": "python"}
    )
    return _render(
        {
            "name": name,
            **runtime,
            "max_batch_size": max_batch_size,
            "version_policy": _latest_only(),
            "input": [MATRIX],
            "output": [SCORE],
            "instance_group": _cpu(instances),
            # Concurrent single-row requests are merged into one onnxruntime call; the delay
            # bounds the latency a lone request pays waiting for company.
            "dynamic_batching": {"max_queue_delay_microseconds": max_queue_delay_us},
        }
    )


def postprocess_config(max_batch_size: int, instances: int = 1) -> str:
    """Raw score -> quality (clipped) and quality_class (rounded)."""
    return _render(
        {
            "name": POSTPROCESS,
            "backend": "python",
            "max_batch_size": max_batch_size,
            "version_policy": _latest_only(),
            "input": [SCORE],
            "output": [QUALITY, QUALITY_CLASS],
            "instance_group": _cpu(instances),
        }
    )


def ensemble_config(model_name: str, max_batch_size: int) -> str:
    """``schema.MODEL_NAME``: the only model clients call."""
    inputs = [*schema.FEATURE_NAMES, schema.WINE_TYPE]
    matrix, score = "model_input", "model_score"
    return _render(
        {
            "name": schema.MODEL_NAME,
            "platform": "ensemble",
            "max_batch_size": max_batch_size,
            "input": [*FEATURE_INPUTS, WINE_TYPE_INPUT],
            "output": [QUALITY, QUALITY_CLASS],
            "ensemble_scheduling": {
                "step": [
                    {
                        "model_name": PREPROCESS,
                        "model_version": -1,
                        "input_map": [{"key": n, "value": n} for n in inputs],
                        "output_map": [{"key": schema.ONNX_INPUT, "value": matrix}],
                    },
                    {
                        "model_name": model_name,
                        "model_version": -1,
                        "input_map": [{"key": schema.ONNX_INPUT, "value": matrix}],
                        "output_map": [{"key": schema.ONNX_OUTPUT, "value": score}],
                    },
                    {
                        "model_name": POSTPROCESS,
                        "model_version": -1,
                        "input_map": [{"key": schema.ONNX_OUTPUT, "value": score}],
                        "output_map": [
                            {"key": schema.OUTPUT_QUALITY, "value": schema.OUTPUT_QUALITY},
                            {"key": schema.OUTPUT_CLASS, "value": schema.OUTPUT_CLASS},
                        ],
                    },
                ]
            },
        }
    )


def triton_version(metadata: artifacts.ModelMetadata) -> int:
    """Triton versions are positive integers; a non-numeric registry version ("local") is 1."""
    v = metadata.version.strip()
    return int(v) if v.isdigit() and int(v) > 0 else 1


SHIPPED_MODULES: Final = (schema, problems, features)
"""The contract modules the Python-backend models import (numpy and the standard library only)."""


def copy_processing_code(dest: Path) -> Path:
    """Copy ``SHIPPED_MODULES`` (``contract/{schema,problems,features}.py``) as a minimal
    ``winequality`` package.

    The package ``__init__`` files are written fresh rather than copied, so whatever the real
    package grows at import time never reaches the Triton stub: it needs numpy and nothing else.
    """
    pkg = dest / "winequality"
    (pkg / "contract").mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text('"""Copied from winequality by the Triton export."""\n')
    (pkg / "contract" / "__init__.py").write_text('"""Copied by the Triton export."""\n')
    for module in SHIPPED_MODULES:
        source = Path(str(module.__file__))
        shutil.copyfile(source, pkg / "contract" / source.name)
    return pkg


def _write_model(
    root: Path, name: str, config: str, version: int, source: str | None = None
) -> Path:
    version_dir = root / name / str(version)
    version_dir.mkdir(parents=True)
    (root / name / "config.pbtxt").write_text(config)
    if source is not None:
        shutil.copyfile(MODEL_SOURCES / source, version_dir / "model.py")
    return version_dir


def build_model_repository(
    bundle: Path,
    root: Path,
    variant: Variant = "onnxruntime",
    *,
    max_batch_size: int = 1024,
    max_queue_delay_us: int = 100,
    instances: int = 1,
) -> Path:
    """Write the four models into the (empty or missing) directory ``root``."""
    if variant not in VARIANTS:
        raise TritonExportError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    if max_batch_size < 1:
        raise TritonExportError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if instances < 1:
        raise TritonExportError(f"instances must be >= 1, got {instances}")
    onnx_file = bundle / artifacts.MODEL_FILE
    if not onnx_file.is_file():
        raise TritonExportError(f"{bundle} is not a model bundle: {onnx_file} is missing")
    try:
        metadata = artifacts.read_metadata(bundle)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise TritonExportError(f"{bundle}: unreadable {artifacts.METADATA_FILE}: {exc}") from exc
    if metadata.model_columns != list(schema.MODEL_COLUMNS):
        raise TritonExportError(
            f"{bundle}: the model expects columns {metadata.model_columns}, the ensemble feeds "
            f"{list(schema.MODEL_COLUMNS)}"
        )
    name = metadata.family
    if not _SAFE_NAME.match(name) or name in {PREPROCESS, POSTPROCESS, schema.MODEL_NAME}:
        raise TritonExportError(f"model family {name!r} cannot name a Triton model")
    version = triton_version(metadata)

    pre = _write_model(
        root, PREPROCESS, preprocess_config(max_batch_size, instances), version, "preprocess.py"
    )
    copy_processing_code(pre)
    onnx_dir = _write_model(
        root,
        name,
        model_config(name, variant, max_batch_size, max_queue_delay_us, instances),
        version,
        "onnx_model.py" if variant == "python" else None,
    )
    shutil.copyfile(onnx_file, onnx_dir / artifacts.MODEL_FILE)
    post = _write_model(
        root, POSTPROCESS, postprocess_config(max_batch_size, instances), version, "postprocess.py"
    )
    copy_processing_code(post)
    _write_model(root, schema.MODEL_NAME, ensemble_config(name, max_batch_size), version)
    # Provenance for operators: which bundle this repository serves.
    (root / schema.MODEL_NAME / "metadata.json").write_text(metadata.model_dump_json(indent=2))
    return root


def write_model_repository(
    bundle: Path,
    out: Path,
    variant: Variant = "onnxruntime",
    *,
    max_batch_size: int = 1024,
    max_queue_delay_us: int = 100,
    instances: int = 1,
) -> Path:
    """Build the repository next to ``out`` and swap it in, so a reader never sees half of it."""
    with artifacts.replaced_atomically(out) as tmp:
        build_model_repository(
            bundle,
            tmp,
            variant,
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
            instances=instances,
        )
    return out.absolute()
