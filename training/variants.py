"""Inference variants of a registered version, and which one runs: the fastest that agrees with FP32.

Candidate variants (each built only where it can run here):

- ``openvino_int8``: the NNCF INT8 IR logged at registration, only when it passed training's accuracy
  gate (run tag ``openvino_int8_gate=accepted``); for a version registered without IRs (e.g. from a
  notebook) both IRs are built here, off any request path, the INT8 one calibrated on synthetic images;
- ``openvino_fp32``: the FP32 IR (OpenVINO precision hint ``f32``);
- ``openvino_bf16``: the FP32 IR with precision hint ``bf16``, only on a CPU with AMX/AVX512_BF16 and
  unless training's accuracy gate refused it (run tag ``openvino_bf16_gate``);
- ``int8``: the run's PT2E INT8 program (training's gate accepted it and, compiled, this host's INT8
  probe passed for the program's activation range);
- ``bf16``: torch BF16 autocast, only with AMX/AVX512_BF16, a passing ``native_bf16`` probe, and unless
  training's accuracy gate refused it (run tag ``bf16_gate``);
- ``compiled``: FP32 through ``torch.compile``; ``fp32``: eager, the reference.

:func:`select` builds them, keeps those that predict the FP32 class on a fixed synthetic sample
(``serve_min_agreement``), times the agreeing ones at batch 1 on the model's real input shape,
interleaved (:func:`training.optimize.interleaved_latencies_ms`), and picks the fastest
(:func:`choose_fastest`); ``serve_variant`` forces one (FP32 eager where it cannot run). Serving runs
the selection at load; the promotion gate times the same selection's variant.

Both remember the choice (``serve_remember_choice``, in settings' ``variant_choices_dir``): a worker that
restarts, its siblings starting beside it, or the gate judging a version again build only the variant chosen
for the same version, CPU (as detection saw it), inference software and settings, and re-check that it agrees
with FP32; if it no longer does, they choose again. Delete the directory to race the candidates again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import io
import json
import logging
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mlops.files import write_atomically
from mlops.settings import get_settings
from training.artifacts import LoadedVersion, download_run_artifact
from training.cpu import CpuCapabilities
from training.data import synthetic_images
from training.model import EmbedAndClassify
from training.optimize import Bf16Autocast, interleaved_latencies_ms
from training.probe import int8_reduce_range, probe

log = logging.getLogger(__name__)

AGREEMENT_SEED = 4_200_017
CALIBRATION_SEED = 4_200_029

Forward = Callable[[torch.Tensor], tuple[torch.Tensor | None, torch.Tensor]]


@torch.no_grad()
def run_bucketed(forward: Forward, x: torch.Tensor,
                 buckets: tuple[int, ...]) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(embeddings or None, logits) for a batch; padded to a compiled bucket where needed (none: any size)."""
    n = x.shape[0]
    if buckets:
        size = next((b for b in buckets if b >= n), None)
        if size is None:  # larger than the largest bucket: split
            parts = [run_bucketed(forward, x[i : i + buckets[-1]], buckets) for i in range(0, n, buckets[-1])]
            emb = None if parts[0][0] is None else torch.cat([p[0] for p in parts])  # type: ignore[misc]
            return emb, torch.cat([p[1] for p in parts])
        if size > n:
            x = torch.cat([x, x[:1].expand(size - n, *x.shape[1:])])
    emb, logits = forward(x)
    return (None if emb is None else emb[:n].float()), logits[:n].float()


@dataclass
class Candidate:
    """A variant that could serve: how to run it and which batch sizes it is compiled for (none: any)."""

    name: str
    description: str
    forward: Forward
    buckets: tuple[int, ...] = ()


VARIANTS = ("openvino_int8", "openvino_bf16", "openvino_fp32", "int8", "bf16", "compiled", "fp32")
"""Every variant, in the order candidates are built and reported (speed decides, not this order)."""


