"""Probes: each optimized path runs once on a tiny network before it may be chosen.

A CPU flag is not proof that a library's kernel runs there (IPEX 2.8's BF16 convolution failed on
an AMD EPYC that reports AVX512_BF16), and a kernel that runs may still be wrong (INT8 kernels
without VNNI saturate with full-range activations). So a path is chosen only after it ran here on a
small convolution + linear network and agreed with FP32:

==================  ==============================================================  ===============
path                what runs                                                       tolerance
==================  ==============================================================  ===============
``native_bf16``     BF16 autocast, channels_last, forward + one backward            ``BF16_TOL``
``ipex_bf16``       ``ipex.optimize(dtype=bfloat16)`` for inference, and a training  ``BF16_TOL``
                    step under it
``int8``            PT2E INT8 (full-range activations), inductor-compiled           ``INT8_TOL``
``int8_reduce_range``  the same with 7-bit activations                              ``INT8_TOL``
==================  ==============================================================  ===============

The tolerance is the largest absolute difference from FP32 divided by the largest FP32 output.
The INT8 network has same-sign weights and bright inputs, the case that pushes u8 x s8 pair sums
past 16 bits on CPUs without VNNI (measured with oneDNN limited to AVX2: full range 0.27 off,
7-bit 0.008). Results are cached per process and per detected ISA class; a failure is a result
(with its reason), never an exception.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from training.cpu import CpuCapabilities, IsaClass, detect_capabilities

log = logging.getLogger(__name__)

BF16_TOL = 0.03
INT8_TOL = 0.05
PATHS = ("native_bf16", "ipex_bf16", "int8", "int8_reduce_range")


@dataclass(frozen=True)
class ProbeResult:
    path: str
    ok: bool
    detail: str
    error: float | None = None
    """Max |path - FP32| / max |FP32| on the probe batch (None when the path did not run)."""
    seconds: float = 0.0

    def describe(self) -> str:
        err = "" if self.error is None else f" (relative error {self.error:.4f})"
        return f"{'passed' if self.ok else 'failed'}: {self.detail}{err}"


def _network(same_sign: bool) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2),
    )
    if same_sign:
        with torch.no_grad():
            for conv in (net[0], net[2]):
                conv.weight.copy_(conv.weight.abs() + 0.05)
                conv.bias.zero_()
    return net


def _inputs() -> torch.Tensor:
    return torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.2 + 0.8


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def _native_bf16() -> tuple[float, str]:
    net = _network(same_sign=False).to(memory_format=torch.channels_last)
    x = _inputs().contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = net.eval()(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x)
    net.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = net(x).float().square().mean()
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    if any(g is None or not torch.isfinite(g).all() for g in grads):
        raise RuntimeError("the BF16 backward pass gave missing or non-finite gradients")
    return _relative_error(out, ref), "BF16 autocast forward and backward"


def _ipex_bf16() -> tuple[float, str]:
    import intel_extension_for_pytorch as ipex

    net = _network(same_sign=False).eval().to(memory_format=torch.channels_last)
    x = _inputs().contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = net(x)
        optimized = ipex.optimize(_network(same_sign=False).eval().to(memory_format=torch.channels_last),
                                  dtype=torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as training.optimize.Bf16Autocast runs it
            out = optimized(x)
    train_net = _network(same_sign=False).train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(train_net.parameters(), lr=0.01)
    train_net, opt = ipex.optimize(train_net, optimizer=opt, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = train_net(x).float().square().mean()
    loss.backward()
    opt.step()
    return _relative_error(out, ref), f"ipex.optimize BF16 (IPEX {ipex.__version__}) inference and a training step"


def _int8(reduce_range: bool) -> tuple[float, str]:
    from training.quantize import compile_for_inference, quantize_pt2e

    net = _network(same_sign=True).eval()
    x = _inputs()
    compiled = compile_for_inference(quantize_pt2e(net, [x], x[:2], reduce_range=reduce_range))
    with torch.no_grad():
        ref, out = net(x), compiled(x)
    bits = "7-bit" if reduce_range else "full-range"
    return _relative_error(out, ref), f"PT2E INT8 with {bits} activations, inductor-compiled"


_RUNNERS: dict[str, tuple[Callable[[], tuple[float, str]], float]] = {
    "native_bf16": (_native_bf16, BF16_TOL),
    "ipex_bf16": (_ipex_bf16, BF16_TOL),
    "int8": (lambda: _int8(False), INT8_TOL),
    "int8_reduce_range": (lambda: _int8(True), INT8_TOL),
}


_results: dict[tuple[str, IsaClass], ProbeResult] = {}


def _run(path: str, isa: IsaClass) -> ProbeResult:
    runner, tolerance = _RUNNERS[path]
    start = time.perf_counter()
    try:
        # The probe seeds and draws from torch's global RNG: leave the caller's stream as it was (training
        # seeds, then chooses its backend, then initialises the model).
        with torch.random.fork_rng(devices=[]):
            error, detail = runner()
    except Exception as exc:  # noqa: BLE001 - a path that cannot run here is a result, not a crash
        result = ProbeResult(path, False, f"raised {type(exc).__name__}: {str(exc).strip()[:300]}",
                             None, time.perf_counter() - start)
    else:
        ok = error <= tolerance
        detail = f"{detail} {'within' if ok else 'beyond'} {tolerance} of FP32"
        result = ProbeResult(path, ok, detail, error, time.perf_counter() - start)
    (log.info if result.ok else log.warning)("Probe %s on %s: %s", path, isa, result.describe())
    return result


def probe(path: str, caps: CpuCapabilities | None = None) -> ProbeResult:
    """Run (once per process and ISA class) the probe of ``path``; see the module docstring."""
    if path not in _RUNNERS:
        raise ValueError(f"unknown probe {path!r} (known: {', '.join(PATHS)})")
    key = (path, (caps or detect_capabilities()).isa)
    if key not in _results:
        _results[key] = _run(*key)
    return _results[key]


def ran(caps: CpuCapabilities) -> dict[str, str]:
    """The probes this process has run for this ISA class: path -> result sentence."""
    return {path: result.describe() for (path, isa), result in _results.items() if isa == caps.isa}


def clear_cache() -> None:
    _results.clear()


def int8_reduce_range(caps: CpuCapabilities | None = None) -> tuple[bool | None, str]:
    """Whether PT2E INT8 needs 7-bit activations here: False (full range passed), True (only 7-bit
    passed) or None (neither: INT8 is not usable here); with the reason."""
    full = probe("int8", caps)
    if full.ok:
        return False, f"full-range INT8 probe {full.describe()}"
    reduced = probe("int8_reduce_range", caps)
    if reduced.ok:
        return True, f"full-range INT8 probe {full.describe()}; 7-bit {reduced.describe()}"
    return None, f"full-range INT8 probe {full.describe()}; 7-bit {reduced.describe()}"
