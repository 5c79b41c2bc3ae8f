"""INT8 post-training static quantization and its accuracy gate.

- Stock PyTorch: PT2E with torchao's ``X86InductorQuantizer`` (``torch.export`` → prepare →
  calibrate on training images → convert), run through ``torch.compile`` with inductor
  freezing, which lowers the quantize/dequantize patterns to real INT8 kernels.
  The artifact is the converted program re-exported and written with ``torch.export.save``
  (``model_int8.pt2``, dynamic batch dimension). Loading it needs torch + torchao only (no IPEX):
  :func:`load_pt2e` imports torchao first so the ``quantized_decomposed`` ops are registered.
- IPEX: ``ipex.quantization.prepare``/``convert`` with the default static qconfig, then
  TorchScript trace + freeze. That artifact needs IPEX, so it is only benchmarked and
  validated, never logged for serving.

A variant is accepted only when its validation accuracy is at most ``max_drop_points``
(percentage points) below FP32's; :func:`check_accuracy_gate` raises otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

Predictor = Callable[[torch.Tensor], torch.Tensor]


class AccuracyGateError(RuntimeError):
    """The INT8 model lost more accuracy than allowed."""


@dataclass(frozen=True)
class GateResult:
    fp32_accuracy: float
    int8_accuracy: float
    max_drop_points: float

    @property
    def drop_points(self) -> float:
        return 100.0 * (self.fp32_accuracy - self.int8_accuracy)

    @property
    def passed(self) -> bool:
        return self.drop_points <= self.max_drop_points + 1e-9


def check_accuracy_gate(fp32_accuracy: float, int8_accuracy: float, max_drop_points: float) -> GateResult:
    """Accuracies in [0, 1]; raises :class:`AccuracyGateError` with a sentence when INT8 loses too much."""
    result = GateResult(fp32_accuracy, int8_accuracy, max_drop_points)
    if not result.passed:
        raise AccuracyGateError(
            f"INT8 model refused: validation accuracy {100 * int8_accuracy:.2f}% is "
            f"{result.drop_points:.2f} points below FP32's {100 * fp32_accuracy:.2f}% "
            f"(allowed drop: {max_drop_points:.2f} points)."
        )
    log.info(
        "INT8 accepted: accuracy %.2f%% vs FP32 %.2f%% (drop %.2f points, allowed %.2f)",
        100 * int8_accuracy, 100 * fp32_accuracy, result.drop_points, max_drop_points,
    )
    return result


def _import_pt2e() -> None:
    # Importing torchao registers the quantized_decomposed ops a saved INT8 program refers to.
    import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401


def _batch_dim() -> dict[int, torch.export.Dim]:
    return {0: torch.export.Dim("batch", min=1, max=4096)}


@torch.no_grad()
def quantize_pt2e(
    model: nn.Module, calibration: Iterable[torch.Tensor], example: torch.Tensor, reduce_range: bool
) -> torch.fx.GraphModule:
    """Post-training static INT8 via PT2E and the X86 inductor quantizer (a q/dq graph, eager-runnable).

    ``reduce_range`` quantizes activations to 7 bits; callers pass what the INT8 probe proved here
    (:func:`training.probe.int8_reduce_range`: full range when its compiled kernels agree with FP32,
    else 7-bit; neither: INT8 is not used). Without VNNI the INT8
    convolution kernels inductor lowers to multiply-add through 16-bit intermediates, which
    saturate with full-range u8 activations: on an AVX2 machine the compiled model's accuracy fell
    from 0.914 (q/dq graph run eagerly) to 0.609, while the eager graph, which does not use those
    kernels, hid the fault.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    model = model.eval()
    captured = torch.export.export(model, (example,), dynamic_shapes=(_batch_dim(),)).module()
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config(reduce_range=reduce_range))
    prepared = prepare_pt2e(captured, quantizer)
    n = 0
    for batch in calibration:
        prepared(batch)
        n += batch.shape[0]
    log.info("PT2E INT8: calibrated on %d images (reduce_range=%s)", n, reduce_range)
    return convert_pt2e(prepared)


def compile_for_inference(model: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``torch.compile`` with inductor freezing (constant-folds weights; lowers INT8 q/dq to kernels)."""
    import torch._inductor.config as inductor_config

    # Global on purpose: compilation happens at the first call, and `options={"freezing": True}`
    # does not reach the pass that lowers the INT8 weight prepacking (qconv_prepack fails on fake tensors).
    inductor_config.freezing = True
    return torch.compile(model, dynamic=False)


def save_pt2e(converted: torch.fx.GraphModule, example: torch.Tensor, path: Path) -> Path:
    """Write the INT8 program with ``torch.export.save`` (loadable without IPEX)."""
    with torch.no_grad():
        program = torch.export.export(converted, (example,), dynamic_shapes=(_batch_dim(),))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path)
    return path


def load_pt2e(path: Path) -> nn.Module:
    """Load a saved INT8 program as a callable module (run it through compile_for_inference for speed)."""
    _import_pt2e()
    return torch.export.load(path).module()


@torch.no_grad()
def quantize_ipex(
    model: nn.Module, calibration: Iterable[torch.Tensor], example: torch.Tensor
) -> torch.jit.ScriptModule:
    """Static INT8 with ``ipex.quantization`` (needs IPEX to run; benchmarked, not shipped)."""
    import intel_extension_for_pytorch as ipex
    from intel_extension_for_pytorch.quantization import convert, prepare

    model = model.eval().to(memory_format=torch.channels_last)
    example = example.contiguous(memory_format=torch.channels_last)
    qconfig = ipex.quantization.default_static_qconfig_mapping
    prepared = prepare(model, qconfig, example_inputs=example, inplace=False)
    for batch in calibration:
        prepared(batch.contiguous(memory_format=torch.channels_last))
    converted = convert(prepared)
    traced = torch.jit.trace(converted, example)
    traced = torch.jit.freeze(traced)
    traced(example)
    traced(example)
    return traced
