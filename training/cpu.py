"""What this CPU offers: flags from ``/proc/cpuinfo``, the ISA class, and an override for tests.

Flags only say what the CPU *claims*; whether a library's kernels run correctly there is decided by
:mod:`training.probe`. The ISA classes, lowest first, are ``avx2``, ``avx512``, ``avx512_vnni``,
``avx512_bf16`` and ``amx`` (``baseline`` below AVX2).

Two ways to see another class on this host:

- ``MLOPS_CPU_ISA_OVERRIDE=<class>`` (setting ``cpu_isa_override``): detection reports exactly that
  class's flags (higher ones hidden, missing lower ones added). Used alone it changes only what the
  platform *decides*; the probes still run this host's kernels, so a path the host cannot run fails
  its probe and is skipped.
- :func:`emulation_environment` adds the variables that really limit the kernels (oneDNN's
  ``ONEDNN_MAX_CPU_ISA``, ATen's ``ATEN_CPU_CAPABILITY``) when the class is at or below the host's;
  they must be set before the process starts. Without an override, detection also honours
  ``ONEDNN_MAX_CPU_ISA``, so the reported class never claims kernels oneDNN was told not to use;
  an override with a lower oneDNN limit emulates a CPU whose flags claim more than its kernels do.
"""

from __future__ import annotations

import getpass
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import torch

from mlops.settings import IsaClass, get_settings

ISA_CLASSES: tuple[IsaClass, ...] = get_args(IsaClass)

# The flags each class adds to the one below it (what an override reports; what a mask hides).
_CLASS_FLAGS: dict[str, frozenset[str]] = {
    "baseline": frozenset(),
    "avx2": frozenset({"avx", "avx2", "fma", "f16c"}),
    "avx512": frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
    "avx512_vnni": frozenset({"avx512_vnni"}),
    "avx512_bf16": frozenset({"avx512_bf16"}),
    "amx": frozenset({"amx_bf16", "amx_tile", "amx_int8"}),
}
# The flags that must all be present for a class (on top of the class below).
_CLASS_KEYS: dict[str, frozenset[str]] = {
    "avx2": frozenset({"avx2"}), "avx512": frozenset({"avx512f"}), "avx512_vnni": frozenset({"avx512_vnni"}),
    "avx512_bf16": frozenset({"avx512_bf16"}), "amx": frozenset({"amx_tile"}),
}
# oneDNN's names for the same limits (ONEDNN_MAX_CPU_ISA) and ATen's (ATEN_CPU_CAPABILITY).
_ONEDNN_ISA: dict[str, str] = {
    "baseline": "SSE41", "avx2": "AVX2", "avx512": "AVX512_CORE", "avx512_vnni": "AVX512_CORE_VNNI",
    "avx512_bf16": "AVX512_CORE_BF16", "amx": "AVX512_CORE_AMX",
}
_ONEDNN_TO_CLASS: dict[str, IsaClass] = {
    "SSE41": "baseline", "AVX": "baseline", "AVX2": "avx2", "AVX2_VNNI": "avx2", "AVX2_VNNI_2": "avx2",
    "AVX512_CORE": "avx512", "AVX512_CORE_VNNI": "avx512_vnni", "AVX512_CORE_BF16": "avx512_bf16",
    "AVX10_1_512": "avx512_bf16", "AVX512_CORE_FP16": "avx512_bf16", "AVX512_CORE_AMX": "amx",
    "AVX512_CORE_AMX_FP16": "amx", "AVX10_1_512_AMX": "amx", "AVX10_1_512_AMX_FP16": "amx",
    "AVX10_2_512": "amx", "AVX10_2_512_AMX_2": "amx", "ALL": "amx",
}


def _rank(isa: str) -> int:
    return ISA_CLASSES.index(isa)  # type: ignore[arg-type]


def _isa_flags(flags: set[str]) -> set[str]:
    """The flags that decide a class (hidden by a mask): every AVX-512, AMX and VNNI flag, and AVX2's."""
    return {f for f in flags if f.startswith(("avx512", "amx", "avx_vnni"))} | (flags & _CLASS_FLAGS["avx2"])


def isa_class(flags: set[str]) -> IsaClass:
    """The highest class whose key flags the CPU has, as have all the classes below it."""
    best: IsaClass = "baseline"
    for isa in ISA_CLASSES[1:]:
        if not _CLASS_KEYS[isa] <= flags:
            break
        best = isa
    return best


