"""The command line as a whole: every command has help, and the layers it sits on point down."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mlops_cli.cli import app

REPO = Path(__file__).resolve().parents[1]


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:  # noqa: ANN401
    """Every command under a (typer-vendored) click group, depth first."""
    found = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        found.append((path, command))
        if hasattr(command, "commands"):  # a group (typer may bring its own click classes)
            found.extend(_commands(command, path))
    return found


COMMANDS = _commands(typer.main.get_command(app))  # type: ignore[arg-type]


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"train", "promote", "serve", "drift check", "bench serve", "retrain-loop", "demo"} <= names
    assert len(COMMANDS) >= 18


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    command = dict(COMMANDS)[path]
    assert (command.help or "").strip(), f"`mlops {' '.join(path)}` has no help text"
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option":
            assert (param.help or "").strip(), f"`mlops {' '.join(path)}` option {param.opts} has no help"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0 and len(result.output) > 100, result.output


def test_layers_point_down() -> None:
    """The import-linter contracts in pyproject.toml: no import goes back up a layer, no circles."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is not installed in this environment (pyproject's dev extra)"
    out = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout
