"""`mlops serve` against the real platform: champion predictions, 4xx, hot swap, failed load, monitoring."""

from __future__ import annotations

import base64
import copy
import io
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

from mlops import monitoring
from training.artifacts import load_version
from training.cpu import detect_capabilities
from training.data import preprocess, synthetic_arrays
from training.features import FEATURE_NAMES
from training.model import CustomVGG
from training.train import TrainConfig, log_model, train

pytestmark = pytest.mark.integration


SERVE_ENV = {
    "MLOPS_PROMOTE_MIN_ACCURACY": "0.55",
    "MLOPS_PROMOTE_MIN_F1": "0.0",
    "MLOPS_PROMOTE_MAX_LATENCY_REGRESSION": "1000",  # timing noise on shared cores: see test_promote
    "MLOPS_PROMOTE_EVAL_IMAGES": "128",
    "MLOPS_PROMOTE_LATENCY_ITERATIONS": "10",
    # Compiling costs minutes on 2 shared cores; the variant logic runs, uncompiled.
    "MLOPS_SERVE_COMPILE": "false",
    "MLOPS_SERVE_POLL_INTERVAL_S": "1",
    "MLOPS_SERVE_MAX_IMAGE_BYTES": "100000",
    "MLOPS_SERVE_MAX_BATCH": "16",
    "MLOPS_SERVE_MONITORING_FLUSH_S": "30",  # long: rows are written only by the shutdown flush
}


@dataclass
class Server:
    url: str
    proc: subprocess.Popen  # type: ignore[type-arg]
    name: str
    config: TrainConfig
    model: CustomVGG
    log: Path

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30)


