"""`mlops` commands for serving (serve, predict, bench serve)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this part's commands to the `mlops` app (imports stay inside commands: fast CLI start)."""
