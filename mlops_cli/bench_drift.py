"""`mlops bench drift`: our univariate drift detection against Evidently's default DataDriftPreset.

Both sides get the same two frames (``reference`` and ``current``, 1,000,000 rows x 20 float64
columns by default; columns c00-c02 mean-shifted by 0.1 sigma, c03-c04 scaled by 1.2, the other 15
unchanged), written once to ``.npy`` files. Each side runs in its own subprocess, so wall time and
peak RSS (``wait4`` rusage of that child) are measured the same way for both:

- ours: :mod:`pipelines.drift` in this environment: build the reference profile (quantile bin
  edges, the bounded sorted KS sample) from the reference frame, then KS + PSI on every column;
- Evidently: its own environment (``make evidently-venv``; Evidently 0.7 needs ``pandas<3``):
  ``Report([DataDriftPreset()]).run(current, reference)``, the frames turned into DataFrames.

``detect_s`` is the time of the detection itself inside each worker (for ours: profile + tests;
for Evidently: DataFrame construction + report); ``wall_s`` adds interpreter start and loading the
frames. Speedup is the ratio of ``detect_s``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SHIFTED = ("c00", "c01", "c02")
SCALED = ("c03", "c04")

_EVIDENTLY_WORKER = r"""
import json, sys, time
import numpy as np
t0 = time.perf_counter()
ref_a = np.load(sys.argv[1], mmap_mode="r"); cur_a = np.load(sys.argv[2], mmap_mode="r")
cols = json.loads(sys.argv[3])
import evidently, pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
t1 = time.perf_counter()
ref = pd.DataFrame(np.asarray(ref_a), columns=cols); cur = pd.DataFrame(np.asarray(cur_a), columns=cols)
snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
t2 = time.perf_counter()
columns = {}
for metric in snapshot.dict()["metrics"]:
    cfg = metric.get("config", {})
    if cfg.get("type", "").endswith("ValueDrift"):
        method, threshold, value = cfg.get("method", ""), cfg.get("threshold"), float(metric["value"])
        pvalue_based = "p_value" in method.lower() or "test" in method.lower()
        drifted = value < threshold if pvalue_based else value >= threshold
        columns[cfg["column"]] = {"method": method, "threshold": threshold, "value": value, "drifted": drifted}
print(json.dumps({"version": evidently.__version__, "pandas": pd.__version__, "import_s": t1 - t0,
                  "detect_s": t2 - t1, "columns": columns}))
"""


@dataclass
class BenchDriftConfig:
    rows: int = 1_000_000
    columns: int = 20
    seed: int = 0
    evidently_python: Path | None = Path(".venv-evidently/bin/python")


def make_frames(rows: int, columns: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reference and current frames: columns of different location/scale, 3 shifted, 2 scaled."""
    if columns < len(SHIFTED) + len(SCALED) + 1:
        raise ValueError(f"need at least {len(SHIFTED) + len(SCALED) + 1} columns, got {columns}")
    rng = np.random.default_rng(seed)
    names = [f"c{i:02d}" for i in range(columns)]
    loc = rng.uniform(-5, 5, columns)
    scale = rng.uniform(0.5, 3, columns)
    reference = rng.standard_normal((rows, columns)) * scale + loc
    current = rng.standard_normal((rows, columns)) * scale + loc
    for i, name in enumerate(names):
        if name in SHIFTED:
            current[:, i] += 0.1 * scale[i]
        elif name in SCALED:
            current[:, i] = (current[:, i] - loc[i]) * 1.2 + loc[i]
    return reference, current, names


def ours_worker(ref_path: str, cur_path: str, names: list[str]) -> dict[str, Any]:
    """The detection as `mlops drift check` does it: profile the reference, then KS + PSI per column."""
    from mlops.settings import get_settings
    from pipelines.drift.check import Thresholds, compare_frames
    from training.profile import feature_profile

    s = get_settings()
    t0 = time.perf_counter()
    ref = np.load(ref_path, mmap_mode="r")
    cur = np.load(cur_path, mmap_mode="r")
    t1 = time.perf_counter()
    profile = {
        name: feature_profile(np.ascontiguousarray(ref[:, i]), s.drift_psi_bins, s.drift_profile_sample, seed=i)
        for i, name in enumerate(names)
    }
    t2 = time.perf_counter()
    results = compare_frames(profile, {n: np.ascontiguousarray(cur[:, i]) for i, n in enumerate(names)},
                             Thresholds.from_settings())
    t3 = time.perf_counter()
    return {
        "load_s": t1 - t0, "profile_s": t2 - t1, "compare_s": t3 - t2, "detect_s": t3 - t1,
        "profile_sample": s.drift_profile_sample,
        "columns": {r.name: {"ks": r.statistic, "pvalue": r.pvalue, "psi": r.psi, "drifted": r.drifted}
                    for r in results},
    }


