from __future__ import annotations

import pytest
import torch

from training.cpu import capabilities_from_flags, parse_cpu_flags
from training.optimize import (
    BF16_WITHOUT_AMX,
    Backend,
    BackendUnavailable,
    interleaved_latencies_ms,
    select_backend,
    tune_runtime,
)
from training.probe import ProbeResult

AVX2 = capabilities_from_flags({"avx", "avx2", "fma"})
SPR = capabilities_from_flags({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile"})
CPX = capabilities_from_flags({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"})


def passing(path: str) -> ProbeResult:
    return ProbeResult(path, True, "fake probe that passes", 0.0)


def test_parse_cpuinfo() -> None:
    flags, model = parse_cpu_flags("model name\t: Xeon\nflags\t\t: fpu avx2 amx_tile\n\nflags : other\n")
    assert model == "Xeon" and flags == {"fpu", "avx2", "amx_tile"}
    caps = capabilities_from_flags(flags)
    assert caps.avx2 and caps.amx and not caps.avx512


def test_auto_on_avx2_is_native_fp32_even_with_ipex() -> None:
    for have_ipex in (False, True):
        choice = select_backend(Backend.auto, AVX2, have_ipex, run_probe=passing)
        assert choice.name == Backend.native and choice.dtype == torch.float32 and choice.channels_last
        assert "AMX/AVX512_BF16" in choice.reason


def test_auto_with_amx_and_passing_probes() -> None:
    assert select_backend(Backend.auto, SPR, True, run_probe=passing).name == Backend.ipex
    assert select_backend(Backend.auto, SPR, True, run_probe=passing).dtype == torch.bfloat16
    native = select_backend(Backend.auto, SPR, False, run_probe=passing)
    assert native.name == Backend.native and native.dtype == torch.bfloat16


def test_auto_with_avx512_bf16_but_no_amx_is_fp32() -> None:
    """Measured: BF16 training 0.92x FP32 with AVX512_BF16 kernels and no AMX (see BF16_WITHOUT_AMX)."""
    for have_ipex in (False, True):
        choice = select_backend(Backend.auto, CPX, have_ipex, run_probe=passing)
        assert choice.name == Backend.native and choice.dtype == torch.float32 and BF16_WITHOUT_AMX in choice.reason


def test_ipex_requested_but_missing_is_an_error() -> None:
    with pytest.raises(BackendUnavailable, match="make ipex-venv"):
        select_backend(Backend.ipex, SPR, False)


def test_ipex_on_avx2_falls_back_to_fp32() -> None:
    choice = select_backend(Backend.ipex, AVX2, True, run_probe=passing)
    assert choice.name == Backend.ipex and choice.dtype == torch.float32 and "FP32" in choice.reason


def test_none_is_plain_eager() -> None:
    choice = select_backend(Backend.none, SPR, True, run_probe=passing)
    assert choice.dtype == torch.float32 and not choice.channels_last and not choice.compile


def test_tuning_reports_what_was_applied() -> None:
    before = torch.get_num_threads()
    try:
        report = tune_runtime(threads=1)
        assert torch.get_num_threads() == 1
        params = report.as_params()
        assert params["threads"] == 1 and report.child_env["OMP_NUM_THREADS"] == "1"
        assert "allocator" in report.not_available or "LD_PRELOAD" in report.applied
    finally:
        torch.set_num_threads(before)


def test_latencies_are_taken_in_turn_each_function_on_its_own_inputs() -> None:
    calls: list[tuple[str, float]] = []
    a_inputs, b_inputs = torch.arange(3.0).view(3, 1), torch.arange(10.0, 12.0).view(2, 1)
    fns = [lambda x: calls.append(("a", float(x))), lambda x: calls.append(("b", float(x)))]
    samples = interleaved_latencies_ms(fns, [a_inputs, b_inputs], iterations=4, warmup=2)
    assert [len(s) for s in samples] == [4, 4] and all(ms >= 0 for s in samples for ms in s)
    assert calls[:4] == [("a", 0.0), ("a", 0.0), ("b", 10.0), ("b", 10.0)]  # warm-up on the first image
    assert calls[4:] == [("a", 0.0), ("b", 10.0), ("a", 1.0), ("b", 11.0), ("a", 2.0), ("b", 10.0),
                         ("a", 0.0), ("b", 11.0)]
