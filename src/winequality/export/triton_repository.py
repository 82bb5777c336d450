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

Versions: the ensemble names the version of each step (its own), and the steps serve every
version directory present. A repository holds one version of each model, except while a running
server in explicit model control mode swaps to a new one (``StagedVersion``, driven by
``triton_reload``): the new steps load beside the old ones, the ensemble's new version switches
to them in one reload (``latest: 1``), then the old directories go.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from winequality import artifacts, files
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


def _every_version() -> dict[str, PbValue]:
    # The steps serve what is on disk: one version, or two while a swap loads the new one beside
    # the old (the ensemble names which one it calls).
    return {"all": {}}


def _latest_only() -> dict[str, PbValue]:
    # The ensemble: loading its new version retires the old one in the same reload.
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
            "version_policy": _every_version(),
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
            "version_policy": _every_version(),
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
            "version_policy": _every_version(),
            "input": [SCORE],
            "output": [QUALITY, QUALITY_CLASS],
            "instance_group": _cpu(instances),
        }
    )


def ensemble_config(model_name: str, max_batch_size: int, version: int = 1) -> str:
    """``schema.MODEL_NAME``: the only model clients call; each step runs ``version``."""
    inputs = [*schema.FEATURE_NAMES, schema.WINE_TYPE]
    matrix, score = "model_input", "model_score"
    return _render(
        {
            "name": schema.MODEL_NAME,
            "platform": "ensemble",
            "max_batch_size": max_batch_size,
            "version_policy": _latest_only(),
            "input": [*FEATURE_INPUTS, WINE_TYPE_INPUT],
            "output": [QUALITY, QUALITY_CLASS],
            "ensemble_scheduling": {
                "step": [
                    {
                        "model_name": PREPROCESS,
                        "model_version": version,
                        "input_map": [{"key": n, "value": n} for n in inputs],
                        "output_map": [{"key": schema.ONNX_INPUT, "value": matrix}],
                    },
                    {
                        "model_name": model_name,
                        "model_version": version,
                        "input_map": [{"key": schema.ONNX_INPUT, "value": matrix}],
                        "output_map": [{"key": schema.ONNX_OUTPUT, "value": score}],
                    },
                    {
                        "model_name": POSTPROCESS,
                        "model_version": version,
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
    version: int | None = None,
) -> Path:
    """Write the four models into the (empty or missing) directory ``root``, as ``version``
    (default: ``triton_version`` of the bundle)."""
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
    if version is None:
        version = triton_version(metadata)
    elif version < 1:
        raise TritonExportError(f"Triton versions are positive integers, got {version}")

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
    _write_model(root, schema.MODEL_NAME, ensemble_config(name, max_batch_size, version), version)
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


def model_versions(model_dir: Path) -> list[int]:
    """The version directories of one model in a repository, in order."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def repository_versions(root: Path) -> dict[str, list[int]]:
    """``{model: versions}`` of every model directory in ``root``."""
    if not root.is_dir():
        return {}
    return {p.name: model_versions(p) for p in sorted(root.iterdir()) if p.is_dir()}


@dataclass
class StagedVersion:
    """A bundle built as version ``version`` next to a live repository, moved in by steps.

    ``install_steps`` adds the three step models' new version directories (Triton can then load
    them beside the old ones), ``install_ensemble`` the ensemble's (its config now names the new
    steps), and ``withdraw`` puts the live repository back as it was before either. Every move is
    a rename within one file system, so Triton never reads half a version directory.
    """

    live: Path
    staging: Path
    version: int
    steps: tuple[str, ...]
    """The models the ensemble calls: preprocess, the model family, postprocess."""
    added: list[str] = field(default_factory=list)
    """Models that had no directory in the live repository before this version."""
    replaced_configs: dict[str, bytes] = field(default_factory=dict)
    """The previous ``config.pbtxt`` (and ensemble ``metadata.json``) of changed files."""
    installed: list[str] = field(default_factory=list)

    def _move_in(self, name: str) -> None:
        source, target = self.staging / name, self.live / name
        if not target.exists():
            source.rename(target)
            self.added.append(name)
        else:
            (source / str(self.version)).rename(target / str(self.version))
            for file in sorted(p for p in source.iterdir() if p.is_file()):
                old, content = target / file.name, file.read_bytes()
                previous = old.read_bytes() if old.is_file() else b""
                if previous != content:
                    self.replaced_configs[f"{name}/{file.name}"] = previous
                    files.write_bytes(old, content)
        self.installed.append(name)

    def install_steps(self) -> tuple[str, ...]:
        for name in self.steps:
            self._move_in(name)
        return self.steps

    def install_ensemble(self) -> None:
        self._move_in(schema.MODEL_NAME)

    def withdraw(self) -> None:
        """Remove what this version added and restore the files it replaced."""
        for name in reversed(self.installed):
            if name in self.added:
                shutil.rmtree(self.live / name, ignore_errors=True)
            else:
                shutil.rmtree(self.live / name / str(self.version), ignore_errors=True)
        for relative, previous in self.replaced_configs.items():
            path = self.live / relative
            if previous:
                files.write_bytes(path, previous)
            else:
                path.unlink(missing_ok=True)
        self.installed.clear()

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def stage_version(
    bundle: Path,
    live: Path,
    version: int,
    variant: Variant = "onnxruntime",
    *,
    max_batch_size: int = 1024,
    max_queue_delay_us: int = 100,
    instances: int = 1,
) -> StagedVersion:
    """Build ``bundle`` as ``version`` in a staging directory beside the live repository."""
    if any(version in versions for versions in repository_versions(live).values()):
        raise TritonExportError(f"{live} already holds a version {version}")
    staging = live.parent / f".{live.name}.staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        build_model_repository(
            bundle,
            staging,
            variant,
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
            instances=instances,
            version=version,
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    family = artifacts.read_metadata(bundle).family
    return StagedVersion(live, staging, version, (PREPROCESS, family, POSTPROCESS))


def retire_versions(live: Path, keep: int) -> dict[str, tuple[list[int], bool]]:
    """Delete every version directory but ``keep`` (and models left without one).

    Returns ``{model: (deleted versions, whether the model directory went too)}``, for the
    server to reload (or unload) those models.
    """
    retired: dict[str, tuple[list[int], bool]] = {}
    for name, versions in repository_versions(live).items():
        old = [v for v in versions if v != keep]
        if not old:
            continue
        gone = keep not in versions
        if gone:
            shutil.rmtree(live / name)
        else:
            for v in old:
                shutil.rmtree(live / name / str(v))
        retired[name] = (old, gone)
    return retired
