"""Optimisation backends, CPU capability detection and runtime tuning.

Backends:

- ``ipex``: ``ipex.optimize`` (training with the optimizer, inference on ``model.eval()``);
  BF16 only where the CPU has AVX512_BF16 or AMX (IPEX's BF16 prepack asserts on AVX2-only
  CPUs), FP32 otherwise.
- ``native``: stock PyTorch: channels_last, BF16 autocast only on AMX/AVX512_BF16,
  ``torch.compile`` for training only when asked (measured here: no reliable gain, 35–77 s
  to compile).
- ``none``: plain FP32 eager, contiguous memory.
- ``auto``: ``ipex`` when it is installed *and* the CPU has a BF16 unit (where IPEX's gains
  are); otherwise ``native`` (measured on AVX2: channels_last is faster than eager, and IPEX
  FP32 has no measured gain worth a separate, archived dependency).
"""

from __future__ import annotations

import enum
import importlib.util
import logging
import os
import platform
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


class Backend(enum.StrEnum):
    auto = "auto"
    ipex = "ipex"
    native = "native"
    none = "none"


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (e.g. IPEX is not installed)."""


@dataclass(frozen=True)
class CpuCapabilities:
    avx2: bool = False
    avx512: bool = False
    avx512_bf16: bool = False
    amx: bool = False
    vnni: bool = False
    """VNNI (AVX512_VNNI, AVX_VNNI or AMX): INT8 dot products without 16-bit saturation."""
    model_name: str = ""
    torch_isa: str = ""

    @property
    def has_bf16_unit(self) -> bool:
        """Hardware BF16 (AMX or AVX512_BF16): the only case where BF16 pays on CPU."""
        return self.amx or self.avx512_bf16

    def as_params(self) -> dict[str, object]:
        return {
            "cpu_model": self.model_name,
            "cpu_avx2": self.avx2,
            "cpu_avx512": self.avx512,
            "cpu_avx512_bf16": self.avx512_bf16,
            "cpu_amx": self.amx,
            "cpu_vnni": self.vnni,
            "torch_cpu_capability": self.torch_isa,
        }


def parse_cpu_flags(cpuinfo: str) -> tuple[set[str], str]:
    flags: set[str] = set()
    model = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags" and not flags:
            flags = set(value.split())
        elif key == "model name" and not model:
            model = value.strip()
    return flags, model


def capabilities_from_flags(flags: set[str], model_name: str = "", torch_isa: str = "") -> CpuCapabilities:
    return CpuCapabilities(
        avx2="avx2" in flags,
        avx512="avx512f" in flags,
        avx512_bf16="avx512_bf16" in flags,
        amx=bool({"amx_bf16", "amx_tile"} & flags),
        vnni=bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags),
        model_name=model_name,
        torch_isa=torch_isa,
    )


def detect_capabilities(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuCapabilities:
    try:
        flags, model = parse_cpu_flags(cpuinfo.read_text())
    except OSError:
        flags, model = set(), platform.processor()
    try:
        isa = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - informational only
        isa = "unknown"
    return capabilities_from_flags(flags, model, isa)


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
        }


def select_backend(
    requested: Backend,
    caps: CpuCapabilities,
    have_ipex: bool,
    compile_training: bool = False,
) -> BackendChoice:
    """Pick the backend and precision from what was asked, the CPU and what is installed."""
    bf16 = caps.has_bf16_unit
    precision = (
        "BF16 (the CPU has AMX or AVX512_BF16)"
        if bf16
        else "FP32 (no AMX/AVX512_BF16 on this CPU: BF16 would be emulated, measured 3-45x slower, "
        "and IPEX's BF16 prepack asserts)"
    )
    dtype = torch.bfloat16 if bf16 else torch.float32
    if requested == Backend.ipex:
        if not have_ipex:
            raise BackendUnavailable(
                "backend 'ipex' requested but intel_extension_for_pytorch is not installed "
                "(build the IPEX environment with `make ipex-venv` and run from .venv-ipex)"
            )
        return BackendChoice(requested, Backend.ipex, dtype, True, False, f"requested; {precision}")
    if requested == Backend.none:
        return BackendChoice(requested, Backend.none, torch.float32, False, False, "requested: plain FP32 eager")
    if requested == Backend.native:
        return BackendChoice(requested, Backend.native, dtype, True, compile_training, f"requested; {precision}")
    # auto
    if have_ipex and bf16:
        return BackendChoice(
            requested, Backend.ipex, dtype, True, False,
            "auto: IPEX installed and the CPU has a BF16 unit, where ipex.optimize's BF16 kernels pay",
        )
    why = (
        "IPEX is not installed"
        if not have_ipex
        else "IPEX is installed but this CPU has no AMX/AVX512_BF16, and IPEX FP32 showed no measured gain over "
        "native channels_last here"
    )
    return BackendChoice(
        requested, Backend.native, dtype, True, compile_training,
        f"auto: native PyTorch with channels_last (measured faster than FP32 eager on this CPU); {why}; {precision}",
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


def prepare_inference(model: nn.Module, choice: BackendChoice) -> nn.Module:
    """Apply the backend to a model for inference (eval mode)."""
    model = model.eval()
    if choice.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if choice.name == Backend.ipex:
        import intel_extension_for_pytorch as ipex

        model = ipex.optimize(model, dtype=choice.dtype)
    return model


def autocast(choice: BackendChoice) -> AbstractContextManager[object]:
    """BF16 autocast for the native backend on BF16 hardware; nothing otherwise."""
    if choice.bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


# --- runtime tuning -------------------------------------------------------------------

ALLOCATORS = ("libjemalloc.so", "libjemalloc.so.2", "libtcmalloc.so", "libtcmalloc.so.4", "libtcmalloc_minimal.so.4")
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")


def find_allocator(dirs: tuple[str, ...] = LIB_DIRS) -> Path | None:
    for name in ALLOCATORS:
        for d in dirs:
            p = Path(d) / name
            if p.is_file():
                return p
    return None


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
        found = find_allocator()
        if found is None:
            report.not_available["allocator"] = "neither jemalloc nor tcmalloc is installed"
        else:
            report.child_env["LD_PRELOAD"] = f"{found}:{preload}".rstrip(":")
            report.not_available["allocator"] = f"{found} found; preload only applies to launched workers"
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
