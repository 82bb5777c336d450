"""``StagePaths`` and ``dvc.yaml`` name the same files: one cannot move without the other."""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from winequality.stages import PATHS, StagePaths

DVC_YAML = Path(__file__).resolve().parents[2] / "dvc.yaml"
STAGES: dict[str, Any] = yaml.safe_load(DVC_YAML.read_text())["stages"]


def _paths(entries: list[Any]) -> list[Path]:
    """``[path | {path: options}]`` -> paths, in order."""
    return [Path(e) if isinstance(e, str) else Path(next(iter(e))) for e in entries]


def test_dvc_yaml_declares_the_stages_of_stage_paths() -> None:
    assert list(STAGES) == list(PATHS.stages())


@pytest.mark.parametrize("stage", list(PATHS.stages()))
@pytest.mark.parametrize("kind", ["deps", "outs", "metrics"])
def test_each_stage_declares_the_paths_of_stage_paths(stage: str, kind: str) -> None:
    assert sorted(_paths(STAGES[stage].get(kind, []))) == sorted(PATHS.stages()[stage][kind])


@pytest.mark.parametrize("stage", list(PATHS.stages()))
def test_each_stage_command_passes_paths_of_stage_paths(stage: str) -> None:
    known = {Path(p) for p in vars(PATHS).values()}
    words = shlex.split(STAGES[stage]["cmd"])
    given = [Path(value) for option, value in itertools.pairwise(words)
             if option.startswith("--") and "/" in value]  # fmt: skip
    assert [p for p in given if p not in known] == []


def test_plots_read_files_of_stage_paths() -> None:
    plots = yaml.safe_load(DVC_YAML.read_text()).get("plots", [])
    known = {Path(p) for p in vars(PATHS).values()}
    files: set[Path] = set()
    for plot in plots:
        for spec in plot.values() if isinstance(plot, dict) else [{}]:
            y = spec.get("y") if isinstance(spec, dict) else None
            files |= {Path(f) for f in y} if isinstance(y, dict) else set()
        if isinstance(plot, str):
            files.add(Path(plot))
        elif isinstance(plot, dict) and Path(next(iter(plot))).suffix:
            files.add(Path(next(iter(plot))))
    assert files
    # A plot is a stage output file, or an image inside an output folder (``PATHS.plots``).
    assert [f for f in files if f not in known and f.parent not in known] == []


def test_under_moves_every_path_below_the_new_root(tmp_path: Path) -> None:
    moved = StagePaths().under(tmp_path)
    assert moved.train == tmp_path / "data/prepared/train.parquet"
    assert all(Path(p).is_relative_to(tmp_path) for p in vars(moved).values())
