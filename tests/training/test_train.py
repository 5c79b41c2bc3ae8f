"""Training end to end against a local SQLite MLflow store (offline), plus the portability check."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import pytest
from typer.testing import CliRunner

from mlops_cli.cli import app
from training.train import TrainConfig, train

NO_IPEX_PYFUNC = """
import sys
sys.modules["intel_extension_for_pytorch"] = None  # any import of IPEX now fails
import mlflow, numpy as np
m = mlflow.pyfunc.load_model(sys.argv[1])
print(np.asarray(m.predict(np.zeros((2, 3, 32, 32), np.float32))).shape, m.get_raw_model().variant)
# mlflow models serve calls predict from several threads at once
import threading
errors = []
def call():
    for _ in range(20):
        try:
            m.predict(np.zeros((1, 3, 32, 32), np.float32))
        except Exception as exc:
            errors.append(repr(exc))
threads = [threading.Thread(target=call) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print("concurrent errors:", errors[:1] or 0)
"""


def test_short_run_logs_everything(tiny_config: TrainConfig, local_tracking: str) -> None:
    result = train(tiny_config, show_progress=False)
    run = mlflow.get_run(result.run_id)
    for key in ("backend", "backend_reason", "cpu_avx2", "cpu_amx", "cpu_avx512_bf16", "threads",
                "torch_version", "ipex_version", "learning_rate", "tuning_torch_num_threads"):
        assert key in run.data.params, key
    for key in ("train_loss", "val_accuracy", "val_f1", "val_auroc", "train_images_per_s",
                "int8_val_accuracy", "int8_fp32_val_accuracy"):
        assert key in run.data.metrics, key
    history = mlflow.MlflowClient().get_metric_history(result.run_id, "val_accuracy")
    assert len(history) == tiny_config.epochs
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "plots")}
    assert {"plots/training_curves.png", "plots/confusion_matrix.png"} <= artifacts
    assert result.registered_version == "1"
    assert result.int8_artifact == "int8/model_int8.pt2"
    # OpenVINO IRs: FP32 always; INT8 logged only because it passed the gate (recorded either way).
    ov_files = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "openvino")}
    assert {"openvino/model_fp32.xml", "openvino/model_fp32.bin", "openvino/openvino.json"} <= ov_files
    assert result.openvino_int8 == run.data.tags["openvino_int8_gate"]
    assert ("openvino/model_int8.xml" in ov_files) == (result.openvino_int8 == "accepted")
    for key in ("openvino_fp32_latency_ms", "fp32_eager_latency_ms", "openvino_int8_accuracy_drop_points"):
        assert key in run.data.metrics, key
    # BF16 rounds too: on a CPU with a BF16 unit it is held to the same gate (serving obeys a refusal).
    from training.cpu import detect_capabilities

    has_bf16 = detect_capabilities().has_bf16_unit
    for tag, metric in (("openvino_bf16_gate", "openvino_bf16_accuracy_drop_points"),
                        ("bf16_gate", "bf16_accuracy_drop_points")):  # OpenVINO BF16, torch BF16 autocast
        assert (tag in run.data.tags) == has_bf16 == (metric in run.data.metrics), (tag, run.data.tags)
        if has_bf16:
            gate = float(run.data.params["int8_max_drop_points"])
            assert run.data.tags[tag] == ("accepted" if run.data.metrics[metric] <= gate + 1e-9 else "refused")
    # Portability: the registered model loads and predicts where IPEX cannot be imported.
    uri = f"models:/{tiny_config.model_name}/1"
    out = subprocess.run([sys.executable, "-c", NO_IPEX_PYFUNC, uri], capture_output=True, text=True,
                         check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(2, 2)" in out.stdout
    # ... through OpenVINO: the pyfunc flavour (what `mlflow models serve` runs) carries the IRs.
    assert f"openvino_{'int8' if result.openvino_int8 == 'accepted' else 'fp32'}" in out.stdout, out.stdout
    assert "concurrent errors: 0" in out.stdout, out.stdout


def test_cli_int8_gate_refusal_exits_nonzero(local_tracking: str, patched_environ) -> None:  # noqa: ANN001
    # A gate no INT8 model meets (INT8 more accurate than FP32 by a point): only the setting takes it, the
    # option refuses negative drops.
    with patched_environ({"MLOPS_INT8_MAX_DROP_POINTS": "-1"}):
        result = CliRunner().invoke(app, [
            "train", "--epochs=1", "--image-size=32", "--width=0.0625", "--n-train=32", "--n-val=16",
            "--batch-size=16", "--no-register", "--experiment=test-gate",
        ])
    assert result.exit_code == 1
    assert "INT8 model refused" in result.output


def test_a_refused_int8_model_leaves_the_fp32_model_standing_when_not_required(
        tiny_config: TrainConfig, local_tracking: str) -> None:
    """The retrain loop trains with int8_required=False: a refused INT8 program must not fail the run."""
    import dataclasses

    config = dataclasses.replace(tiny_config, int8_max_drop_points=-1.0, int8_required=False)
    result = train(config, show_progress=False)
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED" and result.registered_version == "1"
    assert result.int8_gate is None and result.int8_artifact is None
    assert run.data.tags["int8_gate"] == "refused" and "int8_artifact" not in run.data.tags
    # The OpenVINO INT8 IR failed the same gate: refused, its drop recorded, not logged; the FP32 IR stands.
    assert run.data.tags["openvino_int8_gate"] == "refused" and result.openvino_int8 == "refused"
    assert run.data.metrics["openvino_int8_accuracy_drop_points"] > -1.0
    ov_files = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "openvino")}
    assert "openvino/model_fp32.xml" in ov_files and "openvino/model_int8.xml" not in ov_files


def test_cli_rejects_unknown_backend() -> None:
    result = CliRunner().invoke(app, ["train", "--backend=tpu"])
    assert result.exit_code != 0


def test_ipex_backend_missing_exits_with_sentence(local_tracking: str) -> None:
    pytest.importorskip("torch")
    if __import__("importlib").util.find_spec("intel_extension_for_pytorch") is not None:
        pytest.skip("IPEX is installed here; this checks the message where it is not")
    result = CliRunner().invoke(app, ["train", "--backend=ipex", "--epochs=1", "--image-size=32",
                                      "--width=0.0625", "--n-train=16", "--n-val=8"])
    assert result.exit_code == 1 and "not installed" in result.output
