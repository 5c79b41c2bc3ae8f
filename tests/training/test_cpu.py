"""CPU classes, the detection override, and the choice each class gets: on any x86 host.

The policy tests use fake probes; the emulation tests run the real probes in a fresh interpreter
whose kernels are limited with oneDNN's and ATen's own variables (``emulation_environment``)
wherever the class is at or below this host's. Above it only the detection override applies, so
the assertions there are about consistency (a path is chosen iff its probe passed here), never
about what this host happens to do.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.cpu import (
    ISA_CLASSES,
    capabilities_from_flags,
    detect_capabilities,
    emulation_environment,
    host_isa,
    isa_class,
)
from training.optimize import BF16_WITHOUT_AMX, Backend, select_backend
from training.probe import ProbeResult, clear_cache, probe

# Flags as /proc/cpuinfo shows them on the CPUs this project has met (abridged to the ISA flags).
EPYC_AVX2 = {"sse4_2", "avx", "avx2", "fma", "f16c"}
EPYC_AVX512 = EPYC_AVX2 | {"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512cd", "avx512_vnni", "avx_vnni",
                           "avx512_bf16", "avx512ifma", "avx512vbmi"}
XEON_SPR = EPYC_AVX512 | {"avx512_fp16", "amx_bf16", "amx_tile", "amx_int8"}
CPUINFO = "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {}\n"


def _cpuinfo(tmp_path: Path, flags: set[str]) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(" ".join(sorted(flags))))
    return path


def test_isa_classes_of_the_cpus_seen() -> None:
    assert isa_class(EPYC_AVX2) == "avx2"
    assert isa_class(EPYC_AVX512) == "avx512_bf16"
    assert isa_class(XEON_SPR) == "amx"
    assert isa_class({"sse4_2"}) == "baseline"
    caps = capabilities_from_flags(EPYC_AVX2)
    assert not (caps.vnni or caps.has_bf16_unit or caps.avx512)


@pytest.mark.parametrize("isa", ISA_CLASSES)
def test_override_reports_exactly_that_class(tmp_path: Path, isa: str) -> None:
    for host in (EPYC_AVX2, XEON_SPR):  # down from a big host, up from a small one
        caps = detect_capabilities(_cpuinfo(tmp_path, host), override=isa, environ={})  # type: ignore[arg-type]
        assert caps.isa == isa and caps.limited_by == f"MLOPS_CPU_ISA_OVERRIDE={isa}"
        assert caps.amx == (isa == "amx")
        assert caps.has_bf16_unit == (isa in ("avx512_bf16", "amx"))
        assert caps.vnni == (isa in ("avx512_vnni", "avx512_bf16", "amx"))
        assert caps.model_name == "Test CPU"


def test_detection_honours_a_onednn_limit(tmp_path: Path) -> None:
    spr = _cpuinfo(tmp_path, XEON_SPR)
    caps = detect_capabilities(spr, environ={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert caps.isa == "avx2" and not caps.vnni and caps.limited_by == "ONEDNN_MAX_CPU_ISA=AVX2"
    assert detect_capabilities(spr, environ={"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"}).isa == "avx512_bf16"
    # A limit above the CPU changes nothing; a deliberate override wins (flags that claim more than kernels do).
    assert detect_capabilities(_cpuinfo(tmp_path, EPYC_AVX2), environ={"ONEDNN_MAX_CPU_ISA": "ALL"}).isa == "avx2"
    assert detect_capabilities(spr, override="amx", environ={"ONEDNN_MAX_CPU_ISA": "AVX2"}).isa == "amx"


def test_override_is_a_setting(patched_environ, tmp_path: Path) -> None:  # noqa: ANN001
    with patched_environ({"MLOPS_CPU_ISA_OVERRIDE": "avx512"}):
        assert detect_capabilities(_cpuinfo(tmp_path, XEON_SPR), environ={}).isa == "avx512"


def test_emulation_limits_kernels_only_at_or_below_the_host() -> None:
    avx2 = emulation_environment("avx2", host="amx")
    assert {k: avx2[k] for k in ("MLOPS_CPU_ISA_OVERRIDE", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")} == {
        "MLOPS_CPU_ISA_OVERRIDE": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    assert avx2["TORCHINDUCTOR_CACHE_DIR"].endswith("_avx2")  # kernels compiled for another ISA are not reused
    assert emulation_environment("avx512_bf16", host="amx")["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE_BF16"
    # Raising ATen above the hardware would crash it with illegal instructions: only the override.
    assert emulation_environment("amx", host="avx2") == {"MLOPS_CPU_ISA_OVERRIDE": "amx"}


# --- the policy, with fake probes ------------------------------------------------------

SPR = capabilities_from_flags(XEON_SPR)
ZEN4 = capabilities_from_flags(EPYC_AVX512)


def _probes(**ok: bool):  # noqa: ANN202
    calls: list[str] = []

    def run(path: str) -> ProbeResult:
        calls.append(path)
        return ProbeResult(path, ok[path], "fake probe", 0.0 if ok[path] else None)

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_a_failed_ipex_probe_falls_back_to_native_bf16() -> None:
    run = _probes(ipex_bf16=False, native_bf16=True)
    choice = select_backend(Backend.auto, SPR, True, run_probe=run)
    assert choice.name == Backend.native and choice.dtype == torch.bfloat16
    assert run.calls == ["ipex_bf16", "native_bf16"]
    assert choice.probes["ipex_bf16"].startswith("failed") and "ipex_bf16 probe failed" in choice.reason
    assert choice.as_params()["probe_ipex_bf16"].startswith("failed")


def test_failed_probes_fall_back_to_fp32_never_a_crash() -> None:
    assert select_backend(Backend.auto, SPR, True, run_probe=_probes(ipex_bf16=False, native_bf16=False)).dtype \
        == torch.float32
    requested = select_backend(Backend.ipex, SPR, True, run_probe=_probes(ipex_bf16=False))
    assert requested.name == Backend.ipex and requested.dtype == torch.float32 and "probe failed" in requested.reason
    native = select_backend(Backend.native, SPR, False, run_probe=_probes(native_bf16=False))
    assert native.dtype == torch.float32


def test_bf16_without_amx_stays_fp32_without_probing() -> None:
    run = _probes()
    for have_ipex in (False, True):
        choice = select_backend(Backend.auto, ZEN4, have_ipex, run_probe=run)
        assert choice.name == Backend.native and choice.dtype == torch.float32
        assert BF16_WITHOUT_AMX in choice.reason
    assert run.calls == []


# --- the real probes under emulation ---------------------------------------------------

REPORT = """
import json
from training.cpu import detect_capabilities
from training.optimize import Backend, select_backend
from training.probe import int8_reduce_range, probe
caps = detect_capabilities()
choice = select_backend(Backend.auto, caps, False)
reduce_range, why = int8_reduce_range(caps)
print(json.dumps({"isa": caps.isa, "dtype": str(choice.dtype), "reason": choice.reason, "probes": choice.probes,
                  "int8_reduce_range": reduce_range, "int8_why": why, "torch_isa": caps.torch_isa}))
