"""ansible/library/mlops_files.py, the platform's module that writes several files in one module run
(the services' and timers' definitions): run through `ansible` on this machine, as the roles run it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / ".venv/bin/ansible"

pytestmark = pytest.mark.skipif(not ANSIBLE.exists(), reason="needs .venv (make venv)")


def _run(files: list[dict[str, str]], *flags: str, **defaults: str) -> dict:
    """One module run on localhost: its result (JSON callback)."""
    result = subprocess.run(
        [str(ANSIBLE), "localhost", "-c", "local", "-e", "ansible_python_interpreter=/usr/bin/python3",
         "-m", "mlops_files", "-a", json.dumps({"files": files, **defaults}), *flags],
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg"), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
             "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"},
        capture_output=True, text=True, timeout=120, check=False)
    return json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_writes_only_what_differs_in_one_run(tmp_path: Path) -> None:
    a, b = tmp_path / "a.conf", tmp_path / "b.sh"
    files = [{"path": str(a), "content": "one\n", "mode": "0640"},
             {"path": str(b), "content": "#!/bin/sh\necho two\n", "mode": "0755", "group": "root"}]

    # Check mode: reports both, writes nothing.
    dry = _run(files, "--check")
    assert dry["changed"] and dry["changed_paths"] == [str(a), str(b)], dry
    assert not a.exists() and not b.exists()

    first = _run(files, "--diff")
    assert first["changed_paths"] == [str(a), str(b)], first
    assert a.read_text() == "one\n" and stat.S_IMODE(a.stat().st_mode) == 0o640
    assert b.read_text() == "#!/bin/sh\necho two\n" and stat.S_IMODE(b.stat().st_mode) == 0o755
    assert [d["after"] for d in first["diff"]] == ["one\n", "#!/bin/sh\necho two\n"]

    # Nothing differs: no change, and neither file is rewritten.
    inode = a.stat().st_ino
    again = _run(files)
    assert not again["changed"] and again["changed_paths"] == [], again
    assert a.stat().st_ino == inode

    # Only what differs: b's content (replaced atomically: a new inode), a's mode.
    b.write_text("edited by hand\n")
    a.chmod(0o644)
    fixed = _run(files)
    assert fixed["changed_paths"] == [str(a), str(b)], fixed
    assert stat.S_IMODE(a.stat().st_mode) == 0o640 and a.read_text() == "one\n"
    assert b.read_text() == "#!/bin/sh\necho two\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary file was left"


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "x.conf"
    result = _run([{"path": str(target), "content": "x\n", "mode": "0644"}])
    assert result.get("failed") and f"the directory of {target} does not exist" in result["msg"], result
    assert not target.parent.exists()


def test_creates_directories_and_their_parents_with_their_mode(tmp_path: Path) -> None:
    top, leaf = tmp_path / "a", tmp_path / "a" / "b"
    # The module's state and mode, unless an entry says otherwise.
    entries = [{"path": str(leaf)},
               {"path": str(tmp_path / "c.conf"), "state": "file", "content": "c\n", "mode": "0644"}]
    first = _run(entries, state="directory", mode="0750")
    assert first["changed_paths"] == [str(leaf), str(tmp_path / "c.conf")], first
    assert stat.S_IMODE(top.stat().st_mode) == 0o750 and stat.S_IMODE(leaf.stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "c.conf").stat().st_mode) == 0o644
    assert not _run(entries, state="directory", mode="0750")["changed"]
    leaf.chmod(0o755)
    assert _run(entries, state="directory", mode="0750")["changed_paths"] == [str(leaf)]
    assert stat.S_IMODE(leaf.stat().st_mode) == 0o750
    assert "no mode for" in _run([{"path": str(leaf)}], state="directory")["msg"]
    # A file where a directory should be: a clear error, nothing changed.
    (tmp_path / "d").write_text("x")
    refused = _run([{"path": str(tmp_path / "d"), "state": "directory", "mode": "0755"}])
    assert refused.get("failed") and "exists and is not a directory" in refused["msg"], refused
