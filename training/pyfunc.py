"""The registered model's pyfunc flavour: OpenVINO, so `mlflow models serve` on a version runs the IR too.

``mlflow.pyfunc.load_model("models:/NAME/VERSION")`` gives :class:`OpenVinoModel`: the version's INT8 IR
when it passed the accuracy gate, else its FP32 IR (precision hint ``f32``), with the eager FP32
model from ``model_state`` only where OpenVINO cannot be imported. Input: float32 images
``(N, 3, H, W)`` preprocessed as in training; output: the logits ``(N, 2)``. Unlike the platform's
serving (which measures every variant on the host and serves the fastest), the flavour takes the
IR without measuring: it has no load-time budget to spend.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch

log = logging.getLogger(__name__)

ARTIFACTS = ("openvino", "model_state")


class OpenVinoModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:  # noqa: ANN401 - mlflow's PythonModelContext
        from training.model import CustomVGG, ModelConfig

        self.runner = None
        self.variant = "fp32"
        try:
            ir_dir = Path(context.artifacts["openvino"])
            from training import openvino as tov

            meta = json.loads((ir_dir / tov.META).read_text())
            name = meta["int8"] or meta["fp32"]
            self.runner = tov.CompiledIR(tov.read_ir(ir_dir / name), "f32").logits
            self.variant = "openvino_int8" if meta["int8"] else "openvino_fp32"
        except (ImportError, FileNotFoundError, KeyError) as exc:
            log.warning("No OpenVINO or no IRs (%s): the pyfunc runs the eager FP32 model", exc)
        state = Path(context.artifacts["model_state"])
        if self.runner is None:
            model = CustomVGG(ModelConfig(**json.loads((state / "model_config.json").read_text())))
            model.load_state_dict(torch.load(state / "state_dict.pt", map_location="cpu", weights_only=True))
            self.runner = model.eval()

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:  # noqa: ANN401
        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            return self.runner(x).numpy()  # type: ignore[misc]