TIMED_BATCHES = (1, 8)
"""Each candidate is timed on a lone request (batch 1, idle) and at a busy moment (batch 8 while
:data:`BUSY_THREADS` threads decode images, as a worker's request handling does under load)."""
BUSY_THREADS = 2
"""Measured on a 2-core AMX Xeon: idle, OpenVINO BF16 beat INT8 at batch 8 (0.77 vs 0.86 ms); with two
threads decoding PNGs beside it, INT8 won (2.88 vs 3.44 ms), as it did through HTTP (591 vs 375 req/s)."""


@contextlib.contextmanager
def _busy(threads: int, image_size: int) -> Iterator[None]:
    """Background threads doing a serving worker's per-request work (PNG decode, to float) until the block ends."""
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)).save(buf, format="PNG")
    png = buf.getvalue()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            torch.from_numpy(np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))).float().div_(255.0)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    try:
        yield
    finally:
        stop.set()
        for w in workers:
            w.join()


def choose_fastest(latency_ms: dict[str, dict[str, float]]) -> tuple[str, str]:
    """(variant, reason): the agreeing candidate with the lowest ``score`` (batch-1 p50 + busy batch-8 p50), every
    figure in the reason. ``latency_ms``: variant -> {"batch_1": p50, "batch_8": p50, "score": sum}."""
    if not latency_ms:
        raise ValueError("no candidate variant to choose from")
    def rank(k: str) -> tuple[float, int]:
        return latency_ms[k]["score"], VARIANTS.index(k) if k in VARIANTS else len(VARIANTS)

    best = min(latency_ms, key=rank)

    def figures(k: str) -> str:
        t = latency_ms[k]
        return f"{k} {t['batch_1']:.2f} + {t['batch_8']:.2f} ms"

    others = ", ".join(figures(k) for k in sorted(latency_ms, key=lambda k: latency_ms[k]["score"]) if k != best)
    return best, (f"fastest of {len(latency_ms)} variants agreeing with FP32 (p50 at batch 1 + at batch 8, busy): "
                  f"{figures(best)}" + (f" (vs {others})" if others else ""))


def int8_probe_refusal(caps: CpuCapabilities, artifact_reduce_range: str | None) -> str | None:
    """Why this host must not run the compiled INT8 program (None: its activation range passed the probe)."""
    proven, why = int8_reduce_range(caps)
    if proven is None:
        return f"refused: no INT8 path passed its probe on this CPU ({why})"
    if proven and artifact_reduce_range != "True":
        return (f"refused: the program uses full-range activations, which fail the INT8 probe on this CPU ({why}); "
                "retrain on a host like this one for a 7-bit program")
    return None


