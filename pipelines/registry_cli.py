"""`mlops` commands for the model registry workflow (promote, rollback)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this part's commands to the `mlops` app (imports stay inside commands: fast CLI start)."""

    @app.command()
    def promote(
        model: str | None = typer.Option(None, "--model", help="Registered model name (default: MLOPS_MODEL_NAME)."),
        candidate: str = typer.Option("latest", "--candidate", help="Version number, 'latest' or an alias."),
    ) -> None:
        """Gate a candidate version against the champion; make it champion if it wins (exit 1 if refused)."""
        from mlops.settings import get_settings
        from pipelines.promote import PromotionError, RegistryError
        from pipelines.promote import promote as run_promote

        name = model or get_settings().model_name
        try:
            decision = run_promote(name, candidate)
        except (PromotionError, RegistryError) as exc:
            typer.echo(f"Promotion failed: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        typer.echo(decision.reason)
        if decision.evaluation_run_id:
            typer.echo(f"Evaluation run: {decision.evaluation_run_id}")
        if not decision.promoted:
            raise typer.Exit(code=1)

    @app.command()
    def rollback(
        model: str | None = typer.Option(None, "--model", help="Registered model name (default: MLOPS_MODEL_NAME)."),
    ) -> None:
        """Make the previous champion the champion again (one step, recorded in MLflow)."""
        from mlops.settings import get_settings
        from pipelines.promote import PromotionError, RegistryError
        from pipelines.promote import rollback as run_rollback

        name = model or get_settings().model_name
        try:
            result = run_rollback(name)
        except (PromotionError, RegistryError) as exc:
            typer.echo(f"Rollback failed: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        typer.echo(result.reason)
        typer.echo(f"Recorded in run: {result.run_id}")
