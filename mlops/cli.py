"""The one command line: ``mlops``. Commands stay thin; logic lives in typed functions."""

from __future__ import annotations

import typer

from mlops.log import configure_logging

app = typer.Typer(
    name="mlops",
    help="Self-hosted MLOps platform for PyTorch on Intel Xeon.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level.")) -> None:
    """Configure logging once, before any command runs."""
    configure_logging(verbose)


@app.command()
def status() -> None:
    """Show the health of each platform service started by `make up`."""
    from mlops.status import platform_status, render_status

    report = platform_status()
    typer.echo(render_status(report))
    if not report.healthy:
        raise typer.Exit(code=1)
