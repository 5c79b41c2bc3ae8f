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


def _options(types: tuple[type, ...]) -> list[tuple[tuple[str, ...], str]]:
    """(command path, longest option name) of every valued option annotated with one of ``types``."""
    found = []
    for path, command in COMMANDS:
        for param in command.params:
            descriptor = getattr(param, "type_descriptor", None)
            if (getattr(param, "param_type_name", "") == "option" and not getattr(param, "is_flag", False)
                    and descriptor is not None and descriptor.annotation in types):
                found.append((path, max(param.opts, key=len)))
    return found


def _numeric() -> list[tuple[tuple[str, ...], str]]:
    return _options((int, float))


def _names() -> list[tuple[tuple[str, ...], str]]:
    names = {"--model", "--model-name", "--experiment", "--alias", "--candidate", "--version"}
    return [(p, o) for p, o in _options((str,)) if o in names]


@pytest.mark.parametrize(("path", "option"), _numeric(), ids=[f"{' '.join(p)} {o}" for p, o in _numeric()])
def test_every_number_option_refuses_a_negative_value_in_one_line(path: tuple[str, ...], option: str) -> None:
    """No count, size, port or rate takes -1: exit 2 naming the option, before the command does anything."""
    result = CliRunner().invoke(app, [*path, option, "-1"])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output and "Traceback" not in result.output, result.output


@pytest.mark.parametrize(("path", "option"), _names(), ids=[f"{' '.join(p)} {o}" for p, o in _names()])
@pytest.mark.parametrize("value", ["", "   ", "bad\nname"], ids=["empty", "blank", "newline"])
def test_every_name_option_refuses_an_empty_or_unprintable_name(path: tuple[str, ...], option: str,
                                                               value: str) -> None:
    result = CliRunner().invoke(app, [*path, option, value])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output and "printable" in result.output, result.output


def test_the_option_checks_cover_every_command_that_takes_numbers_or_names() -> None:
    assert len(_numeric()) >= 30 and len(_names()) >= 12
    assert (("serve",), "--port") in _numeric() and (("promote",), "--candidate") in _names()


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"request_id,item_index,label\nr1,-3,good\n",
                                     b"no header at all", b"request_id,item_index,label\nr1,0,good,x\n"],
                         ids=["binary", "negative item", "no header", "extra field"])
def test_feedback_with_a_garbage_file_is_one_error_line_and_exit_2(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "labels.csv"
    f.write_bytes(content)
    result = CliRunner().invoke(app, ["feedback", "--file", str(f)])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "labels.csv" in result.output, result.output


@pytest.mark.parametrize("window", ["1w", "99999999999999999999d", "\u00b2h", "-5m", ""])
def test_drift_check_with_a_garbage_window_exits_2_naming_it(window: str) -> None:
    result = CliRunner().invoke(app, ["drift", "check", "--window", window])
    assert result.exit_code == 2, result.output
    assert "--window" in result.output and "Traceback" not in result.output, result.output


def test_bench_auth_where_nothing_is_provisioned_is_one_line_and_exit_2(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from mlops.settings import get_settings

    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path))
    for name in ("MLFLOW_TRACKING_URI", "MLOPS_CLIENT_ENV"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["bench", "auth"])
        assert result.exit_code == 2, result.output
        assert "platform.json not found" in result.output and "Traceback" not in result.output, result.output
        result = CliRunner().invoke(app, ["bench", "auth", "--no-tracking", "--no-serving"])
        assert result.exit_code == 2 and "nothing to measure" in result.output, result.output
    finally:
        get_settings.cache_clear()