def flags_of_class(isa: IsaClass, host_flags: set[str] = frozenset()) -> set[str]:  # type: ignore[assignment]
    """``host_flags`` with its ISA flags replaced by exactly those of ``isa`` and every class below it."""
    keep = set(host_flags) - _isa_flags(set(host_flags))
    for lower in ISA_CLASSES[: _rank(isa) + 1]:
        keep |= _CLASS_FLAGS[lower]
    return keep


def cap_flags(flags: set[str], isa: IsaClass) -> set[str]:
    """``flags`` with everything above ``isa`` hidden (never adds a flag the CPU lacks)."""
    return flags & flags_of_class(isa, flags) if _rank(isa_class(flags)) > _rank(isa) else set(flags)


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
    isa: IsaClass = "baseline"
    """The ISA class detection settled on (after any override or oneDNN limit)."""
    limited_by: str = ""
    """Why ``isa`` is not the CPU's own class (an override or ONEDNN_MAX_CPU_ISA); empty when it is."""

    @property
    def has_bf16_unit(self) -> bool:
        """Hardware BF16 instructions (AMX or AVX512_BF16)."""
        return self.amx or self.avx512_bf16

    def as_params(self) -> dict[str, object]:
        return {
            "cpu_model": self.model_name,
            "cpu_isa": self.isa,
            "cpu_isa_limited_by": self.limited_by or "none",
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


def capabilities_from_flags(
    flags: set[str], model_name: str = "", torch_isa: str = "", limited_by: str = ""
) -> CpuCapabilities:
    return CpuCapabilities(
        avx2="avx2" in flags,
        avx512="avx512f" in flags,
        avx512_bf16="avx512_bf16" in flags,
        amx=bool({"amx_bf16", "amx_tile"} & flags),
        vnni=bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags),
        model_name=model_name,
        torch_isa=torch_isa,
        isa=isa_class(flags),
        limited_by=limited_by,
    )


def onednn_limit(environ: dict[str, str] | os._Environ[str] = os.environ) -> IsaClass | None:
    """The class ``ONEDNN_MAX_CPU_ISA`` limits oneDNN's kernels to, if set (unknown values: none)."""
    value = environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return _ONEDNN_TO_CLASS.get(value)


def detect_capabilities(
    cpuinfo: Path = Path("/proc/cpuinfo"), override: IsaClass | None = None, environ: dict[str, str] | None = None
) -> CpuCapabilities:
    """This CPU's capabilities; ``override`` (default: setting ``cpu_isa_override``) reports another class."""
    if override is None:
        override = get_settings().cpu_isa_override
    try:
        flags, model = parse_cpu_flags(cpuinfo.read_text())
    except OSError:
        flags, model = set(), platform.processor()
    try:
        torch_isa = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - informational only
        torch_isa = "unknown"
    limited_by = ""
    limit = onednn_limit(os.environ if environ is None else environ)
    if override is not None:  # deliberate: wins even over a lower oneDNN limit (a CPU that claims more)
        flags = flags_of_class(override, flags)
        limited_by = f"MLOPS_CPU_ISA_OVERRIDE={override}"
    elif limit is not None and _rank(isa_class(flags)) > _rank(limit):
        flags = cap_flags(flags, limit)
        limited_by = f"ONEDNN_MAX_CPU_ISA={_ONEDNN_ISA[limit]}"
    return capabilities_from_flags(flags, model, torch_isa, limited_by)


def host_isa(cpuinfo: Path = Path("/proc/cpuinfo")) -> IsaClass:
    """The CPU's own class, ignoring every override and limit."""
    try:
        return isa_class(parse_cpu_flags(cpuinfo.read_text())[0])
    except OSError:
        return "baseline"


def emulation_environment(isa: IsaClass, host: IsaClass | None = None) -> dict[str, str]:
    """Variables that make a new process see (and, at or below the host's class, really run) ``isa``.

    Above the host's class only the override is set: the kernels cannot be raised, so the probes
    run the host's own kernels and refuse what it cannot do (``ATEN_CPU_CAPABILITY`` above the
    hardware would crash ATen with illegal instructions).
    """
    env = {"MLOPS_CPU_ISA_OVERRIDE": isa}
    if _rank(isa) <= _rank(host or host_isa()):
        env["ONEDNN_MAX_CPU_ISA"] = _ONEDNN_ISA[isa]
        env["ATEN_CPU_CAPABILITY"] = "avx512" if _rank(isa) >= _rank("avx512") else (
            "avx2" if isa == "avx2" else "default")
        # inductor's on-disk cache does not key on ATEN_CPU_CAPABILITY: with the shared cache, a training
        # graph compiled for AVX-512 was reused under avx2 and failed (scatter_reduce index out of bounds).
        env["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / f"torchinductor_{getpass.getuser()}_{isa}")
    return env
