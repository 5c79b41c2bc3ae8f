"""What a serving worker runs: the champion's model in the fastest variant that passes a load-time check.

Variants, fastest first: ``int8`` (the run's PT2E INT8 program, only when training's accuracy gate
accepted it and, when compiled, this host's INT8 probe passed for the program's activation range),
``bf16`` (BF16 autocast, only with AMX/AVX512_BF16, when the ``native_bf16`` probe passed here and
it is measured faster than the FP32 variant at batch 1), ``compiled`` (FP32 through
``torch.compile``), ``fp32`` (eager). Each faster variant must predict the FP32 class on a fixed
synthetic sample (``serve_min_agreement``); one that disagrees is refused. Every variant's outcome
(``variant_checks``) and the CPU's ISA class with the probes that ran (``cpu``) are shown on
``/model`` and ``/health`` (the INT8 program once scored far below FP32 in a benchmark although it
matched in training's gate: it is never trusted without this check).

Compiled variants are built for fixed batch sizes (``buckets``); a batch is padded to the next
bucket, and every bucket is compiled before the model is swapped in, so no request pays for it.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from mlflow import MlflowClient
from torch import nn

from mlops.registry import RegistryError, version_by_alias
from mlops.settings import get_settings
from training.artifacts import download_run_artifact, load_version
from training.cpu import CpuCapabilities, detect_capabilities
from training.data import synthetic_images
from training.model import CustomVGG
from training.optimize import Bf16Autocast, interleaved_latencies_ms
from training.probe import int8_reduce_range, probe
from training.probe import ran as probes_ran

log = logging.getLogger(__name__)

AGREEMENT_SEED = 4_200_017


class _EmbedAndClassify(nn.Module):
    """One pass that returns (embedding, logits): monitoring gets the embedding for free."""

    def __init__(self, model: CustomVGG) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.model.embed(x)
        return emb, self.model.classifier(emb)


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
    forward: Callable[[torch.Tensor], tuple[torch.Tensor | None, torch.Tensor]]
    buckets: tuple[int, ...] = ()
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0
    checks: dict[str, str] = field(default_factory=dict)
    cpu: dict[str, object] = field(default_factory=dict)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(embeddings or None, logits) for a batch; padded to a compiled bucket where needed."""
        n = x.shape[0]
        if self.buckets:
            size = next((b for b in self.buckets if b >= n), None)
            if size is None:  # larger than the largest bucket: split
                parts = [self.predict(x[i : i + self.buckets[-1]]) for i in range(0, n, self.buckets[-1])]
                emb = None if parts[0][0] is None else torch.cat([p[0] for p in parts])  # type: ignore[misc]
                return emb, torch.cat([p[1] for p in parts])
            if size > n:
                x = torch.cat([x, x[:1].expand(size - n, *x.shape[1:])])
        emb, logits = self.forward(x)
        return (None if emb is None else emb[:n].float()), logits[:n].float()

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "alias": self.alias, "run_id": self.run_id,
                "variant": self.variant, "variant_reason": self.variant_reason, "image_size": self.image_size,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
                "load_seconds": round(self.load_seconds, 2), "variant_checks": self.checks, "cpu": self.cpu}


def _buckets(max_batch: int) -> tuple[int, ...]:
    """Batch sizes compiled ahead (each costs a compilation at load); larger batches run in chunks."""
    return tuple(b for b in (1, 8, 32) if b < max_batch) + (min(max_batch, 32),) if max_batch < 32 else (1, 8, 32)


@torch.no_grad()
def _agreement(fn: Callable[[torch.Tensor], torch.Tensor], sample: torch.Tensor, reference: torch.Tensor) -> float:
    return float((fn(sample).argmax(1) == reference).float().mean())


def _warm(fn: Callable[[torch.Tensor], object], image_size: int, buckets: tuple[int, ...]) -> None:
    for b in buckets:
        fn(torch.zeros(b, 3, image_size, image_size))


