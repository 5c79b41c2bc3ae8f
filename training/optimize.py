"""Optimisation backends and runtime tuning (CPU detection: ``training.cpu``; probes: ``training.probe``).

Backends:

- ``ipex``: ``ipex.optimize`` (training with the optimizer, inference on ``model.eval()``);
  BF16 only where it pays (AMX) and the ``ipex_bf16`` probe passed here, FP32 otherwise.
- ``native``: stock PyTorch: channels_last, BF16 autocast only where it pays (AMX) and the
  ``native_bf16`` probe passed, ``torch.compile`` for training only when asked (measured on
  AVX2: no reliable gain, 35–77 s to compile).
- ``none``: plain FP32 eager, contiguous memory.
- ``auto``: ``ipex`` when it is installed and its BF16 path is proven here; otherwise ``native``
  (channels_last is measured faster than eager, and IPEX FP32 has no measured gain worth a
  separate, archived dependency).
"""

from __future__ import annotations

import enum
import importlib.util
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from training.cpu import CpuCapabilities
from training.probe import ProbeResult, probe

log = logging.getLogger(__name__)


class Backend(enum.StrEnum):
    auto = "auto"
    ipex = "ipex"
    native = "native"
    none = "none"


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (e.g. IPEX is not installed)."""


def ipex_available() -> bool:
    return importlib.util.find_spec("intel_extension_for_pytorch") is not None


def ipex_version() -> str:
    if not ipex_available():
        return "not installed"
    import intel_extension_for_pytorch as ipex

    return str(ipex.__version__)


@dataclass(frozen=True)
class BackendChoice:
    requested: Backend
    name: Backend
    dtype: torch.dtype
    channels_last: bool
    compile: bool
    reason: str
    probes: dict[str, str] = field(default_factory=dict)
    """The probes this choice ran (path -> result), e.g. ``{"ipex_bf16": "failed: raised RuntimeError: ..."}``."""

    @property
    def bf16(self) -> bool:
        return self.dtype == torch.bfloat16

    def as_params(self) -> dict[str, object]:
        return {
            "backend_requested": self.requested.value,
            "backend": self.name.value,
            "backend_dtype": str(self.dtype).removeprefix("torch."),
            "backend_channels_last": self.channels_last,
            "backend_compile": self.compile,
            "backend_reason": self.reason[:500],
            **{f"probe_{path}": text[:500] for path, text in self.probes.items()},
        }


# Measured with `mlops bench train` (CustomVGG width 0.125, 64 px, batch 32, 2 threads, idle host) on a Xeon
# with AMX: BF16 autocast 1.28x FP32 channels_last images/s; with oneDNN limited to AVX512_CORE_BF16 on the
# same host (the AVX512_BF16-without-AMX class), 0.92x.
NO_BF16_UNIT = ("FP32 (no AMX/AVX512_BF16 on this CPU: BF16 would be emulated, measured 3-45x slower, "
                "and IPEX's BF16 prepack asserts)")
BF16_WITHOUT_AMX = ("FP32 (AVX512_BF16 without AMX: BF16 training measured 0.92x FP32 with oneDNN limited to "
                    "AVX512_CORE_BF16; it pays only with AMX, 1.28x)")


def select_backend(
    requested: Backend,
    caps: CpuCapabilities,
    have_ipex: bool,
    compile_training: bool = False,
    run_probe: Callable[[str], ProbeResult] | None = None,
) -> BackendChoice:
    """Pick the backend and precision from what was asked, the CPU, what is installed and the probes.

    BF16 is chosen only where it pays (AMX) *and* the path's probe (``training.probe``) ran here and
    agreed with FP32; a failed probe falls back to the next path (IPEX BF16 -> native BF16 -> FP32),
    never to a crash. ``run_probe`` replaces the real probes in tests of this policy.
    """
    run = run_probe or (lambda path: probe(path, caps))
    probes: dict[str, str] = {}

    def bf16_proven(path: str) -> tuple[bool, str]:
        if not caps.has_bf16_unit:
            return False, NO_BF16_UNIT
        if not caps.amx:
            return False, BF16_WITHOUT_AMX
        result = run(path)
        probes[path] = result.describe()
        if result.ok:
            return True, f"BF16 (the CPU has AMX and the {path} probe {result.describe()})"
        return False, f"FP32 (the {path} probe {result.describe()})"

    def choice(name: Backend, bf16: bool, channels_last: bool, compile_: bool, reason: str) -> BackendChoice:
        dtype = torch.bfloat16 if bf16 else torch.float32
        return BackendChoice(requested, name, dtype, channels_last, compile_, reason, dict(probes))

    if requested == Backend.ipex:
        if not have_ipex:
            raise BackendUnavailable(
                "backend 'ipex' requested but intel_extension_for_pytorch is not installed "
                "(build the IPEX environment with `make ipex-venv` and run from .venv-ipex)"
            )
        bf16, precision = bf16_proven("ipex_bf16")
        return choice(Backend.ipex, bf16, True, False, f"requested; {precision}")
    if requested == Backend.none:
        return choice(Backend.none, False, False, False, "requested: plain FP32 eager")
    if requested == Backend.native:
        bf16, precision = bf16_proven("native_bf16")
        return choice(Backend.native, bf16, True, compile_training, f"requested; {precision}")
    # auto
    why = "IPEX is not installed"
    if have_ipex:
        bf16, precision = bf16_proven("ipex_bf16")
        if bf16:
            return choice(Backend.ipex, True, True, False,
                          f"auto: IPEX installed and proven here, where ipex.optimize's BF16 kernels pay; {precision}")
        why = f"IPEX is installed but not chosen: {precision}"
    bf16, precision = bf16_proven("native_bf16")
    return choice(
        Backend.native, bf16, True, compile_training,
        f"auto: native PyTorch with channels_last (measured faster than FP32 eager); {why}; {precision}",
    )


# --- applying a backend ---------------------------------------------------------------


def to_memory_format(x: torch.Tensor, choice: BackendChoice) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if choice.channels_last else x


def prepare_training(
    model: nn.Module, optimizer: torch.optim.Optimizer, choice: BackendChoice
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Apply the backend to a model in train mode and its optimizer."""
    if choice.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if choice.name == Backend.ipex:
        import intel_extension_for_pytorch as ipex

        model.train()
        model, optimizer = ipex.optimize(model, optimizer=optimizer, dtype=choice.dtype)
    elif choice.compile:
        model = torch.compile(model)
    return model, optimizer


