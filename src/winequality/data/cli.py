"""``winequality data ...``: the data stages as DVC calls them (ingest, validate, prepare).

Each command reads its defaults from ``params.yaml`` (flags override them), delegates to the pure
functions of its module and exits non-zero with a readable message on bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from winequality.data.sources import UCI_FILES
from winequality.files import atomic_path, write_json
from winequality.params import Params, load_params
from winequality.settings import ProjectSettings

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(
    name="data",
    help="Data stages: ingest (or generate), validate, prepare.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _out() -> Console:
    # Created per call so output follows sys.stdout/sys.stderr as redirected at that moment.
    return Console(soft_wrap=True, highlight=False)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def _say(message: str, style: str | None = None) -> None:
    _out().print(message, style=style, markup=False)


def _fail(message: str) -> typer.Exit:
    _err().print(f"error: {message}", style="bold red", markup=False)
    return typer.Exit(1)


def _params(settings: ProjectSettings) -> Params:
    return load_params(settings.params_path())


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


@app.command()
def ingest(
    source: Annotated[
        str | None,
        typer.Option(
            help="auto (UCI, else the generator), uci, synthetic, an http(s) URL, a folder with"
            " winequality-red.csv and winequality-white.csv, a CSV file or a UCI zip."
            " Default: params data.source."
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option(help="Where wines.csv and source.json go.")] = Path(
        "data/raw"
    ),
) -> None:
    """Read the raw wines (UCI, a folder, a file, a URL or the generator).

    Writes OUT_DIR/wines.csv (values as read, with the source file and line of each row) and
    OUT_DIR/source.json (what was read, its sha256, and why when auto fell back).
    """
    from winequality.data import ingest as ingest_mod

    settings = ProjectSettings()
    data = _params(settings).data
    requested = source or data.source
    synthetic_dir = out_dir / "synthetic"
    with _err().status(f"Ingesting from {requested} ...") as status:

        def progress(done: int, total: int | None) -> None:
            size = f" of {total / 1e6:.1f}" if total else ""
            status.update(f"Downloading: {done / 1e6:.1f}{size} MB")

        options = ingest_mod.SourceOptions(
            cache_dir=settings.cache_dir,
            timeout=data.download_timeout_s,
            uci_url=settings.uci_url,
            synthetic_rows=data.synthetic_rows,
            seed=data.seed,
            synthetic_dir=synthetic_dir,
            progress=progress,
        )
        try:
            ingested = ingest_mod.ingest(requested, options)
        except ingest_mod.IngestError as e:
            raise _fail(str(e)) from e
        except ingest_mod.DownloadError as e:
            archive = ingest_mod.uci_archive(settings.uci_url, settings.cache_dir)
            hint = (
                f" (without internet access, place the archive at {archive} or use"
                " --source synthetic)"
                if requested == "uci"
                else ""
            )
            raise _fail(f"download failed: {e}{hint}") from e
        read_from = [Path(f).resolve() for f in ingested.files]
        if not any(f.is_relative_to(synthetic_dir.resolve()) for f in read_from):
            # Generated files from an earlier run would otherwise linger next to real data.
            for name in UCI_FILES.values():
                (synthetic_dir / name).unlink(missing_ok=True)
            if synthetic_dir.is_dir() and not any(synthetic_dir.iterdir()):
                synthetic_dir.rmdir()
        wines, meta = ingest_mod.write_raw(ingested, out_dir, requested)
    if ingested.reason:
        _err().print(
            f"warning: source {requested!r} fell back to {ingested.source!r} because"
            f" {ingested.reason}",
            style="yellow",
            markup=False,
        )
    _say(
        f"Used source {ingested.source!r} ({ingested.kind}"
        + (f", {ingested.reason}" if ingested.reason else "")
        + f"): {len(ingested.frame)} rows -> {wines}, provenance -> {meta}"
    )


@app.command()
def generate(
    rows: Annotated[
        int | None, typer.Option(min=2, help="Wines to generate. Default: data.synthetic_rows.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed. Default: data.seed.")] = None,
    out_dir: Annotated[Path, typer.Option(help="Where the two CSV files go.")] = Path(
        "data/synthetic"
    ),
) -> None:
    """Generate realistic synthetic wines as the two UCI-layout CSV files.

    Writes OUT_DIR/winequality-red.csv and winequality-white.csv (ingest them with --source
    OUT_DIR). The same seed gives the same files.
    """
    from winequality.data import synthetic

    data = _params(ProjectSettings()).data
    n = rows if rows is not None else data.synthetic_rows
    s = seed if seed is not None else data.seed
    with _err().status(f"Generating {n} wines ..."):
        frame = synthetic.generate(n, s)
        paths = synthetic.write_uci_files(frame, out_dir)
    counts = frame["wine_type"].value_counts()
    for wine_type, path in paths.items():
        _say(f"{path}: {int(counts.get(wine_type, 0))} {wine_type} wines (seed {s})")


@app.command()
def validate(
    in_path: Annotated[
        Path, typer.Option("--in", help="Raw rows written by `data ingest`.")
    ] = Path("data/raw/wines.csv"),
    out: Annotated[Path, typer.Option(help="Validated rows (parquet).")] = Path(
        "data/validated/wines.parquet"
    ),
    report: Annotated[Path, typer.Option(help="JSON report of every problem.")] = Path(
        "reports/validation.json"
    ),
    quarantine: Annotated[
        Path | None,
        typer.Option(help="Rejected rows with a reason column. Default: next to --out."),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(help="fail (stop on any bad row) or quarantine. Default: validate.policy."),
    ] = None,
) -> None:
    """Check every row against the schema and write the valid rows.

    Checks columns, numbers, missing values, physical ranges, quality 0..10 (whole) and wine
    types. Policy fail stops on any bad row; quarantine sets bad rows aside with a reason. Every
    problem, with its source file and line, goes to the JSON report.
    """
    from winequality.data import validate as validate_mod

    chosen = policy or _params(ProjectSettings()).validate_.policy
    if chosen not in ("fail", "quarantine"):
        raise _fail(f"--policy must be fail or quarantine, got {chosen!r}")
    rule: validate_mod.Policy = "quarantine" if chosen == "quarantine" else "fail"
    quarantine_path = quarantine or out.parent / "quarantine.csv"
    with _err().status(f"Validating {in_path} ..."):
        try:
            raw = validate_mod.read_raw_table(in_path)
        except validate_mod.ValidationInputError as e:
            raise _fail(str(e)) from e
        result = validate_mod.validate_frame(raw)
        body = validate_mod.build_report(result, str(in_path), rule, len(raw))
        write_json(report, body, sort_keys=False)
    if not body["passed"]:
        for line in validate_mod.summary_lines(result):
            _err().print(line, markup=False)
        what = (
            "the table's columns are wrong"
            if result.table_problems
            else (f"{len(result.invalid)} of {len(raw)} rows are invalid")
        )
        raise _fail(f"validation failed: {what} (policy {rule}); full report: {report}")
    _write_parquet(result.valid, out)
    quarantine_path.parent.mkdir(parents=True, exist_ok=True)
    result.invalid.to_csv(quarantine_path, index=False, lineterminator="\n")
    if result.problems:
        for line in validate_mod.summary_lines(result, limit=5):
            _err().print(line, markup=False)
        _say(
            f"{len(result.invalid)} row(s) quarantined -> {quarantine_path} (reasons in {report})",
            style="yellow",
        )
    _say(f"{len(result.valid)} valid rows -> {out}")


@app.command()
def prepare(
    in_path: Annotated[Path, typer.Option("--in", help="Validated rows (parquet).")] = Path(
        "data/validated/wines.parquet"
    ),
    out_dir: Annotated[
        Path, typer.Option(help="Where train, test and reference parquet files go.")
    ] = Path("data/prepared"),
    metrics: Annotated[Path, typer.Option(help="Row counts (JSON).")] = Path("metrics/data.json"),
) -> None:
    """Deduplicate, split train/test and draw the drift reference sample.

    Exact duplicates are dropped before a seeded split stratified on quality; the reference
    sample is drawn from train (params: prepare.test_size, reference_size, seed).
    """
    import pandas as pd

    from winequality.data import prepare as prepare_mod

    params = _params(ProjectSettings()).prepare
    if not in_path.is_file():
        raise _fail(f"{in_path}: no such file (run `winequality data validate` first)")
    with _err().status("Preparing splits ..."):
        frame = pd.read_parquet(in_path)
        try:
            train, test, reference, figures = prepare_mod.prepare(
                frame, params.test_size, params.reference_size, params.seed
            )
        except ValueError as e:
            raise _fail(f"{in_path}: {e}") from e
        for name, part in (("train", train), ("test", test), ("reference", reference)):
            _write_parquet(part, out_dir / f"{name}.parquet")
        write_json(metrics, figures, sort_keys=False)
    _say(
        f"{figures['rows_in']} rows, {figures['duplicates_dropped']} duplicates dropped:"
        f" train {len(train)}, test {len(test)}, reference {len(reference)} -> {out_dir}"
    )