def _int8_probe_refusal(caps: CpuCapabilities, artifact_reduce_range: str | None) -> str | None:
    """Why this host must not run the compiled INT8 program (None: its activation range passed the probe)."""
    proven, why = int8_reduce_range(caps)
    if proven is None:
        return f"refused: no INT8 path passed its probe on this CPU ({why})"
    if proven and artifact_reduce_range != "True":
        return (f"refused: the program uses full-range activations, which fail the INT8 probe on this CPU ({why}); "
                "retrain on a host like this one for a 7-bit program")
    return None


def _cpu_report(caps: CpuCapabilities) -> dict[str, object]:
    return {"isa": caps.isa, "limited_by": caps.limited_by or None, "model": caps.model_name,
            "probes": probes_ran(caps)}


def load_served(client: MlflowClient, name: str, alias: str, work_dir: Path | None = None) -> Served:
    """Load ``models:/name@alias`` and pick the fastest variant that agrees with FP32 (module docstring)."""
    s = get_settings()
    start = time.perf_counter()
    mv = version_by_alias(client, name, alias)
    if mv is None:
        raise RegistryError(f"registered model {name!r} has no {alias!r} alias yet (promote a version first)")
    keep = Path(tempfile.mkdtemp(prefix=f"serve-{name}-v{mv.version}-", dir=work_dir))
    loaded = load_version(client, mv, keep_dir=keep)
    fp32 = loaded.model.eval()
    size = loaded.image_size
    sample = synthetic_images(s.serve_agreement_images, size, AGREEMENT_SEED).images
    with torch.no_grad():
        reference = fp32(sample).argmax(1)
    caps = detect_capabilities()
    checks: dict[str, str] = {}
    buckets = _buckets(s.serve_max_batch)
    wanted = s.serve_variant

    def accept(variant: str, reason: str, forward: Callable, bks: tuple[int, ...] = ()) -> Served:  # type: ignore[type-arg]
        for later in ("bf16", "compiled"):  # the variants never reached say why
            checks.setdefault(later, f"skipped: {variant} passed its check first")
        served = Served(name=name, version=str(mv.version), alias=alias, run_id=loaded.run_id, variant=variant,
                        variant_reason=reason, image_size=size, fp32=fp32, forward=forward, buckets=bks,
                        checks=checks, cpu=_cpu_report(caps))
        served.load_seconds = time.perf_counter() - start
        log.info("Serving %s v%s as %s (%s) after %.1f s", name, mv.version, variant, reason, served.load_seconds)
        return served

    def check(variant: str, logits_fn: Callable[[torch.Tensor], torch.Tensor]) -> bool:
        share = _agreement(logits_fn, sample, reference)
        ok = share >= s.serve_min_agreement
        checks[variant] = (f"{'passed' if ok else 'refused'}: agrees with FP32 on {share:.3f} of "
                           f"{len(sample)} check images (needs {s.serve_min_agreement:.2f})")
        return ok

    # INT8: only if training's gate accepted it, this CPU's INT8 probe passed for the program's activation
    # range (compiled kernels only; the eager q/dq graph computes in FP32), and it agrees with FP32 here and now.
    if wanted in ("auto", "int8"):
        tag, artifact = loaded.run_tags.get("int8_gate"), loaded.run_tags.get("int8_artifact", "")
        if tag != "accepted" or not artifact.endswith(".pt2"):
            checks["int8"] = f"not available: run tag int8_gate={tag!r}, artifact {artifact or 'none'}"
        elif s.serve_compile and (refusal := _int8_probe_refusal(caps, loaded.run_params.get("int8_reduce_range"))):
            checks["int8"] = refusal
        else:
            try:
                from training.quantize import compile_for_inference, load_pt2e

                path = download_run_artifact(loaded.run_id, artifact, keep / "int8")
                program = load_pt2e(path)
                fn = compile_for_inference(program) if s.serve_compile else program
                with torch.no_grad():
                    _warm(fn, size, buckets if s.serve_compile else (1,))
                    if check("int8", lambda x: fn(x)):
                        def int8_forward(x: torch.Tensor) -> tuple[None, torch.Tensor]:
                            return None, fn(x)

                        return accept("int8", "PT2E INT8 (training gate accepted, agrees with FP32)", int8_forward,
                                      buckets if s.serve_compile else ())
            except Exception as exc:  # noqa: BLE001 - any failure of the optional variant falls back
                checks["int8"] = f"refused: failed to load or run: {type(exc).__name__}: {exc}"
                log.warning("INT8 variant of %s v%s unusable: %s", name, mv.version, exc)
    else:
        checks["int8"] = f"skipped: serve_variant={wanted}"

    # The FP32 variant BF16 must beat: compiled where that passes its check, else eager.
    both = _EmbedAndClassify(fp32).eval()
    fallback: tuple[str, str, Callable, tuple[int, ...]] = (  # type: ignore[type-arg]
        "fp32", "FP32 eager (no faster variant passed its check)" if wanted != "fp32" else "requested", both, ())
    if wanted in ("auto", "compiled", "int8", "bf16") and s.serve_compile:
        try:
            from training.quantize import compile_for_inference

            compiled = compile_for_inference(both)
            with torch.no_grad():
                _warm(compiled, size, buckets)
            if check("compiled", lambda x: compiled(x)[1]):
                fallback = ("compiled", "FP32 torch.compile (inductor, frozen weights)", compiled, buckets)
        except Exception as exc:  # noqa: BLE001
            checks["compiled"] = f"refused: failed to compile: {type(exc).__name__}: {exc}"
            log.warning("Compiled variant of %s v%s unusable: %s", name, mv.version, exc)
    elif not s.serve_compile:
        checks["compiled"] = "skipped: serve_compile is off"
    else:
        checks["compiled"] = f"skipped: serve_variant={wanted}"

    # BF16: proven on this CPU by its probe, agreeing with FP32, and measured faster than the FP32 variant.
    if wanted not in ("auto", "bf16"):
        checks["bf16"] = f"skipped: serve_variant={wanted}"
    elif not caps.has_bf16_unit:
        checks["bf16"] = "skipped: no AMX/AVX512_BF16 on this CPU (BF16 would be emulated, slower than FP32)"
    elif not (result := probe("native_bf16", caps)).ok:
        checks["bf16"] = f"refused: native_bf16 probe {result.describe()}"
    else:
        try:
            from training.quantize import compile_for_inference

            bf16: Callable = Bf16Autocast(both).eval()  # type: ignore[type-arg]
            if s.serve_compile:
                bf16 = compile_for_inference(bf16)
            with torch.no_grad():
                _warm(bf16, size, buckets if s.serve_compile else (1,))
            if check("bf16", lambda x: bf16(x)[1]):
                samples = interleaved_latencies_ms([bf16, fallback[2]], [sample, sample], iterations=30)
                p50 = {"bf16": statistics.median(samples[0]), fallback[0]: statistics.median(samples[1])}
                if p50["bf16"] < p50[fallback[0]]:
                    return accept("bf16", f"BF16 autocast (probe passed, agrees with FP32, batch-1 p50 "
                                  f"{p50['bf16']:.2f} ms vs {p50[fallback[0]]:.2f} ms {fallback[0]})", bf16,
                                  buckets if s.serve_compile else ())
                checks["bf16"] = (f"refused: not faster (batch-1 p50 {p50['bf16']:.2f} ms vs "
                                  f"{p50[fallback[0]]:.2f} ms {fallback[0]}); {checks['bf16']}")
        except Exception as exc:  # noqa: BLE001
            checks["bf16"] = f"refused: failed to build or run: {type(exc).__name__}: {exc}"
            log.warning("BF16 variant of %s v%s unusable: %s", name, mv.version, exc)
    return accept(*fallback)
