"""`mlops` commands for serving (serve, predict, bench serve)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this part's commands to the `mlops` app (imports stay inside commands: fast CLI start)."""

    @app.command()
    def serve(
        host: str | None = typer.Option(None, "--host", help="Bind address (default MLOPS_SERVE_HOST, loopback)."),
        port: int | None = typer.Option(None, "--port", help="Bind port (default MLOPS_SERVE_PORT)."),
        workers: int | None = typer.Option(None, "--workers", help="uvicorn worker processes under gunicorn."),
        model: str | None = typer.Option(None, "--model", help="Registered model (default MLOPS_MODEL_NAME)."),
        alias: str | None = typer.Option(None, "--alias", help="Alias to serve and follow (default champion)."),
    ) -> None:
        """Serve models:/NAME@champion (gunicorn + uvicorn workers) with hot swap on promotion."""
        from serving.server import run_server

        run_server(host=host, port=port, workers=workers, model=model, alias=alias)

    @app.command()
    def predict(
        image: list[Path] = typer.Option(..., "--image", exists=True, dir_okay=False,
                                         help="Image file (PNG/JPEG/BMP); repeat for a batch."),
        url: str | None = typer.Option(None, "--url", help="Serving base URL (default: the platform's /serve)."),
    ) -> None:
        """Ask the served champion about one or more image files (prints JSON)."""
        import json
        import os

        from serving.client import ServingError
        from serving.client import predict as call

        if url:
            os.environ["MLOPS_SERVE_URL"] = url
            from mlops.settings import get_settings

            get_settings.cache_clear()
        try:
            result = call(image)
        except (ServingError, OSError) as exc:
            typer.echo(f"Prediction failed: {exc}", err=True)
            raise typer.Exit(code=1) from exc
        typer.echo(json.dumps(result, indent=2))

    @bench_app.command("serve")
    def bench_serve(
        requests: int = typer.Option(400, "--requests", help="Requests per server and variant (fixed count)."),
        concurrency: int = typer.Option(8, "--concurrency", help="Concurrent clients."),
        variants: str = typer.Option("int8,compiled,fp32", "--variants", help="Serving variants to measure."),
        model: str | None = typer.Option(None, "--model", help="Registered model (default MLOPS_MODEL_NAME)."),
        mlflow_serve: bool = typer.Option(True, "--mlflow-serve/--no-mlflow-serve",
                                          help="Also measure `mlflow models serve` on the same version."),
        json_out: Path | None = typer.Option(None, "--json", help="Write results and summary here."),
    ) -> None:
        """Throughput and p50/p99 latency of our endpoint (through nginx) per variant vs `mlflow models serve`."""
        import json

        from serving.bench import BenchServeConfig, render
        from serving.bench import bench_serve as run_bench

        cfg = BenchServeConfig(requests=requests, concurrency=concurrency,
                               variants=[v.strip() for v in variants.split(",") if v.strip()], model=model,
                               mlflow_serve=mlflow_serve)
        result = run_bench(cfg)
        typer.echo(render(result))
        if json_out:
            json_out.write_text(json.dumps(result, indent=2))
            typer.echo(f"wrote {json_out}")
