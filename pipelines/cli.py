"""`mlops` commands for drift and retraining (drift check, feedback, retrain-loop, bench drift)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this part's commands to the `mlops` app (imports stay inside commands: fast CLI start)."""

    @bench_app.command("drift")
    def bench_drift(
        rows: int = typer.Option(1_000_000, help="Rows per frame (reference and current)."),
        columns: int = typer.Option(20, help="Numeric columns (3 shifted by 0.1 sigma, 2 scaled by 1.2)."),
        seed: int = typer.Option(0, help="Random seed of the frames."),
        evidently_python: Path = typer.Option(
            Path(".venv-evidently/bin/python"), "--evidently-python",
            help="Python of the Evidently environment (`make evidently-venv`).",
        ),
        evidently: bool = typer.Option(True, "--evidently/--no-evidently", help="Also run Evidently's default."),
        json_out: Path | None = typer.Option(None, "--json", help="Write the results and summary here."),
    ) -> None:
        """Univariate drift on ROWS x COLUMNS: our KS+PSI against Evidently's DataDriftPreset, same data."""
        from pipelines.bench_drift import BenchDriftConfig, render
        from pipelines.bench_drift import bench_drift as run_bench

        cfg = BenchDriftConfig(rows=rows, columns=columns, seed=seed,
                               evidently_python=evidently_python if evidently else None)
        try:
            result = run_bench(cfg)
        except (FileNotFoundError, RuntimeError, ValueError) as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(code=1) from exc
        if json_out:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(result, indent=2))
        typer.echo(render(result))

    drift_app = typer.Typer(help="Drift of serving inputs and predictions against the champion's profile.",
                            no_args_is_help=True)
    app.add_typer(drift_app, name="drift")

    @drift_app.command("check")
    def drift_check(
        model: str | None = typer.Option(None, "--model", help="Registered model (default: MLOPS_MODEL_NAME)."),
        window: str | None = typer.Option(None, "--window", help="Window length, e.g. 30s, 15m, 1h (default: "
                                          "MLOPS_DRIFT_WINDOW); the latest complete aligned window is checked."),
        version: str | None = typer.Option(None, "--version", help="Compare with this version (default: champion)."),
        force: bool = typer.Option(False, "--force", help="Check again even if this window already has a drift run."),
    ) -> None:
        """Compare the latest window of serving traffic with the reference profile; log a drift run to MLflow.

        Exits 0 with no drift, 3 when drift was found, 4 when the window was skipped (reason printed), 1 on error.
        """
        from mlops.monitoring import MonitoringNotConfigured
        from mlops.settings import get_settings
        from pipelines.drift import DriftDataError, latest_complete_window, parse_duration, run_drift_check

        s = get_settings()
        try:
            length = parse_duration(window or s.drift_window)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--window") from exc
        try:
            result = run_drift_check(model or s.model_name, latest_complete_window(length), version, force=force)
        except (DriftDataError, MonitoringNotConfigured) as exc:
            typer.echo(f"Drift check failed: {exc}", err=True)
            raise typer.Exit(code=1) from exc
        typer.echo(f"{result.model_name} v{result.model_version}, window {result.window.id}: {result.verdict} "
                   f"({result.reason})" + (" [recorded earlier]" if result.reused else ""))
        typer.echo(f"Drift run {result.run_id} in experiment '{s.drift_experiment}' (plots under plots/).")
        raise typer.Exit(code={"drifted": 3, "skipped": 4}.get(result.verdict, 0))

    @app.command("feedback")
    def feedback(
        request_id: str | None = typer.Option(None, "--request-id", help="The prediction request to label."),
        item: int = typer.Option(0, "--item", min=0, help="Image index within the request."),
        label: str | None = typer.Option(None, "--label", help="True class: good | defective (or 0 | 1)."),
        csv_file: Path | None = typer.Option(None, "--file", exists=True, dir_okay=False,
                                             help="CSV with header request_id,item_index,label."),
    ) -> None:
        """Record labelled feedback on served predictions (feeds the accuracy trigger of the retrain loop)."""
        from mlops import monitoring
        from pipelines.feedback import FeedbackError, Label, parse_label, read_labels, record_feedback

        try:
            if csv_file is not None:
                labels = read_labels(csv_file)
            elif request_id and label is not None:
                labels = [Label(request_id, item, parse_label(label))]
            else:
                raise FeedbackError("give --request-id and --label, or --file")
        except FeedbackError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(code=2) from exc
        conn = monitoring.connect("mlops-feedback")
        try:
            monitoring.ensure_schema(conn)
            typer.echo(f"Recorded {record_feedback(conn, labels)} label(s).")
        finally:
            conn.close()

    @app.command("retrain-loop")
    def retrain_loop(
        model: str | None = typer.Option(None, "--model", help="Registered model (default: MLOPS_MODEL_NAME)."),
        window: str | None = typer.Option(None, "--window", help="Window length (default: MLOPS_DRIFT_WINDOW)."),
    ) -> None:
        """Run one scheduled tick: check the latest window, retrain and promote if the trigger fires, exit."""
        from mlops.monitoring import MonitoringNotConfigured
        from pipelines.drift import DriftDataError
        from pipelines.retrain import tick

        try:
            result = tick(model, window)
        except (DriftDataError, MonitoringNotConfigured, ValueError) as exc:
            typer.echo(f"Retrain tick failed: {exc}", err=True)
            raise typer.Exit(code=1) from exc
        typer.echo(f"[{result.action}] window {result.window or '-'}: {result.reason}")
        if result.training_run_id:
            typer.echo(f"Drift run {result.drift_run_id} -> training run {result.training_run_id} -> version "
                       f"{result.candidate_version} -> {'champion' if result.promoted else 'not promoted'}")

    @app.command("demo")
    def demo(
        model: str | None = typer.Option(None, "--model", help="Registered model (default: MLOPS_MODEL_NAME)."),
        window: str = typer.Option("30s", "--window", help="Drift window length for the demo (short)."),
        images_per_window: int = typer.Option(2000, "--images-per-window", min=1,
                                              help="At most this many images per window."),
        clients: int = typer.Option(4, "--clients", min=1, help="Concurrent clients sending the traffic."),
        train_first: bool = typer.Option(True, "--train/--no-train", help="Train and promote a first model."),
    ) -> None:
        """The whole loop on the running platform: train, promote, serve, drift, retrain, new champion."""
        from mlops.settings import get_settings
        from pipelines.demo import DemoConfig, run_demo
        from pipelines.drift import parse_duration

        try:
            parse_duration(window)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--window") from exc
        config = DemoConfig(model_name=model or get_settings().model_name, window=window,
                            max_images_per_window=images_per_window, clients=clients, train=train_first)
        try:
            run_demo(config, typer.echo)
        except (RuntimeError, TimeoutError) as exc:
            typer.echo(f"Demo stopped: {exc}", err=True)
            raise typer.Exit(code=1) from exc