def _png(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _jpeg_truncated() -> str:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()[: len(buf.getvalue()) // 2]).decode()


def _register_copy(config: TrainConfig, model: CustomVGG, name: str, scale: float = 1.0) -> str:
    from training.data import synthetic_splits

    clone = copy.deepcopy(model).eval()
    with torch.no_grad():
        clone.classifier.weight.mul_(scale)
    cfg = copy.copy(config)
    cfg.model_name = name
    mlflow.set_experiment(config.experiment_name)
    with mlflow.start_run():
        info = log_model(clone, cfg, synthetic_splits(4, 4, config.image_size, 0))
    return str(info.registered_model_version)


@pytest.fixture(scope="module")
def serving_env(platform_env: dict[str, str], platform, patched_environ) -> Iterator[dict[str, str]]:  # noqa: ANN001
    # The gate's login: these tests register versions and move the champion serving follows.
    env = {**platform.env_as("svc-gate"), **SERVE_ENV, "MLOPS_STATE_DIR": str(platform.state_dir)}
    with patched_environ(env):
        yield {**os.environ}


@pytest.fixture(scope="module")
def server(serving_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
           serve_process, wait_until) -> Iterator[Server]:  # noqa: ANN001 - conftest factories
    from pipelines.promote import promote

    config = TrainConfig.from_settings(
        epochs=3, batch_size=16, image_size=32, width=0.0625, n_train=256, n_val=64, calibration_images=64,
        int8_max_drop_points=100.0, experiment_name="it-serving", model_name=f"serve-it-{uuid.uuid4().hex[:6]}")
    result = train(config, show_progress=False)
    assert promote(config.model_name, result.registered_version).promoted
    client = MlflowClient()
    model = load_version(client, client.get_model_version(config.model_name, result.registered_version)).model
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    started = serve_process(serving_env, config.model_name, log)
    srv = Server(started.url, started.proc, config.model_name, config, model, log)
    try:
        wait_until(lambda: srv.get("/health").status_code == 200, 240, f"the server to load the champion ({log})")
        yield srv
    finally:
        started.stop()


@pytest.mark.parametrize("isa", ["avx2", "avx512_bf16", "amx"])
def test_variant_choice_per_cpu_class(server: Server, patched_environ, isa: str) -> None:  # noqa: ANN001
    """What each CPU class gets, decided in this process with the detection override (probes run here)."""
    from serving.models import load_served
    from training.probe import probe

    with patched_environ({"MLOPS_CPU_ISA_OVERRIDE": isa, "MLOPS_SERVE_VARIANT": "bf16"}):
        served = load_served(MlflowClient(), server.name, "champion")
    assert served.cpu["isa"] == isa and served.checks["int8"] == "skipped: serve_variant=bf16"
    if isa == "avx2":
        assert served.checks["bf16"].startswith("skipped: no AMX/AVX512_BF16") and served.variant == "fp32"
        assert "native_bf16" not in served.cpu["probes"]
    else:
        assert served.cpu["probes"]["native_bf16"] == probe("native_bf16", detect_capabilities(override=isa)).describe()
        if served.variant == "bf16":
            assert served.checks["bf16"].startswith("passed") and "probe passed" in served.variant_reason
        else:
            assert served.variant == "fp32" and served.checks["bf16"].startswith("refused"), served.checks
    # OpenVINO's BF16 precision hint: asked for only where the class has a BF16 unit.
    with patched_environ({"MLOPS_CPU_ISA_OVERRIDE": isa, "MLOPS_SERVE_VARIANT": "openvino_bf16"}):
        served = load_served(MlflowClient(), server.name, "champion")
    assert served.checks["openvino_int8"] == "skipped: serve_variant=openvino_bf16"
    if isa == "avx2":
        assert served.checks["openvino_bf16"].startswith("skipped: no AMX/AVX512_BF16") and served.variant == "fp32"
        assert "could not run" in served.variant_reason
    else:
        assert served.checks["openvino_bf16"].startswith(("passed", "refused: agrees")), served.checks
        assert served.variant == ("openvino_bf16" if served.checks["openvino_bf16"].startswith("passed") else "fp32")


FRESH_PROCESS_IR = """
import sys, json, torch, mlflow
from pathlib import Path
from training import openvino as tov
from training.data import synthetic_images
run_id, size = sys.argv[1], int(sys.argv[2])
local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="openvino"))
meta = json.loads((local / tov.META).read_text())
x = synthetic_images(32, size, 7).images
out = {name: tov.CompiledIR(tov.read_ir(local / meta[name]), "f32")(x)[1].tolist() for name in ("fp32", "int8")}
print(json.dumps(out))
"""


def test_logged_irs_load_and_run_in_a_fresh_process(server: Server, serving_env: dict[str, str]) -> None:
    """The IRs training logged, downloaded from the artifact store and run by a process that built nothing."""
    import json
    import sys

    from training.data import synthetic_images

    champion = MlflowClient().get_model_version_by_alias(server.name, "champion")
    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS_IR, champion.run_id, str(server.config.image_size)],
                         capture_output=True, text=True, timeout=300, env=serving_env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    got = {k: torch.tensor(v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}
    with torch.no_grad():
        expected = server.model(synthetic_images(32, server.config.image_size, 7).images)
    assert torch.allclose(got["fp32"], expected, atol=1e-4)
    assert float((got["int8"].argmax(1) == expected.argmax(1)).float().mean()) >= 0.9


def test_serves_the_champion_with_its_predictions(server: Server) -> None:
    from training.variants import VARIANTS

    client = MlflowClient()
    champion = client.get_model_version_by_alias(server.name, "champion")
    info = server.get("/model").json()
    assert info["name"] == server.name and info["version"] == champion.version and info["alias"] == "champion"
    assert info["run_id"] == champion.run_id
    checks, p50 = info["variant_checks"], info["variant_latency_ms"]
    assert set(checks) == set(VARIANTS), checks
    # Chosen by measurement: every agreeing variant was timed, and the served one was the fastest.
    assert set(p50) == {k for k, v in checks.items() if v.startswith("passed")}, (checks, p50)
    assert info["variant"] == min(p50, key=lambda k: p50[k]["score"]), info
    assert all(t["score"] == pytest.approx(t["batch_1"] + t["batch_8"], abs=2e-3) for t in p50.values()), p50
    assert "fastest of" in info["variant_reason"]
    # Training logged the OpenVINO IRs (INT8 accepted at a 100-point gate) and the PT2E program.
    assert "logged at registration" in info["variant_reason"] or not info["variant"].startswith("openvino")
    assert checks["openvino_int8"].startswith(("passed", "refused: agrees")), checks
    assert checks["openvino_fp32"].startswith("passed"), checks
    assert "not available" not in checks["int8"]
    assert checks["compiled"] == "skipped: serve_compile is off"
    caps = detect_capabilities()
    assert info["cpu"]["isa"] == caps.isa
    assert checks["bf16"].startswith("skipped: no AMX") == (not caps.has_bf16_unit)
    assert checks["openvino_bf16"].startswith("skipped: no AMX") == (not caps.has_bf16_unit)

    arrays, _, _ = synthetic_arrays(12, server.config.image_size, 99)
    resp = httpx.post(f"{server.url}/predict", json={"images": [_png(a) for a in arrays]}, timeout=60)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"]["version"] == champion.version and len(body["predictions"]) == 12
    from serving.app import PredictResponse

    assert PredictResponse.model_validate(body).model_dump() == body  # the published schema, exactly
    assert resp.headers["x-request-id"] == body["request_id"] and len(body["request_id"]) == 32
    with torch.no_grad():
        expected = torch.softmax(server.model(torch.cat([preprocess(a, server.config.image_size) for a in arrays])), 1)
    got = torch.tensor([p["probabilities"]["defective"] for p in body["predictions"]])
    classes = [p["class_index"] for p in body["predictions"]]
    if info["variant"] == "fp32":
        assert classes == expected.argmax(1).tolist()
        assert torch.allclose(got, expected[:, 1], atol=1e-4)
    else:  # INT8 or BF16 passed the load-time agreement check; allow its rounding error
        assert sum(a == b for a, b in zip(classes, expected.argmax(1).tolist(), strict=True)) >= 11
    one = httpx.post(f"{server.url}/predict", json={"image": _png(arrays[0])}, timeout=30).json()
    assert one["predictions"][0]["class_index"] == classes[0]

    health = server.get("/health").json()
    assert health["status"] == "ok" and health["model_version"] == champion.version
    assert health["cpu"] == info["cpu"] and health["variant_checks"] == checks
    assert health["monitoring"] == "ok"
    metrics = server.get("/metrics").text
    assert 'mlops_serving_requests_total{endpoint="/predict",status="200"}' in metrics
    assert "mlops_serving_request_latency_seconds_bucket" in metrics
    assert f'model_version="{champion.version}"' in metrics
    schema = server.get("/openapi.json").json()
    assert "images" in str(schema["paths"]["/predict"]["post"]["requestBody"])


def test_bad_input_gets_4xx_naming_the_problem(server: Server, lying_png) -> None:  # noqa: ANN001
    url = f"{server.url}/predict"
    ok_png = _png(synthetic_arrays(1, 32, 5)[0][0])
    noise = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    cases = [
        (dict(content=b"{not json"), 400, "not valid JSON"),
        (dict(json=[1, 2]), 422, "JSON object"),
        (dict(json={"images": "abc"}), 422, "images"),
        (dict(json={"pictures": [ok_png]}), 422, "pictures"),
        (dict(json={"images": []}), 422, "empty"),
        (dict(json={"images": ["%%%not-base64%%%"]}), 422, "images[0] is not valid base64"),
        (dict(json={"images": [ok_png, base64.b64encode(b"hello, not an image").decode()]}), 422,
         "images[1] is not a readable image"),
        (dict(json={"image": _png(noise)}), 413, "over the limit of 100000"),
        (dict(json={"images": [ok_png] * 17}), 413, "batch of 17 images is over the limit of 16"),
        (dict(json={"image": ok_png, "images": [ok_png]}), 422, "not both"),
        # hostile: nesting the JSON parser recurses into, lying headers, truncated files, huge strings, wrong types
        (dict(content=b"[" * 100_000 + b"]" * 100_000), 400, "nested too deeply"),
        (dict(content=b'{"images": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}"), 400, "nested too deeply"),
        (dict(json={"image": lying_png(65_535, 65_535)}), 413, "declares more than"),
        (dict(json={"image": _jpeg_truncated()}), 422, "image is not a readable image"),
        (dict(json={"image": "A" * 1_000_000}), 413, "image is 750000 bytes, over the limit of 100000"),
        # chunked (no length up front): read up to the limit, then refused
        (dict(content=iter([b"A" * 1_000_000] * 32 + [b"A"])), 413, "over the limit of 32000000 bytes"),
        (dict(data={"image": ok_png}), 400, "sent as application/x-www-form-urlencoded; send application/json"),
        (dict(files={"image": ("x.png", base64.b64decode(ok_png), "image/png")}), 400, "send application/json"),
    ]
    for kwargs, status, words in cases:
        resp = httpx.post(url, timeout=30, **kwargs)
        assert resp.status_code == status, (kwargs.keys(), resp.text)
        assert words in resp.json()["detail"], resp.text
    # a declared length over the limit is refused before any of the body is read
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 33000013\r\n\r\n")
        got = b""
        while b"over the limit" not in got and (chunk := sock.recv(65536)):
            got += chunk
        answer = got.decode()
    assert answer.startswith("HTTP/1.1 413") and "33000013 bytes, over the limit of 32000000" in answer, answer
    assert server.get("/health").status_code == 200


def test_requests_fuzzed_from_the_openapi_document_never_get_a_5xx(server: Server) -> None:
    """schemathesis generates requests from the served OpenAPI document, valid and invalid (positive and negative
    modes), for every operation: none may answer 5xx, every 4xx names the problem, /health stays 200."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    schema = schemathesis.openapi.from_dict(server.get("/openapi.json").json())
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /predict", "GET /health", "GET /model", "GET /metrics"}
    seen: Counter[tuple[str, int]] = Counter()

    @given(case=st.one_of([op.as_strategy(mode) for op in operations for mode in schemathesis.GenerationMode]))
    @settings(max_examples=300, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def fuzz(case: schemathesis.Case) -> None:
        resp = case.call(base_url=server.url, timeout=30)
        seen[(case.operation.label, resp.status_code)] += 1
        assert resp.status_code < 500, (case.operation.label, case.body if case.body is not None else "", resp.text)
        if resp.status_code >= 400:
            detail = resp.json().get("detail")
            assert detail and isinstance(detail, str | list), resp.text

    fuzz()
    predict = {status for (label, status), n in seen.items() if label == "POST /predict"}
    assert len(predict & {400, 413, 422}) >= 2, seen  # the fuzzer reached several of the checks
    # the document's own example is a real image: it predicts as published
    document = server.get("/openapi.json").json()
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["examples"][0]
    assert httpx.post(f"{server.url}/predict", json=body, timeout=30).status_code == 200
    assert server.get("/health").status_code == 200


def test_slow_bodies_tie_up_no_worker(server: Server, wait_until) -> None:  # noqa: ANN001
    """Slow-loris: connections that send headers and a trickle of body; the worker keeps answering others."""
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    slow = []
    try:
        for _ in range(32):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n{\"image\": \"")
            slow.append(sock)
        ok_png = _png(synthetic_arrays(1, 32, 5)[0][0])
        for _ in range(3):
            for sock in slow:
                sock.sendall(b"AAAA")
            start = time.perf_counter()
            assert server.get("/health").status_code == 200
            resp = httpx.post(f"{server.url}/predict", json={"image": ok_png}, timeout=30)
            assert resp.status_code == 200 and time.perf_counter() - start < 10, resp.text
    finally:
        for sock in slow:
            sock.close()
    assert server.get("/health").status_code == 200
    # the abandoned requests are counted as the client's doing (499), never as server errors
    wait_until(lambda: 'status="499"' in server.get("/metrics").text, 30, "the abandoned requests to be counted")
    assert 'endpoint="/predict",status="500"' not in server.get("/metrics").text


def test_hot_swap_under_load_loses_no_request_then_failed_load_keeps_serving(server: Server,
                                                                           wait_until) -> None:  # noqa: ANN001
    from pipelines.promote import promote

    client = MlflowClient()
    old = server.get("/model").json()["version"]
    new = _register_copy(server.config, server.model, server.name, scale=1.0)
    image = _png(synthetic_arrays(1, 32, 7)[0][0])
    stop = threading.Event()
    seen: Counter[str] = Counter()
    failures: list[str] = []

    def loop() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                try:
                    r = http.post(f"{server.url}/predict", json={"images": [image, image]})
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        seen[r.json()["model"]["version"]] += 1
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=loop) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        decision = promote(server.name, new)
        assert decision.promoted, decision.reason
        wait_until(lambda: seen[new] >= 20, 180, f"responses from version {new}")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert seen[old] > 0 and seen[new] >= 20
    swapped = server.get("/model").json()
    assert swapped["version"] == new
    # Registered from a notebook-like run without IRs: they were built at load, off the request path.
    assert swapped["variant_checks"]["openvino_fp32"].startswith("passed"), swapped["variant_checks"]
    assert "built at load" in swapped["variant_reason"] or not swapped["variant"].startswith("openvino"), swapped

    # A champion that cannot be loaded (its run has no model_state): the old one keeps serving.
    mlflow.set_experiment(server.config.experiment_name)
    with mlflow.start_run() as run:
        mlflow.log_text("not a model", "notes.txt")
    broken = client.create_model_version(server.name, f"runs:/{run.info.run_id}/notes.txt", run.info.run_id)
    client.set_registered_model_alias(server.name, "champion", broken.version)
    try:
        wait_until(lambda: (server.get("/health").json().get("load_error") or {}).get("version") == broken.version, 60,
              "the failed load on /health")
        health = server.get("/health").json()
        assert health["status"] == "degraded" and "model_state" in health["load_error"]["error"]
        assert health["model_version"] == new
        r = httpx.post(f"{server.url}/predict", json={"image": image}, timeout=30)
        assert r.status_code == 200 and r.json()["model"]["version"] == new
    finally:
        client.set_registered_model_alias(server.name, "champion", new)
    wait_until(lambda: server.get("/health").json()["status"] == "ok", 60, "the load error to clear")


def test_monitoring_rows_written_and_flushed_on_shutdown(server: Server) -> None:
    # Flush interval is 30 s: these rows can only reach PostgreSQL through the shutdown flush.
    arrays, _, _ = synthetic_arrays(5, 32, 11)
    ids = []
    for i in range(6):
        rid = f"it-{uuid.uuid4().hex}"
        r = httpx.post(f"{server.url}/predict", headers={"X-Request-ID": rid},
                       json={"images": [_png(a) for a in arrays[: 1 + i % 5]]}, timeout=30)
        assert r.status_code == 200 and r.headers["x-request-id"] == rid
        ids.append((rid, 1 + i % 5))
    model = server.get("/model").json()
    expected_version, served_variant = model["version"], model["variant"]
    os.killpg(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(timeout=120) == 0, server.log.read_text()[-3000:]
    with monitoring.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT request_id, item_index, model_name, model_version, variant, predicted_class, confidence, "
            "features, array_length(embedding, 1) FROM monitoring.predictions WHERE request_id = ANY(%s)",
            ([rid for rid, _ in ids],),
        )
        rows = cur.fetchall()
    counts = Counter(r[0] for r in rows)
    assert dict(counts) == dict(ids)
    for _, _, name, version, variant, cls, conf, features, dim in rows:
        assert name == server.name and version == expected_version and variant == served_variant
        assert cls in (0, 1) and 0.5 <= conf <= 1.0
        assert set(features) == set(FEATURE_NAMES)
        assert dim == server.model.embedding_dim
