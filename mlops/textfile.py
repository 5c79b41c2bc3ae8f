"""Results of the platform's jobs for Prometheus: node exporter's textfile collector format.

A job (the retrain tick, the promotion gate) describes its latest outcome as gauges and
:func:`publish` writes them to ``<metrics_textfile_dir>/<name>.prom`` atomically (a temporary file
renamed over the old one), so a scrape never reads half a file. Each file belongs to one writer and
holds its latest state only: Prometheus keeps the history. Without ``MLOPS_METRICS_TEXTFILE_DIR``
(a notebook, a laptop) nothing is written.

The metric names are the alert rules' and the console's interface (prometheus/README.md).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlops.files import write_atomically

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_FILE = re.compile(r"^[a-zA-Z0-9_.-]+$")


@dataclass(frozen=True)
class Gauge:
    """One gauge sample: ``name{labels} value`` with its help text."""

    name: str
    help: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        bad = [k for k in self.labels if not _LABEL.match(k) or k.startswith("__")]
        if bad:
            raise ValueError(f"invalid label name(s) {bad} on {self.name}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render(gauges: Iterable[Gauge]) -> str:
    """The exposition text of ``gauges``: one HELP/TYPE header per name, samples grouped under it."""
    by_name: dict[str, list[Gauge]] = {}
    for g in gauges:
        by_name.setdefault(g.name, []).append(g)
    lines: list[str] = []
    for name, samples in by_name.items():
        lines.append(f"# HELP {name} {_escape(samples[0].help)}")
        lines.append(f"# TYPE {name} gauge")
        for g in samples:
            labels = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(g.labels.items()))
            lines.append(f"{name}{{{labels}}} {_number(g.value)}" if labels else f"{name} {_number(g.value)}")
    return "\n".join(lines) + "\n"


def publish(name: str, gauges: Iterable[Gauge], directory: Path | None = None) -> Path | None:
    """Replace ``<directory>/<name>.prom`` with ``gauges`` (default directory: the setting).

    Returns the file written, or None without a directory. A failure to write is logged, never
    raised: a job's result must not depend on its monitoring.
    """
    if directory is None:
        from mlops.settings import get_settings

        directory = get_settings().metrics_textfile_dir
    if directory is None:
        return None
    if not _FILE.match(name):
        raise ValueError(f"invalid textfile name {name!r}")
    text = render(gauges)
    target = Path(directory) / f"{name}.prom"
    try:
        write_atomically(target, text, mode=0o644)
    except OSError as exc:
        log.warning("Could not publish metrics %s to %s: %s", name, directory, exc)
        return None
    return target