class VariantBuilder:
    """Builds the candidate variants of one loaded version; records why each one is or is not a candidate."""

    def __init__(self, loaded: LoadedVersion, keep: Path, caps: CpuCapabilities, compile_torch: bool,
                 buckets: tuple[int, ...]) -> None:
        self.loaded, self.keep, self.caps = loaded, keep, caps
        self.compile_torch, self.buckets = compile_torch, buckets
        self.fp32 = loaded.model
        self.both = EmbedAndClassify(self.fp32).eval()
        self._irs: tuple[object, object | None, str] | None = None

    # -- OpenVINO -------------------------------------------------------------------------------------
    def _ir_pair(self) -> tuple[object, object | None, str]:
        """(FP32 IR, INT8 IR or None, where they came from): the logged IRs, else built here, off the request path."""
        if self._irs is None:
            from training import openvino as tov

            tags = self.loaded.run_tags
            if tags.get("openvino_ir") == tov.ARTIFACT_DIR:
                local = download_run_artifact(self.loaded.run_id, tov.ARTIFACT_DIR, self.keep / "ir")
                fp32 = tov.read_ir(local / tov.FP32_XML)
                int8 = tov.read_ir(local / tov.INT8_XML) if tags.get("openvino_int8_gate") == "accepted" else None
                origin = f"logged at registration (INT8 gate: {tags.get('openvino_int8_gate')})"
            else:
                size = self.loaded.image_size
                s = get_settings()
                fp32 = tov.export_ir(self.fp32)
                calib = synthetic_images(s.int8_calibration_images, size, CALIBRATION_SEED).images
                int8 = tov.quantize_fast(fp32, [calib[i : i + 32] for i in range(0, len(calib), 32)])
                origin = "built at load (the version was registered without IRs; INT8 calibrated on synthetic images)"
            self._irs = (fp32, int8, origin)
        return self._irs

    def openvino(self, variant: str) -> Candidate | str:
        from training import openvino as tov

        fp32_ir, int8_ir, origin = self._ir_pair()
        if variant == "openvino_int8":
            if int8_ir is None:
                return f"not available: INT8 IR refused by training's accuracy gate ({origin})"
            return Candidate(variant, f"OpenVINO INT8 IR, {origin}", tov.CompiledIR(int8_ir, "f32"), self.buckets)
        if variant == "openvino_bf16":
            if not self.caps.has_bf16_unit:
                return "skipped: no AMX/AVX512_BF16 on this CPU (BF16 would be emulated, slower than FP32)"
            if self.loaded.run_tags.get("openvino_bf16_gate") == "refused":
                return "refused: training's accuracy gate refused BF16 (run tag openvino_bf16_gate=refused)"
            return Candidate(variant, f"OpenVINO FP32 IR in BF16 (AMX/AVX512_BF16), {origin}",
                             tov.CompiledIR(fp32_ir, "bf16"), self.buckets)
        return Candidate(variant, f"OpenVINO FP32 IR, {origin}", tov.CompiledIR(fp32_ir, "f32"), self.buckets)

    # -- torch ----------------------------------------------------------------------------------------
    def int8(self) -> Candidate | str:
        tags, params = self.loaded.run_tags, self.loaded.run_params
        tag, artifact = tags.get("int8_gate"), tags.get("int8_artifact", "")
        if tag != "accepted" or not artifact.endswith(".pt2"):
            return f"not available: run tag int8_gate={tag!r}, artifact {artifact or 'none'}"
        if self.compile_torch and (refusal := int8_probe_refusal(self.caps, params.get("int8_reduce_range"))):
            return refusal
        from training.quantize import compile_for_inference, load_pt2e

        program = load_pt2e(download_run_artifact(self.loaded.run_id, artifact, self.keep / "int8"))
        fn = compile_for_inference(program) if self.compile_torch else program

        def int8_forward(x: torch.Tensor) -> tuple[None, torch.Tensor]:
            return None, fn(x)

        return Candidate("int8", "PT2E INT8 (training gate accepted)", int8_forward,
                         self.buckets if self.compile_torch else ())

    def bf16(self) -> Candidate | str:
        if not self.caps.has_bf16_unit:
            return "skipped: no AMX/AVX512_BF16 on this CPU (BF16 would be emulated, slower than FP32)"
        if self.loaded.run_tags.get("bf16_gate") == "refused":
            return "refused: training's accuracy gate refused BF16 autocast (run tag bf16_gate=refused)"
        if not (result := probe("native_bf16", self.caps)).ok:
            return f"refused: native_bf16 probe {result.describe()}"
        fn: Forward = Bf16Autocast(self.both).eval()
        if self.compile_torch:
            from training.quantize import compile_for_inference

            fn = compile_for_inference(fn)
        return Candidate("bf16", "torch BF16 autocast (probe passed)", fn, self.buckets if self.compile_torch else ())

    def compiled(self) -> Candidate | str:
        if not self.compile_torch:
            return "skipped: serve_compile is off"
        from training.quantize import compile_for_inference

        return Candidate("compiled", "FP32 torch.compile (inductor, frozen weights)",
                         compile_for_inference(self.both), self.buckets)

    def build(self, variant: str) -> Candidate | str:
        """The candidate, or why it is not one (any failure of an optional variant is a reason, not an error)."""
        if variant == "fp32":
            return Candidate("fp32", "FP32 eager", self.both)
        try:
            if variant.startswith("openvino_"):
                return self.openvino(variant)
            return {"int8": self.int8, "bf16": self.bf16, "compiled": self.compiled}[variant]()
        except Exception as exc:  # noqa: BLE001 - an optional variant that cannot be built is refused
            log.warning("Variant %s of %s v%s unusable: %s", variant, self.loaded.name, self.loaded.version, exc)
            return f"refused: failed to build: {type(exc).__name__}: {exc}"


