"""The soak's bookkeeping, offline: error kinds, nginx's log across a rotation, per-operation figures, memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops_cli import jobs
from mlops_cli.soak import AccessLog, Sample, error_kind, op_table, size_label


class _Status(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}: no model loaded yet")
        self.status = status


@pytest.mark.parametrize(("exc", "kind"), [
    (_Status(503), "HTTP 503 (_Status)"),
    (RuntimeError("API request to /x failed with exception Max retries exceeded (Caused by "
                  "ResponseError('too many 500 error responses'))"), "HTTP 500 (RuntimeError)"),
    (ConnectionRefusedError("refused"), "ConnectionRefusedError"),
])
def test_error_kinds_name_the_status_when_there_is_one(exc: Exception, kind: str) -> None:
    assert error_kind(exc) == kind


def test_the_access_log_counts_statuses_from_now_on_across_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "nginx-access.log"
    line = '127.0.0.1 - admin [03/Dec/2026:23:40:43 +0000] "POST /serve/predict HTTP/1.1" {} 12 "-" "x"\n'
    log.write_text(line.format(500) * 3)  # before: not counted
    access = AccessLog(log)
    with log.open("a") as f:
        f.write(line.format(200) * 2 + line.format(502))
    assert access.statuses() == {200: 2, 502: 1}
    log.rename(tmp_path / "nginx-access.log.1")  # logrotate
    log.write_text(line.format(503) + line.format(200))
    assert access.statuses() == {200: 3, 502: 1, 503: 1}


def test_op_table_counts_failures_by_kind_and_times_successes_only() -> None:
    samples = [Sample("predict", i * 0.1, 0.010) for i in range(99)] + [Sample("predict", 5.0, 30.0, "HTTP 503 (X)")]
    row = op_table(samples, seconds=10.0)["predict"]
    assert (row["ok"], row["failed"], row["errors"]) == (99, 1, {"HTTP 503 (X)": 1})
    assert row["throughput_per_s"] == 9.9 and row["p50_ms"] == 10.0 and row["p99_ms"] == 10.0
    assert [size_label(n) for n in (999, 1_000, 100_000, 1_000_000)] == ["999B", "1KB", "100KB", "1MB"]


def test_memory_of_a_process_tree_counts_its_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "x = bytearray(64 * 2**20); import time; time.sleep(30)"])
    try:
        time.sleep(1.0)
        tree = jobs.process_tree(os.getpid())
        assert child.pid in tree
        alone, together = jobs.memory_bytes([os.getpid()]), jobs.memory_bytes(tree)
        assert together["anon"] - alone["anon"] > 60 * 2**20 and together["pss"] >= together["anon"]
    finally:
        child.kill()
        child.wait()
    assert jobs.memory_bytes([child.pid]) == {"pss": 0, "anon": 0}  # gone: counted as nothing, no error