def run_child(cmd: list[str], label: str) -> tuple[dict[str, Any], float, float]:
    """Run a worker; return its JSON output, wall seconds and peak RSS (MiB) of that child alone."""
    log.info("Running %s ...", label)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{label} failed with exit code {proc.returncode}:\n{stderr[-3000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{label} printed no result:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    peak_mib = usage.ru_maxrss / 1024  # Linux: KiB
    log.info("%s done: %.1f s wall, %.0f MiB peak RSS", label, wall, peak_mib)
    return json.loads(lines[-1]), wall, peak_mib


def _score(columns: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    truth = set(SHIFTED) | set(SCALED)
    flagged = sorted(c for c, r in columns.items() if r["drifted"])
    return [c for c in flagged if c in truth], [c for c in flagged if c not in truth]


def bench_drift(config: BenchDriftConfig) -> dict[str, Any]:
    """Run both sides on the same frames; return per-side results and the summary."""
    reference, current, names = make_frames(config.rows, config.columns, config.seed)
    result: dict[str, Any] = {"config": {"rows": config.rows, "columns": config.columns, "seed": config.seed,
                                         "shifted_0.1_sigma": list(SHIFTED), "scaled_1.2": list(SCALED)}}
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        ref_path, cur_path = str(Path(tmp) / "reference.npy"), str(Path(tmp) / "current.npy")
        np.save(ref_path, reference)
        np.save(cur_path, current)
        del reference, current
        cols = json.dumps(names)
        ours, wall, peak = run_child([sys.executable, "-m", "mlops_cli.bench_drift", ref_path, cur_path, cols],
                                     "ours (numpy/scipy KS + PSI)")
        ours.update(wall_s=wall, peak_rss_mib=peak)
        ours["detected"], ours["false_alarms"] = _score(ours["columns"])
        result["ours"] = ours
        if config.evidently_python is not None:
            if not Path(config.evidently_python).exists():
                raise FileNotFoundError(
                    f"{config.evidently_python} does not exist: run `make evidently-venv` (or pass --no-evidently)")
            ev, wall, peak = run_child([str(config.evidently_python), "-c", _EVIDENTLY_WORKER, ref_path, cur_path,
                                        cols], f"Evidently DataDriftPreset ({config.evidently_python})")
            ev.update(wall_s=wall, peak_rss_mib=peak)
            ev["detected"], ev["false_alarms"] = _score(ev["columns"])
            result["evidently"] = ev
    summary: dict[str, Any] = {
        "ours_detect_s": ours["detect_s"], "ours_wall_s": ours["wall_s"], "ours_peak_rss_mib": ours["peak_rss_mib"],
        "detected": len(ours["detected"]), "drifted_columns": len(SHIFTED) + len(SCALED),
        "false_alarms": len(ours["false_alarms"]),
    }
    if "evidently" in result:
        ev = result["evidently"]
        summary.update(
            evidently_version=ev["version"], evidently_detect_s=ev["detect_s"], evidently_wall_s=ev["wall_s"],
            evidently_peak_rss_mib=ev["peak_rss_mib"], evidently_detected=len(ev["detected"]),
            evidently_false_alarms=len(ev["false_alarms"]),
            speedup_vs_evidently=ev["detect_s"] / ours["detect_s"],
            speedup_wall_vs_evidently=ev["wall_s"] / ours["wall_s"],
        )
    result["summary"] = summary
    return result


def render(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [
        f"{'':28}{'ours (KS+PSI)':>16}{'Evidently':>16}",
        f"{'detection time (s)':28}{s['ours_detect_s']:>16.2f}{s.get('evidently_detect_s', float('nan')):>16.2f}",
        f"{'wall time incl. start (s)':28}{s['ours_wall_s']:>16.2f}{s.get('evidently_wall_s', float('nan')):>16.2f}",
        f"{'peak RSS (MiB)':28}{s['ours_peak_rss_mib']:>16.0f}{s.get('evidently_peak_rss_mib', float('nan')):>16.0f}",
        f"{'detected (of 5)':28}{s['detected']:>16}{s.get('evidently_detected', '-'):>16}",
        f"{'false alarms (of 15)':28}{s['false_alarms']:>16}{s.get('evidently_false_alarms', '-'):>16}",
    ]
    if "speedup_vs_evidently" in s:
        lines.append(f"speedup vs Evidently {s['evidently_version']}: {s['speedup_vs_evidently']:.1f}x (detection), "
                     f"{s['speedup_wall_vs_evidently']:.1f}x (wall)")
    return "\n".join(lines)


if __name__ == "__main__":  # the worker of the "ours" side
    print(json.dumps(ours_worker(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
