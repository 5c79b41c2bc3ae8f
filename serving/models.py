"""What a serving worker runs: the champion's model in the variant measured fastest on this host.

The candidates, the agreement check and the measurement are :mod:`training.variants` (the promotion
gate times the same choice). Every candidate's outcome (``variant_checks``), the timings
(``variant_latency_ms``) and the CPU's ISA class with the probes that ran (``cpu``) are shown on
``/model`` and ``/health``.

Compiled torch variants are built for fixed batch sizes (``buckets``); a batch is padded to the next
bucket, and every bucket of the chosen variant is compiled before the model is swapped in, so no
request pays for it. OpenVINO variants take any batch size.
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from mlflow import MlflowClient

from mlops.registry import RegistryError, version_by_alias
from mlops.settings import get_settings
from training.artifacts import load_version
from training.cpu import CpuCapabilities, detect_capabilities
from training.model import CustomVGG
from training.probe import ran as probes_ran
from training.variants import Forward, run_bucketed, select

log = logging.getLogger(__name__)


@dataclass
class Served:
    """One loaded model version; immutable once built (swapped as a whole)."""

    name: str
    version: str
    alias: str
    run_id: str
    variant: str
    variant_reason: str
    image_size: int
    fp32: CustomVGG
    forward: Forward
    buckets: tuple[int, ...] = ()
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0
    checks: dict[str, str] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, object] = field(default_factory=dict)

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(embeddings or None, logits) for a batch of any size."""
        return run_bucketed(self.forward, x, self.buckets)

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "alias": self.alias, "run_id": self.run_id,
                "variant": self.variant, "variant_reason": self.variant_reason, "image_size": self.image_size,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
                "load_seconds": round(self.load_seconds, 2), "variant_checks": self.checks,
                "variant_latency_ms": self.latency_ms, "cpu": self.cpu}


def _buckets(max_batch: int) -> tuple[int, ...]:
    """Batch sizes compiled ahead (each costs a compilation at load); larger batches run in chunks."""
    return tuple(b for b in (1, 8, 32) if b < max_batch) + (min(max_batch, 32),) if max_batch < 32 else (1, 8, 32)


def _cpu_report(caps: CpuCapabilities) -> dict[str, object]:
    return {"isa": caps.isa, "limited_by": caps.limited_by or None, "model": caps.model_name,
            "probes": probes_ran(caps)}


def load_served(client: MlflowClient, name: str, alias: str, work_dir: Path | None = None) -> Served:
    """Load ``models:/name@alias`` and serve the fastest variant that agrees with FP32 (module docstring)."""
    s = get_settings()
    start = time.perf_counter()
    mv = version_by_alias(client, name, alias)
    if mv is None:
        raise RegistryError(f"registered model {name!r} has no {alias!r} alias yet (promote a version first)")
    keep = Path(tempfile.mkdtemp(prefix=f"serve-{name}-v{mv.version}-", dir=work_dir))
    loaded = load_version(client, mv, keep_dir=keep)
    size = loaded.image_size
    caps = detect_capabilities()
    chosen = select(loaded, keep, caps, s.serve_compile, _buckets(s.serve_max_batch),
                    memo_dir=s.variant_choices_dir)
    best = chosen.candidate
    with torch.no_grad():  # every compiled bucket before the swap: no request pays for a compilation
        for b in best.buckets:
            best.forward(torch.zeros(b, 3, size, size))
    served = Served(name=name, version=str(mv.version), alias=alias, run_id=loaded.run_id, variant=chosen.variant,
                    variant_reason=chosen.reason, image_size=size, fp32=loaded.model, forward=best.forward,
                    buckets=best.buckets, checks=chosen.checks, latency_ms=chosen.p50_ms, cpu=_cpu_report(caps))
    served.load_seconds = time.perf_counter() - start
    log.info("Serving %s v%s as %s (%s) after %.1f s", name, mv.version, chosen.variant, served.variant_reason,
             served.load_seconds)
    return served
