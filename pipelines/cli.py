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
