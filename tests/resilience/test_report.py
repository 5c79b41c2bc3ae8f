"""README's resilience table is the generated one (offline; runs in the main test group)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parents[1] / "README.md"


def _report_module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("resilience_report", HERE / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_is_generated_from_the_kept_run() -> None:
    report = _report_module()
    kept = json.loads((HERE / "last-run.json").read_text())
    readme = README.read_text()
    assert report.replace(readme, kept) == readme, "README's resilience table is stale: run `make resilience-report`"
    assert len(kept["faults"]) >= 10 and all(row["lost_writes"] == 0 for row in kept["faults"])


def test_the_table_names_each_fault_and_its_failures() -> None:
    report = _report_module()
    row = {"fault": "kill -9 nginx", "recovery_s": 2.5, "operations": 100, "operations_after_fault": 40,
           "failed": [{"operation": "predict", "error": "ConnectError", "count": 3}], "nginx_5xx": {"502": 2},
           "acknowledged_writes": 50, "lost_writes": 0}
    table = report.table({"host": {"cpu": "x", "cpus": 2}, "load": {"tracking_clients": 3, "predict_clients": 2},
                          "faults": [row, {**row, "recovery_s": None, "failed": [], "nginx_5xx": {}}]})
    assert "| kill -9 nginx | 2.5 s | 100 (40) | 3 predict: ConnectError | 2 × 502 | 50 | 0 |" in table
    assert "| n/a (stays full) |" in table and "| none | none |" in table