"""


@pytest.mark.slow
def test_avx2_choice_on_this_host(run_in_cpu_class) -> None:  # noqa: ANN001
    """An AVX2-only CPU: FP32 (no probe), and INT8 with 7-bit activations because full range saturates."""
    env = emulation_environment("avx2")
    report = run_in_cpu_class(REPORT, env)
    assert report["isa"] == "avx2" and report["dtype"] == "torch.float32"
    assert "AMX/AVX512_BF16" in report["reason"] and report["probes"] == {}
    if "ONEDNN_MAX_CPU_ISA" in env:  # real AVX2 kernels (every x86 host this suite runs on has AVX2)
        assert report["torch_isa"] == "AVX2"
        assert report["int8_reduce_range"] is True, report["int8_why"]
        assert "full-range INT8 probe failed" in report["int8_why"]
    else:
        assert report["int8_reduce_range"] is not None, report["int8_why"]


@pytest.mark.slow
def test_avx512_bf16_choice_on_this_host(run_in_cpu_class) -> None:  # noqa: ANN001
    """AVX-512 with AVX512_BF16 and VNNI, no AMX (the AMD EPYC): FP32 training, full-range INT8 where real."""
    env = emulation_environment("avx512_bf16")
    report = run_in_cpu_class(REPORT, env)
    assert report["isa"] == "avx512_bf16" and report["dtype"] == "torch.float32"
    assert BF16_WITHOUT_AMX in report["reason"]
    if "ONEDNN_MAX_CPU_ISA" in env:  # VNNI kernels really run: no saturation, full range
        assert report["int8_reduce_range"] is False, report["int8_why"]
    else:
        pytest.skip(f"this host ({host_isa()}) has no AVX-512 kernels; only the detection side was checked")


@pytest.mark.slow
def test_amx_choice_follows_the_probe(run_in_cpu_class) -> None:  # noqa: ANN001
    """A CPU that claims AMX gets BF16 only where the native BF16 probe passed; here it runs for real
    (on a smaller host it runs that host's kernels, still correct, so the choice follows the probe)."""
    report = run_in_cpu_class(REPORT, emulation_environment("amx"))
    assert report["isa"] == "amx"
    passed = str(report["probes"]["native_bf16"]).startswith("passed")
    assert report["dtype"] == ("torch.bfloat16" if passed else "torch.float32"), report["reason"]


def test_probes_run_once_per_process() -> None:
    first = probe("native_bf16")
    assert probe("native_bf16") is first
    assert first.ok == (first.error is not None and first.error <= 0.03)
    with pytest.raises(ValueError, match="unknown probe"):
        probe("fp64")


def test_a_probe_leaves_the_callers_random_stream_alone() -> None:
    """Training seeds, then picks its backend (probes), then initialises the model: a probe must not reseed."""
    clear_cache()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    probe("native_bf16")
    assert torch.equal(torch.rand(3), expected)
