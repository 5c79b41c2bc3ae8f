"""The registered model's pyfunc flavour: the version's OpenVINO IR, so `mlflow models serve` runs OpenVINO too.

Self-contained on purpose (imports only numpy and openvino): MLflow copies this one file into the
model (``code/openvino_pyfunc.py``) and loads it as ``loader_module="openvino_pyfunc"``, so loading a
registered version needs neither this project nor torch. Its data is one file, ``openvino_ir.tar``
(the IRs and ``openvino.json``), not a folder: the platform's S3 stand-in (s3rver 3.7.1) does not
list a folder that holds only folders, which would hide a nested model layout from every client.

``mlflow.pyfunc.load_model("models:/NAME/VERSION")`` runs the INT8 IR when it passed the accuracy gate,
else the FP32 IR (precision hint ``f32``), without measuring (the platform's own serving measures
every variant and serves the fastest). Input: float32 images ``(N, 3, H, W)`` preprocessed as in
training; output: the logits ``(N, 2)``.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

ARCHIVE = "openvino_ir.tar"


class OpenVinoModel:
    def __init__(self, archive: Path) -> None:
        import openvino as ov

        self._dir = tempfile.TemporaryDirectory(prefix="mlops-pyfunc-")
        with tarfile.open(archive) as tar:
            tar.extractall(self._dir.name, filter="data")
        root = Path(self._dir.name)
        meta = json.loads((root / "openvino.json").read_text())
        name = meta["int8"] or meta["fp32"]
        self.variant = "openvino_int8" if meta["int8"] else "openvino_fp32"
        core = ov.Core()
        compiled = core.compile_model(core.read_model(str(root / name)), "CPU",
                                      {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
        self._compiled = compiled
        self._logits = compiled.output("logits")
        self._local = threading.local()  # an infer request serves one call at a time: one per thread

    def get_raw_model(self) -> OpenVinoModel:
        """What ``PyFuncModel.get_raw_model()`` returns (``.variant`` says which IR runs)."""
        return self

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:  # noqa: ANN401
        x = np.ascontiguousarray(np.asarray(model_input, dtype=np.float32))
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return np.array(request.infer({0: x})[self._logits])


def _load_pyfunc(data_path: str) -> OpenVinoModel:
    """MLflow's loader hook: ``data_path`` is the model's copy of :data:`ARCHIVE`."""
    return OpenVinoModel(Path(data_path))
