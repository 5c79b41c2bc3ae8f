"""The one command line: ``mlops``. Commands stay thin; logic lives in typed functions."""

from __future__ import annotations

import json
from pathlib import Path

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


@app.command()
def smoke() -> None:
    """Log a small run with a model through nginx and print where to see it in the UI."""
    from mlops.smoke import run_smoke

    result = run_smoke()
    typer.echo(f"Logged run {result.run_id} in experiment '{result.experiment_name}'.")
    typer.echo(f"See it in the UI: {result.run_url}")


@app.command()
def inventory(
    tf_output: Path = typer.Option(
        ..., "--tf-output", exists=True, dir_okay=False, help="JSON from `terraform output -json`."
    ),
    dest: Path = typer.Option(Path("ansible/inventories/aws"), "--dest", help="Inventory folder to write."),
) -> None:
    """Turn Terraform outputs into the Ansible inventory for the AWS hosts (no secret values)."""
    from mlops.inventory import write_inventory

    for path in write_inventory(json.loads(tf_output.read_text()), dest):
        typer.echo(f"wrote {path}")
