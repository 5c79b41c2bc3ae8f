"""IPEX backend tests: run in .venv-ipex with `make ipex-test` (deselected in the main run)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.ipex
ipex = pytest.importorskip(
    "intel_extension_for_pytorch", reason="IPEX is only installed in .venv-ipex (make ipex-venv)"
)

from training.cpu import detect_capabilities, emulation_environment  # noqa: E402
from training.data import synthetic_splits  # noqa: E402
from training.model import CustomVGG, ModelConfig, plain_copy  # noqa: E402
from training.optimize import (  # noqa: E402
    Backend,
    prepare_inference,
    prepare_training,
    select_backend,
)
from training.quantize import quantize_ipex  # noqa: E402

MAIN_PYTHON = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"
CFG = ModelConfig(width=0.0625, image_size=32)


@pytest.fixture
def choice():  # noqa: ANN201
    return select_backend(Backend.ipex, detect_capabilities(), True)


def test_training_step_under_ipex_optimize(choice) -> None:  # noqa: ANN001
    model = CustomVGG(CFG)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, opt = prepare_training(model, opt, choice)
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    before = plain_copy(model).features[0].weight.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=choice.bf16):
        loss = torch.nn.functional.cross_entropy(model(x), torch.arange(8) % 2)
    loss.backward()
    opt.step()
    assert not torch.equal(before, plain_copy(model).features[0].weight)


def test_inference_matches_eager(choice) -> None:  # noqa: ANN001
    model = CustomVGG(CFG).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        out = prepare_inference(plain_copy(model), choice)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(ref, out.float(), atol=5e-2 if choice.bf16 else 1e-3)


def test_int8_ipex_quantization() -> None:
    splits = synthetic_splits(32, 8, 32, seed=0)
    model = CustomVGG(CFG).eval()
    q = quantize_ipex(model, [splits.train.images[:16], splits.train.images[16:]], splits.val.images[:2])
    with torch.no_grad():
        out = q(splits.val.images.contiguous(memory_format=torch.channels_last))
    assert out.shape == (8, 2)


SERVE_IN_MAIN = """
import json, sys
sys.modules["intel_extension_for_pytorch"] = None  # any import of IPEX now fails
import mlflow, numpy as np, torch
from mlflow import MlflowClient
from serving.models import load_served
name = sys.argv[1]
served = load_served(MlflowClient(), name, "champion")
_, logits = served.predict(torch.zeros(3, 3, 32, 32))
pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion")
out = np.asarray(pyfunc.predict(np.zeros((2, 3, 32, 32), np.float32)))
print(json.dumps({"variant": served.variant, "checks": served.checks, "logits": list(logits.shape),
                  "pyfunc": list(out.shape), "pyfunc_variant": pyfunc.get_raw_model().variant}))
"""


@pytest.mark.skipif(not MAIN_PYTHON.exists(), reason="the main environment .venv is not built")
def test_a_version_trained_here_serves_in_the_main_env_without_ipex(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Trained and registered with the IPEX backend (torch 2.8), served by the main environment (torch 2.13)."""
    import json

    import mlflow
    from mlflow import MlflowClient

    from training.train import TrainConfig, train

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    config = TrainConfig.from_settings(
        epochs=1, batch_size=16, image_size=32, width=0.0625, n_train=64, n_val=32, calibration_images=32,
        int8_max_drop_points=100.0, experiment_name="test-ipex", model_name="pill-quality-ipex", backend=Backend.ipex)
    result = train(config, show_progress=False)
    assert result.backend == "ipex" and result.openvino_int8 == "accepted"
    assert mlflow.get_run(result.run_id).data.tags["openvino_ir"] == "openvino"
    MlflowClient().set_registered_model_alias(config.model_name, "champion", result.registered_version)
    out = subprocess.run([str(MAIN_PYTHON), "-c", SERVE_IN_MAIN, config.model_name], capture_output=True, text=True,
                         timeout=600, check=False, env={**os.environ, "MLOPS_SERVE_COMPILE": "false"})
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["logits"] == [3, 2] and report["pyfunc"] == [2, 2], report
    assert report["checks"]["openvino_int8"].startswith(("passed", "refused: agrees")), report
    assert report["pyfunc_variant"] == "openvino_int8", report


# A CPU whose flags claim AMX while its kernels can do no better than AVX2 (the way IPEX's BF16 convolution
# failed on an AMD EPYC that reports AVX512_BF16): the IPEX BF16 probe must fail and the choice fall back.
CLAIMS_MORE = """
import json, torch
from training.cpu import detect_capabilities
from training.model import CustomVGG, ModelConfig, plain_copy
from training.optimize import Backend, prepare_inference, select_backend
caps = detect_capabilities()
out = {"isa": caps.isa}
for requested in (Backend.ipex, Backend.auto):
    choice = select_backend(requested, caps, True)
    model = CustomVGG(ModelConfig(width=0.0625, image_size=32)).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        diff = float((prepare_inference(plain_copy(model), choice)(x.contiguous(memory_format=torch.channels_last))
                      .float() - model(x)).abs().max())
    out[requested.value] = {"name": choice.name.value, "dtype": str(choice.dtype), "probes": choice.probes,
                            "reason": choice.reason, "diff": diff}
print(json.dumps(out))
"""


def test_ipex_bf16_that_cannot_run_falls_back(run_in_cpu_class) -> None:  # noqa: ANN001
    report = run_in_cpu_class(CLAIMS_MORE, {**emulation_environment("avx2"), "MLOPS_CPU_ISA_OVERRIDE": "amx"})
    assert report["isa"] == "amx"
    ipex_choice, auto = report["ipex"], report["auto"]
    assert ipex_choice["probes"]["ipex_bf16"].startswith("failed"), ipex_choice
    assert ipex_choice["name"] == "ipex" and ipex_choice["dtype"] == "torch.float32"
    assert ipex_choice["diff"] < 1e-3
    # auto falls through to the next path: native BF16, decided by its own probe.
    assert auto["name"] == "native"
    native_ok = auto["probes"]["native_bf16"].startswith("passed")
    assert auto["dtype"] == ("torch.bfloat16" if native_ok else "torch.float32")
    assert auto["diff"] < (5e-2 if native_ok else 1e-3)
