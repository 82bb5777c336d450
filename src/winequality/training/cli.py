"""Commands of the training stages: train, evaluate, register, promote, registry pull.

Thin wrappers: they read files and params, call the stage functions, write files. scikit-learn
and MLflow are imported inside the commands so ``winequality --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from winequality.commands import fail, project_params, settings_and_params, stage_errors, working
from winequality.files import write_json
from winequality.stages import PATHS

app = typer.Typer()
"""The top-level stage commands (train, evaluate, register, promote)."""

registry_app = typer.Typer(
    name="registry", help="Work with the MLflow model registry.", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")


@app.command("train")
def train(
    train_path: Annotated[
        Path, typer.Option("--train", help="Prepared training split.")
    ] = PATHS.train,
    out: Annotated[Path, typer.Option(help="Fitted pipeline (joblib).")] = PATHS.model,
    metrics: Annotated[
        Path, typer.Option(help="Cross-validation summary (JSON).")
    ] = PATHS.train_metrics,
    cv_results: Annotated[
        Path, typer.Option(help="One row per searched candidate (CSV).")
    ] = PATHS.cv_results,
    n_jobs: Annotated[int, typer.Option(help="Parallel cross-validation fits.")] = 2,
) -> None:
    """Tune the model family of params.yaml (train.*) by cross-validation and fit the best."""
    with stage_errors():
        from winequality.training.dataset import read_split
        from winequality.training.train import save_model, train_model

        params = project_params()
        with working(f"Tuning {params.train.family} by {params.train.cv_folds}-fold CV ..."):
            result = train_model(read_split(train_path), params.train, n_jobs=n_jobs)
        save_model(result.model, out)
        summary = result.summary(params.train)
        write_json(metrics, summary)
        cv_results.parent.mkdir(parents=True, exist_ok=True)
        result.cv_results.to_csv(cv_results, index=False)
    typer.echo(
        f"{result.family} {summary['best_params']}: CV RMSE {result.cv_rmse_mean:.4f} "
        f"± {result.cv_rmse_std:.4f} over {len(result.cv_results)} candidate(s) -> {out}"
    )


@app.command("evaluate")
def evaluate(
    *,
    model: Annotated[Path, typer.Option(help="Fitted pipeline.")] = PATHS.model,
    test: Annotated[Path, typer.Option(help="Prepared test split.")] = PATHS.test,
    train_path: Annotated[
        Path, typer.Option("--train", help="Training split (for the mean-predictor baseline).")
    ] = PATHS.train,
    metrics: Annotated[Path, typer.Option(help="Test metrics (JSON).")] = PATHS.eval_metrics,
    plots: Annotated[
        Path, typer.Option(help="Per-row predictions for `dvc plots` (CSV).")
    ] = PATHS.predictions,
    plot_dir: Annotated[
        Path, typer.Option(help="Folder of the prediction plots (PNG) for `dvc plots`.")
    ] = PATHS.plots,
) -> None:
    """Score the model on the test split: RMSE, MAE, R², share within ±0.5 and ±1.0."""
    with stage_errors():
        from winequality.training.dataset import read_split
        from winequality.training.evaluate import evaluation_report, write_prediction_plots
        from winequality.training.train import load_model

        train_frame = read_split(train_path) if train_path.is_file() else None
        out, scores, table = evaluation_report(load_model(model), read_split(test), train_frame)
        write_json(metrics, out)
        plots.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(plots, index=False)
        write_prediction_plots(table, plot_dir)
    typer.echo(
        f"test RMSE {scores['rmse']:.4f}, MAE {scores['mae']:.4f}, R² {scores['r2']:.3f}, "
        f"within ±0.5 {scores['within_0_5']:.1%}, within ±1.0 {scores['within_1_0']:.1%}"
    )


@app.command("register")
def register_model(
    *,
    model: Annotated[Path, typer.Option(help="Fitted pipeline.")] = PATHS.model,
    onnx: Annotated[Path, typer.Option(help="Parity-checked ONNX export.")] = PATHS.onnx,
    train_path: Annotated[Path, typer.Option("--train", help="Training split.")] = PATHS.train,
    test: Annotated[Path, typer.Option(help="Test split.")] = PATHS.test,
    reference: Annotated[Path, typer.Option(help="Drift reference sample.")] = PATHS.reference,
    train_metrics: Annotated[
        Path, typer.Option(help="Output of `train --metrics`.")
    ] = PATHS.train_metrics,
    eval_metrics: Annotated[
        Path, typer.Option(help="Output of `evaluate --metrics`.")
    ] = PATHS.eval_metrics,
    export_metrics: Annotated[
        Path, typer.Option(help="Output of `export onnx --metrics`.")
    ] = PATHS.export_metrics,
    cv_results: Annotated[
        Path, typer.Option(help="Output of `train --cv-results`.")
    ] = PATHS.cv_results,
    predictions: Annotated[
        Path, typer.Option(help="Output of `evaluate --plots`.")
    ] = PATHS.predictions,
    source: Annotated[
        Path, typer.Option(help="Provenance written by `data ingest`.")
    ] = PATHS.source,
    alias: Annotated[str, typer.Option(help="Alias given to the new version.")] = "challenger",
    out: Annotated[
        Path, typer.Option(help="Where to write {name, version, run_id}.")
    ] = PATHS.registered,
    metrics: Annotated[
        Path | None, typer.Option(help="The run's headline metrics for `dvc metrics` (JSON).")
    ] = None,
) -> None:
    """Log one MLflow run (params, metrics, data, models, plots) and register the model."""
    with stage_errors():
        from winequality.settings import TrackingSettings
        from winequality.training.registry import headline_metrics
        from winequality.training.registry import register as do_register

        settings, params = settings_and_params(TrackingSettings)
        paths = replace(
            PATHS,
            model=model,
            onnx=onnx,
            train=train_path,
            test=test,
            reference=reference,
            train_metrics=train_metrics,
            eval_metrics=eval_metrics,
            export_metrics=export_metrics,
            cv_results=cv_results,
            predictions=predictions,
            source=source,
        )
        with working(f"Logging the run to MLflow ({settings.tracking_uri()}) ..."):
            registered = do_register(paths, settings, params, alias=alias)
        write_json(out, registered.as_dict())
        if metrics is not None:
            write_json(metrics, {"version": registered.version} | headline_metrics(paths))
    typer.echo(
        f"registered {registered.name} v{registered.version} (run {registered.run_id}) "
        f"as {alias!r} in {settings.tracking_uri()}"
    )


@app.command("promote")
def promote(
    metric: Annotated[
        str | None, typer.Option(help="rmse or mae (default: promote.metric in params.yaml).")
    ] = None,
    test: Annotated[
        Path, typer.Option(help="Test split both models are re-scored on.")
    ] = PATHS.test,
    train_path: Annotated[
        Path, typer.Option("--train", help="Training split (mean-predictor baseline).")
    ] = PATHS.train,
    out: Annotated[Path, typer.Option(help="Decision report (JSON).")] = PATHS.promotion,
    strict: Annotated[
        bool, typer.Option(help="Exit 1 when the challenger is refused (default: exit 0).")
    ] = False,
) -> None:
    """Make the challenger the champion if it beats the champion and the mean predictor.

    Both models are re-scored on the current test split. A refusal is a normal outcome: it is
    recorded on the model version (promotion.* tags) and in the report, the old champion stays,
    and the command exits 0 unless --strict is given.
    """
    with stage_errors():
        from winequality.settings import TrackingSettings
        from winequality.training.registry import promote as do_promote

        settings, params = settings_and_params(TrackingSettings)
        with working("Re-scoring challenger and champion on the test split ..."):
            decision = do_promote(settings, params.promote, test, train_path, metric)
        write_json(out, decision.as_dict())
    colour = {"promoted": typer.colors.GREEN, "refused": typer.colors.YELLOW}.get(decision.outcome)
    typer.secho(f"{decision.outcome}: {decision.reason}", fg=colour)
    if strict and decision.outcome == "refused":
        raise typer.Exit(1)


@registry_app.command("pull")
def pull(
    dest: Annotated[
        Path | None, typer.Option(help="Bundle directory (default: WINEQ_MODEL_DIR).")
    ] = None,
    alias: Annotated[str | None, typer.Option(help="Registry alias, e.g. champion.")] = None,
    run_id: Annotated[str | None, typer.Option(help="An MLflow run id instead of an alias.")] = (
        None
    ),
    link: Annotated[
        Path | None,
        typer.Option(
            help="A serving pointer: pull into a new folder bundles/<alias>-<time> beside it, "
            "then point this symlink there (as `winequality up` and retraining do)."
        ),
    ] = None,
) -> None:
    """Download a model (ONNX, metadata, reference sample) into a serving bundle directory."""
    if (alias is None) == (run_id is None):
        raise fail("give exactly one of --alias or --run-id")
    if dest is not None and link is not None:
        raise fail("give --dest or --link, not both")
    with stage_errors():
        from winequality.artifacts import new_bundle_dir, point_model_dir
        from winequality.settings import ServingSettings, TrackingSettings
        from winequality.training.registry import pull as do_pull

        settings = TrackingSettings()
        # The app's bundle folder: what ``winequality serve`` then loads.
        target = (
            new_bundle_dir(link, alias or f"run-{run_id}")
            if link is not None
            else dest or ServingSettings().model_dir
        )
        with working(f"Downloading {alias or run_id} from {settings.tracking_uri()} ..."):
            metadata = do_pull(settings, target, alias=alias, run_id=run_id)
        if link is not None:
            point_model_dir(link, target)
    pointer = f" ({link} points there)" if link is not None else ""
    typer.echo(
        f"pulled {metadata.name} v{metadata.version} (run {metadata.run_id}) -> {target}{pointer}"
    )