class Bf16Autocast(nn.Module):
    """Runs a module under BF16 autocast and returns its tensors in FP32.

    An ``ipex.optimize(dtype=bfloat16)`` module holds BF16-prepacked weights: called with FP32 input
    outside autocast, its first convolution fails ("could not create a primitive descriptor for the
    convolution forward propagation primitive"), on AMX Xeons as on AVX-512 EPYCs.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.module(*args)
        return tuple(t.float() for t in out) if isinstance(out, tuple) else out.float()


def prepare_inference(model: nn.Module, choice: BackendChoice) -> nn.Module:
    """Apply the backend to a model for inference (eval mode); the result takes FP32 input and returns FP32."""
    model = model.eval()
    if choice.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if choice.name == Backend.ipex:
        import intel_extension_for_pytorch as ipex

        model = ipex.optimize(model, dtype=choice.dtype)
    return Bf16Autocast(model).eval() if choice.bf16 else model


def autocast(choice: BackendChoice) -> AbstractContextManager[object]:
    """BF16 autocast for the native backend on BF16 hardware; nothing otherwise."""
    if choice.bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


# --- runtime tuning -------------------------------------------------------------------

ALLOCATORS = ("libjemalloc.so", "libjemalloc.so.2", "libtcmalloc.so", "libtcmalloc.so.4", "libtcmalloc_minimal.so.4")
ALLOCATOR_NOT_PRELOADED = ("not preloaded: OpenVINO aborts ('free(): invalid pointer') under a preloaded "
                           "jemalloc, and every training run exports OpenVINO IRs")


def openmp_runtime() -> str:
    """Which OpenMP runtime this process loaded: 'intel' (libiomp5), 'gnu' (libgomp) or 'unknown'."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    if "libiomp5" in maps:
        return "intel"
    if "libgomp" in maps:
        return "gnu"
    return "unknown"


