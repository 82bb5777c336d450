"""Pipeline benchmark: a clean `dvc repro` and a no-op `dvc repro` of the real pipeline, side by
side with a baseline that runs the same stage commands one after the other without DVC.

Targets (issue: foundation): clean repro <= 90 s, no-op repro <= 5 s on 2 cores, installs excluded.

    uv run python benchmarks/pipeline.py [--data ../shared/data/wine-quality] [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.project import make_pipeline_repo, pipeline_env, run

ROOT = Path(__file__).resolve().parents[1]


def stage_commands() -> dict[str, list[str]]:
    """The commands of dvc.yaml, in order, as the baseline runs them."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: str(stage["cmd"]).split() for name, stage in stages.items()}


def timed(cmds: list[list[str]], repo: Path, env: dict[str, str]) -> float:
    """Wall time of running ``cmds`` in order inside ``repo``."""
    start = time.perf_counter()
    for cmd in cmds:
        run(cmd, repo, env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "wine-quality"))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    params = {"data": {"source": args.data}}

    clean: list[float] = []
    noop: list[float] = []
    baseline: list[float] = []
    per_stage: dict[str, list[float]] = {}
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            repo = make_pipeline_repo(Path(tmp) / f"dvc-{i}", params)
            env = pipeline_env(repo)
            clean.append(timed([["dvc", "repro"]], repo, env))
            noop.append(timed([["dvc", "repro"]], repo, env))
        with tempfile.TemporaryDirectory() as tmp:
            repo = make_pipeline_repo(Path(tmp) / f"plain-{i}", params)
            env = pipeline_env(repo)
            total = 0.0
            for name, cmd in stage_commands().items():
                seconds = timed([cmd], repo, env)
                per_stage.setdefault(name, []).append(seconds)
                total += seconds
            baseline.append(total)

    rows = [
        ("stage commands run one by one (no DVC)", statistics.median(baseline), None),
        ("dvc repro, clean", statistics.median(clean), 90.0),
        ("dvc repro, nothing changed", statistics.median(noop), 5.0),
    ]
    print(f"\npipeline benchmark, median of {args.repeat} run(s), data: {args.data}")
    print(f"{'what':<42}{'seconds':>10}{'target':>10}{'ok':>6}")
    for name, seconds, target in rows:
        verdict = "" if target is None else ("yes" if seconds <= target else "NO")
        shown = "" if target is None else f"<= {target:g}"
        print(f"{name:<42}{seconds:>10.1f}{shown:>10}{verdict:>6}")
    print("\nbaseline, per stage (each pays its own interpreter start and imports):")
    for name, seconds_list in per_stage.items():
        print(f"  {name:<40}{statistics.median(seconds_list):>10.1f}")
    overhead = statistics.median(clean) - statistics.median(baseline)
    print(f"DVC overhead on a clean run: {overhead:+.1f} s")


if __name__ == "__main__":
    main()