@dataclass
class Selection:
    """The chosen candidate, why, and every candidate's outcome and batch-1 p50 (ms)."""

    variant: str
    reason: str
    candidate: Candidate
    checks: dict[str, str] = field(default_factory=dict)
    p50_ms: dict[str, dict[str, float]] = field(default_factory=dict)


def _agreement(candidate: Candidate, sample: torch.Tensor, reference: torch.Tensor) -> str | float:
    """Share of ``sample`` the candidate gives the FP32 class, or why it could not run."""
    try:
        with torch.no_grad():
            return float((run_bucketed(candidate.forward, sample, candidate.buckets)[1].argmax(1) == reference)
                         .float().mean())
    except Exception as exc:  # noqa: BLE001 - an optional variant that fails is refused, not an error
        return f"refused: failed to run: {type(exc).__name__}: {exc}"


def _agreement_check(agree: float, images: int) -> str:
    """A candidate's entry in ``checks`` for its agreement with FP32 (passed or refused, against the setting)."""
    needs = get_settings().serve_min_agreement
    return (f"{'passed' if agree >= needs else 'refused'}: agrees with FP32 on {agree:.3f} of {images} "
            f"check images (needs {needs:.2f})")


def select(loaded: LoadedVersion, keep: Path, caps: CpuCapabilities, compile_torch: bool,
           buckets: tuple[int, ...], memo_dir: Path | None = None) -> Selection:
    """Build every candidate (``serve_variant`` limits them), check agreement with FP32, time, choose.

    With ``memo_dir`` (and ``serve_remember_choice`` on) the choice is remembered there, and a later call for
    the same version, CPU, software and settings builds only the remembered variant, re-checks its agreement
    and uses it (:func:`_recall`); concurrent callers (a server's workers starting together) choose once.
    """
    s = get_settings()
    sample = synthetic_images(s.serve_agreement_images, loaded.image_size, AGREEMENT_SEED).images
    with torch.no_grad():
        reference = loaded.model(sample).argmax(1)
    builder = VariantBuilder(loaded, keep, caps, compile_torch, buckets)
    if memo_dir is None or not s.serve_remember_choice:
        return _select(builder, sample, reference)
    key = _memo_key(loaded, caps, compile_torch, buckets)
    label = re.sub(r"[^A-Za-z0-9._-]", "_", f"{loaded.name}-v{loaded.version}")
    path = memo_dir / f"{label}-{hashlib.sha256(_canonical(key)).hexdigest()[:16]}.json"
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(_locked(path.with_suffix(".lock")))
        except OSError as exc:
            log.warning("Cannot remember variant choices in %s (%s): choosing without", memo_dir, exc)
            return _select(builder, sample, reference)
        if (recalled := _recall(path, key, builder, sample, reference)) is not None:
            return recalled
        selection = _select(builder, sample, reference)
        try:
            _remember(path, key, selection)
        except OSError as exc:
            log.warning("Cannot remember the variant choice in %s: %s", path, exc)
        return selection