@dataclass
class TuningReport:
    threads: int
    applied: dict[str, str] = field(default_factory=dict)
    not_available: dict[str, str] = field(default_factory=dict)
    child_env: dict[str, str] = field(default_factory=dict)

    def as_params(self) -> dict[str, object]:
        params: dict[str, object] = {"threads": self.threads, "interop_threads": torch.get_num_interop_threads()}
        params.update({f"tuning_{k}": v for k, v in self.applied.items()})
        params.update({f"tuning_unavailable_{k}": v for k, v in self.not_available.items()})
        return params


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def tune_runtime(threads: int | None = None, local_world_size: int = 1) -> TuningReport:
    """Apply the Xeon tuning-guide settings that can be applied now; report the rest.

    Thread count is set in-process (``torch.set_num_threads``). OpenMP affinity and the
    allocator only take effect when set before the process starts, so they are reported as
    applied only when already in the environment, and prepared in ``child_env`` for
    processes we launch (torchrun workers).
    """
    n = threads or max(1, default_threads() // max(1, local_world_size))
    torch.set_num_threads(n)
    report = TuningReport(threads=n)
    report.applied["torch_num_threads"] = str(n)
    report.child_env["OMP_NUM_THREADS"] = str(n)
    if os.environ.get("OMP_NUM_THREADS"):
        report.applied["OMP_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]
    omp = openmp_runtime()
    report.applied["openmp_runtime"] = omp
    affinity_var = "KMP_AFFINITY" if omp == "intel" else "GOMP_CPU_AFFINITY"
    if os.environ.get(affinity_var):
        report.applied[affinity_var] = os.environ[affinity_var]
    elif local_world_size > 1 or omp == "unknown":
        report.not_available[affinity_var] = "not set (several workers share the cores, or unknown OpenMP runtime)"
    else:
        value = "granularity=fine,compact,1,0" if omp == "intel" else f"0-{default_threads() - 1}"
        report.child_env[affinity_var] = value
        report.not_available[affinity_var] = "must be set before start; prepared for launched workers"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(a.split(".so")[0] in preload for a in ALLOCATORS):
        report.applied["LD_PRELOAD"] = preload
    else:
        # Not prepared for launched workers either: under a preloaded jemalloc, OpenVINO (the IR export at
        # the end of every training run) aborts with "free(): invalid pointer".
        report.not_available["allocator"] = ALLOCATOR_NOT_PRELOADED
    log.info("Runtime: %d threads, applied %s, not available %s", n, report.applied, report.not_available)
    return report


def batches(x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for i in range(0, x.shape[0], batch_size):
        yield x[i : i + batch_size]


@torch.no_grad()
def predict_logits(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 64,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    out = [fn(prepare(b) if prepare else b).float() for b in batches(x, batch_size)]
    return torch.cat(out)


@torch.no_grad()
def interleaved_latencies_ms(fns: Sequence[Callable[[torch.Tensor], object]], inputs: Sequence[torch.Tensor],
                             iterations: int, warmup: int = 3, batch: int = 1) -> list[list[float]]:
    """Latency samples (ms) of each function at ``batch`` images, called in turn so that machine noise hits
    all alike.

    After ``warmup`` calls each, ``fns[k]`` is timed on ``batch`` images of ``inputs[k]`` starting at image
    ``i % len(inputs[k])`` at iteration ``i`` (wrapping around; each function has its own inputs: models of
    different input sizes compare fairly).
    """
    for fn, x in zip(fns, inputs, strict=True):
        for _ in range(warmup):
            fn(x[:batch])
    samples: list[list[float]] = [[] for _ in fns]
    for i in range(iterations):
        for k, (fn, x) in enumerate(zip(fns, inputs, strict=True)):
            x1 = x[[(i + j) % len(x) for j in range(batch)]]
            start = time.perf_counter()
            fn(x1)
            samples[k].append(1000.0 * (time.perf_counter() - start))
    return samples
