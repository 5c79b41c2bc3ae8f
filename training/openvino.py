"""OpenVINO: the platform's inference runtime (IR export, NNCF INT8, compiled models with per-host hints).

A registered version carries two OpenVINO IRs next to its ``model_state/`` (:data:`ARTIFACT_DIR`):
``model_fp32.xml/.bin`` (weights kept FP32: ``compress_to_fp16=False``) and, when it passed the
accuracy gate, ``model_int8.xml/.bin`` (NNCF post-training quantization, calibrated on training
images). Both have two outputs, ``embedding`` and ``logits`` (monitoring gets the embedding from
the same pass), and a dynamic batch dimension. ``openvino.json`` records what was built and how.

Precision is always explicit: OpenVINO's CPU plugin silently runs FP32 models in BF16 on AMX hosts
unless ``INFERENCE_PRECISION_HINT`` says otherwise. ``bf16`` is only asked for by callers that
checked the CPU has a BF16 unit (:attr:`training.cpu.CpuCapabilities.has_bf16_unit`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from training.model import CustomVGG, EmbedAndClassify
from training.quantize import GateResult

log = logging.getLogger(__name__)

ARTIFACT_DIR = "openvino"
FP32_XML = "model_fp32.xml"
INT8_XML = "model_int8.xml"
META = "openvino.json"
OUTPUTS = ("embedding", "logits")

Precision = Literal["f32", "bf16"]


def _ov() -> Any:
    import openvino as ov

    return ov


def export_ir(model: CustomVGG) -> Any:
    """The FP32 model as an ``ov.Model`` with outputs (embedding, logits) and a dynamic batch."""
    ov = _ov()
    size = model.config.image_size
    wrapped = EmbedAndClassify(model.eval()).eval()
    with torch.no_grad():
        ir = ov.convert_model(wrapped, example_input=torch.zeros(1, 3, size, size),
                              input=[ov.PartialShape([-1, 3, size, size])])
    for out, name in zip(ir.outputs, OUTPUTS, strict=True):
        out.get_tensor().set_names({name})
    return ir


def save_ir(ir: Any, path: Path) -> Path:
    """Write ``path`` (.xml) and its .bin; weights as they are (no FP16 compression)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _ov().save_model(ir, str(path), compress_to_fp16=False)
    return path


def read_ir(path: Path) -> Any:
    return _ov().Core().read_model(str(path))


def compile_config(precision: Precision, threads: int) -> dict[str, object]:
    """Batch-1 latency hints for one inference thread per worker: one stream on ``threads`` cores."""
    return {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": max(1, threads),
            "INFERENCE_PRECISION_HINT": precision}


class CompiledIR:
    """A compiled IR as a torch-in, torch-out callable returning (embedding, logits).

    Not thread-safe (one infer request): each serving worker runs its model on one inference thread.
    """

    def __init__(self, ir: Any, precision: Precision, threads: int | None = None) -> None:
        threads = threads or torch.get_num_threads()
        self.config = compile_config(precision, threads)
        self.compiled = _ov().Core().compile_model(ir, "CPU", self.config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        result = self.request.infer({0: np.ascontiguousarray(x.detach().float().numpy())})
        emb, logits = (torch.from_numpy(np.array(result[i])) for i in range(2))
        return emb, logits

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[1]


@dataclass(frozen=True)
class Int8Result:
    """An NNCF INT8 IR and how it scored against FP32 on the same held-out images."""

    ir: Any
    method: str
    fp32_accuracy: float
    int8_accuracy: float

    @property
    def drop_points(self) -> float:
        return 100.0 * (self.fp32_accuracy - self.int8_accuracy)


def accuracy(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
              batch: int = 64) -> float:
    hits = 0
    for i in range(0, len(images), batch):
        hits += int((fn(images[i : i + batch]).argmax(1) == labels[i : i + batch]).sum())
    return hits / max(1, len(images))


def quantize_ir(fp32_ir: Any, calibration: Sequence[torch.Tensor], val_images: torch.Tensor,
                val_labels: torch.Tensor, max_drop_points: float) -> Int8Result:
    """NNCF post-training INT8, the cheapest method that meets the gate, scored on the validation images.

    Tries fast bias correction, then full bias correction, then NNCF's accuracy-aware quantization
    (which keeps the layers that cost accuracy in FP32). Returns the best attempt even when it fails the
    gate: the caller refuses and records it.
    """
    import nncf

    data = [np.ascontiguousarray(b.numpy()) for b in calibration]
    fp32_accuracy = accuracy(CompiledIR(fp32_ir, "f32").logits, val_images, val_labels)

    def attempt(method: str, build: Callable[[], Any]) -> Int8Result:
        ir = build()
        acc = accuracy(CompiledIR(ir, "f32").logits, val_images, val_labels)
        result = Int8Result(ir, method, fp32_accuracy, acc)
        log.info("OpenVINO INT8 (%s): accuracy %.4f vs FP32 %.4f (drop %.2f points)", method, acc,
                 fp32_accuracy, result.drop_points)
        return result

    dataset = nncf.Dataset(data)
    best = attempt("nncf.quantize, fast bias correction", lambda: quantize_fast(fp32_ir, calibration))
    if GateResult(best.fp32_accuracy, best.int8_accuracy, max_drop_points).passed:
        return best
    again = attempt("nncf.quantize, bias correction",
                    lambda: nncf.quantize(fp32_ir, dataset, subset_size=len(data), fast_bias_correction=False))
    best = min(best, again, key=lambda r: r.drop_points)
    if GateResult(best.fp32_accuracy, best.int8_accuracy, max_drop_points).passed:
        return best
    pairs = [(np.ascontiguousarray(val_images[i : i + 1].numpy()), int(val_labels[i]))
             for i in range(len(val_images))]

    def validate(compiled: Any, items: Any) -> float:
        out = compiled.outputs[1]
        return float(np.mean([int(np.argmax(compiled(x)[out])) == y for x, y in items]))

    aware = attempt("nncf.quantize_with_accuracy_control",
                    lambda: nncf.quantize_with_accuracy_control(
                        fp32_ir, dataset, nncf.Dataset(pairs, lambda p: p[0]), validation_fn=validate,
                        max_drop=max_drop_points / 100.0, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(data)))
    return min(best, aware, key=lambda r: r.drop_points)


def quantize_fast(fp32_ir: Any, calibration: Sequence[torch.Tensor]) -> Any:
    """NNCF post-training INT8 with fast bias correction (seconds; no accuracy check: callers judge it)."""
    import nncf

    data = [np.ascontiguousarray(b.numpy()) for b in calibration]
    return nncf.quantize(fp32_ir, nncf.Dataset(data), subset_size=len(data), fast_bias_correction=True)


@dataclass(frozen=True)
class IrMeta:
    """``openvino.json``: what the IRs are and how the INT8 one was judged."""

    openvino_version: str
    nncf_version: str | None
    image_size: int
    outputs: tuple[str, ...]
    fp32: str
    int8: str | None
    int8_method: str | None
    int8_gate: str
    fp32_val_accuracy: float | None = None
    int8_val_accuracy: float | None = None

    def write(self, directory: Path) -> Path:
        path = directory / META
        path.write_text(json.dumps(asdict(self), indent=2))
        return path


def versions() -> tuple[str, str | None]:
    ov = _ov()
    try:
        import nncf

        nncf_version: str | None = nncf.__version__
    except ImportError:
        nncf_version = None
    return ov.get_version(), nncf_version