def _select(builder: VariantBuilder, sample: torch.Tensor, reference: torch.Tensor) -> Selection:
    s = get_settings()
    loaded = builder.loaded
    wanted = s.serve_variant
    checks: dict[str, str] = {}
    agreeing: dict[str, Candidate] = {}
    for variant in VARIANTS:
        if wanted not in ("auto", variant) and variant != "fp32":
            checks[variant] = f"skipped: serve_variant={wanted}"
            continue
        built = builder.build(variant)
        if isinstance(built, str):
            checks[variant] = built
            continue
        agree = _agreement(built, sample, reference)
        if isinstance(agree, str):
            log.warning("Variant %s of %s v%s failed to run: %s", variant, loaded.name, loaded.version, agree)
            checks[variant] = agree
            continue
        ok = agree >= s.serve_min_agreement
        checks[variant] = _agreement_check(agree, len(sample))
        if ok:
            agreeing[variant] = built
    if wanted != "auto" and wanted in agreeing:
        chosen, reason, p50 = wanted, "requested (serve_variant)", {}
    else:
        names = list(agreeing)
        p50 = {k: {} for k in names}
        for batch in TIMED_BATCHES:
            with torch.no_grad(), _busy(BUSY_THREADS if batch > 1 else 0, loaded.image_size):
                samples = interleaved_latencies_ms(
                    [lambda x, c=agreeing[k]: run_bucketed(c.forward, x, c.buckets) for k in names],
                    [sample] * len(names), iterations=s.serve_timing_iterations, batch=batch)
            for k, v in zip(names, samples, strict=True):
                p50[k][f"batch_{batch}"] = round(statistics.median(v), 3)
        for k in names:
            p50[k]["score"] = round(sum(p50[k][f"batch_{b}"] for b in TIMED_BATCHES), 3)
        chosen, reason = choose_fastest(p50)
        if wanted != "auto":
            reason = f"serve_variant={wanted} could not run ({checks.get(wanted)}); {reason}"
    best = agreeing[chosen]
    return Selection(chosen, f"{best.description}; {reason}", best, checks, p50)


# --- the remembered choice ------------------------------------------------------------------------

MEMO_KEEP = 32
"""Remembered choices kept per directory (the newest; older versions' go)."""


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _memo_key(loaded: LoadedVersion, caps: CpuCapabilities, compile_torch: bool,
              buckets: tuple[int, ...]) -> dict[str, object]:
    """Everything the choice depends on: the version, what detection saw of the CPU (masks included), the
    inference software, and the settings that change the candidates, their checks or their timing (the
    intra-op threads too)."""
    s = get_settings()
    return {
        "model": {"name": loaded.name, "version": str(loaded.version), "run_id": loaded.run_id},
        "cpu": dataclasses.asdict(caps),
        "software": {name: _package_version(name) for name in ("torch", "openvino", "nncf")},
        "settings": {"serve_variant": s.serve_variant, "serve_min_agreement": s.serve_min_agreement,
                     "serve_agreement_images": s.serve_agreement_images,
                     "serve_timing_iterations": s.serve_timing_iterations, "compile_torch": compile_torch,
                     "buckets": list(buckets), "threads": torch.get_num_threads()},
    }


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _recall(path: Path, key: dict[str, object], builder: VariantBuilder, sample: torch.Tensor,
            reference: torch.Tensor) -> Selection | None:
    """The remembered choice, built and re-checked; None (choose again) when there is none, it is for another
    key, or its variant no longer builds or agrees."""
    try:
        memo = json.loads(path.read_text())
        if memo["key"] != key:
            return None
        variant, chosen_at, reason = str(memo["variant"]), memo["chosen_at"], memo["reason"]
        checks, p50_ms = dict(memo["checks"]), dict(memo["p50_ms"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("Ignoring the remembered variant choice %s: %s", path, exc)
        return None
    loaded, min_agreement = builder.loaded, get_settings().serve_min_agreement
    built = builder.build(variant)
    agree = built if isinstance(built, str) else _agreement(built, sample, reference)
    if isinstance(agree, str) or agree < min_agreement:
        log.warning("The remembered variant %s of %s v%s no longer serves (%s): choosing again", variant,
                    loaded.name, loaded.version, agree if isinstance(agree, str) else f"agreement {agree:.3f}")
        return None
    assert not isinstance(built, str)  # a str is a reason it did not build (returned above)
    checks[variant] = f"{_agreement_check(agree, len(sample))}, re-checked at this load"
    return Selection(variant, f"{reason} (chosen at {chosen_at} on this host; remembered in {path.name})", built,
                     checks, p50_ms)


def _remember(path: Path, key: dict[str, object], selection: Selection) -> None:
    memo = {"key": key, "variant": selection.variant, "reason": selection.reason, "checks": selection.checks,
            "p50_ms": selection.p50_ms, "chosen_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_atomically(path, json.dumps(memo, indent=2) + "\n")  # a reader never sees half a choice
    for old in sorted(path.parent.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[MEMO_KEEP:]:
        old.unlink(missing_ok=True)
        old.with_suffix(".lock").unlink(missing_ok=True)
