"""The promotion gate against the real platform: accept, refuse, idempotency, rollback, concurrency."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from mlops.settings import get_settings
from pipelines.promote import Evaluation, Quality, Thresholds, decide, promote
from training.artifacts import load_version
from training.model import CustomVGG
from training.train import TrainConfig, log_model, train

REPO = Path(__file__).resolve().parents[2]

# The tiny test model reaches ~0.7 accuracy; the floors are lowered to fit it. The latency rule is
# off here: sub-millisecond batch-1 timings on 2 cores shared with other test groups differed by
# 3-8x between equal models (a 200% limit still failed). `decide` is unit-tested with the real
# 20% rule below; the accuracy/F1 comparisons stay exact.
GATE_ENV = {
    "MLOPS_PROMOTE_MIN_ACCURACY": "0.55",
    "MLOPS_PROMOTE_MIN_F1": "0.0",
    "MLOPS_PROMOTE_MAX_LATENCY_REGRESSION": "1000",
    "MLOPS_PROMOTE_EVAL_IMAGES": "128",
    "MLOPS_PROMOTE_LATENCY_ITERATIONS": "10",
}


def _thresholds(**kw: float) -> Thresholds:
    base = {"min_accuracy": 0.7, "min_f1": 0.6, "accuracy_tolerance": 0.0, "f1_tolerance": 0.0,
            "max_latency_regression": 0.2, "reference_tolerance": 0.03, "min_recent_images": 20}
    return Thresholds(**{**base, **kw})


def _eval(acc: float = 0.9, f1: float = 0.9, p50: float = 1.0) -> Evaluation:
    return Evaluation(acc, f1, 0.9, p50, p50, 100)


def test_decide_names_the_failed_threshold() -> None:
    t = _thresholds()
    ok, why = decide("m", "2", _eval(), None, None, t)
    assert ok and "no champion yet" in why
    ok, why = decide("m", "2", _eval(acc=0.6), None, None, t)
    assert not ok and "promote_min_accuracy" in why
    ok, why = decide("m", "2", _eval(f1=0.5), "1", _eval(), t)
    assert not ok and "F1 0.500" in why and "promote_min_f1" in why
    ok, why = decide("m", "2", _eval(acc=0.89), "1", _eval(acc=0.9), t)
    assert not ok and "accuracy 0.890 is lower than champion version 1's 0.900" in why
    ok, why = decide("m", "2", _eval(f1=0.85), "1", _eval(), t)
    assert not ok and "F1 0.850 is lower" in why
    ok, why = decide("m", "2", _eval(p50=1.25), "1", _eval(p50=1.0), t)
    assert not ok and "latency" in why and "25% worse" in why
    ok, _ = decide("m", "2", _eval(p50=1.19), "1", _eval(p50=1.0), t)
    assert ok
    ok, _ = decide("m", "2", _eval(acc=0.89), "1", _eval(acc=0.9), _thresholds(accuracy_tolerance=0.02))
    assert ok


def test_decide_with_recent_labelled_images() -> None:
    """Recent held-out images: not worse there; on the reference set at most promote_reference_tolerance worse."""
    t = _thresholds(reference_tolerance=0.03)

    def q(acc: float, f1: float = 0.8) -> Quality:
        return Quality(acc, f1, 0.9, 40)

    # Better on the recent images, 0.012 worse on the reference: the adaptation wins.
    ok, why = decide("m", "2", _eval(acc=0.941), "1", _eval(acc=0.953), t, (q(0.85), q(0.40)))
    assert ok, why
    assert "on the 40 recent labelled images: accuracy 0.850 vs 0.400" in why and "on the reference set" in why
    # The same reference drop without recent data is refused (tolerance 0).
    ok, why = decide("m", "2", _eval(acc=0.941), "1", _eval(acc=0.953), t)
    assert not ok and "accuracy 0.941 is lower" in why
    # Worse on the recent images: refused, whatever the reference says.
    ok, why = decide("m", "2", _eval(acc=0.99), "1", _eval(acc=0.9), t, (q(0.70), q(0.75)))
    assert not ok and "accuracy on the 40 recent labelled images 0.700 is lower than champion version 1's 0.750" in why
    ok, why = decide("m", "2", _eval(), "1", _eval(), t, (q(0.8, f1=0.5), q(0.8, f1=0.6)))
    assert not ok and "F1 on the 40 recent labelled images 0.500" in why
    # Forgetting: better on the recent images but more than 0.03 worse on the reference set.
    ok, why = decide("m", "2", _eval(acc=0.91), "1", _eval(acc=0.95), t, (q(0.9), q(0.4)))
    assert not ok and "on the reference set 0.910 is lower than champion version 1's 0.950 (tolerance 0.030)" in why
    ok, why = decide("m", "2", _eval(f1=0.86), "1", _eval(f1=0.9), t, (q(0.9), q(0.4)))
    assert not ok and "F1 on the reference set 0.860" in why
    # The floors still apply first.
    ok, why = decide("m", "2", _eval(acc=0.6), "1", _eval(), t, (q(0.9), q(0.4)))
    assert not ok and "promote_min_accuracy" in why


# --- against the platform ---------------------------------------------------------------------------


@dataclass
class Registered:
    name: str
    good: str
    bad: str
    good_b: str


@pytest.fixture(scope="module")
def gate_env(platform_env: dict[str, str], platform, patched_environ) -> dict[str, str]:  # noqa: ANN001
    # The gate's own login (role model-gate): it trains here too, and it moves the champion.
    env = {**platform.env_as("svc-gate"), **GATE_ENV, "MLOPS_STATE_DIR": str(platform.state_dir)}
    with patched_environ(env):
        yield env


@pytest.fixture(scope="module")
def trained(gate_env: dict[str, str]) -> tuple[TrainConfig, CustomVGG]:
    config = TrainConfig.from_settings(
        epochs=3, batch_size=16, image_size=32, width=0.0625, n_train=256, n_val=64, int8=False,
        experiment_name="it-promote", model_name=f"promote-it-{uuid.uuid4().hex[:6]}")
    result = train(config, show_progress=False)
    assert result.registered_version == "1"
    client = MlflowClient()
    return config, load_version(client, client.get_model_version(config.model_name, "1")).model


def _register_copy(config: TrainConfig, model: CustomVGG, name: str, bias_to_good: bool = False) -> str:
    """Log and register a copy of ``model`` the way training does (optionally broken: always 'good')."""
    from training.data import synthetic_splits

    clone = copy.deepcopy(model).eval()
    if bias_to_good:
        with torch.no_grad():
            clone.classifier.bias.copy_(torch.tensor([1e4, -1e4]))
    splits = synthetic_splits(4, 4, config.image_size, 0)
    cfg = copy.copy(config)
    cfg.model_name = name
    mlflow.set_experiment(config.experiment_name)
    with mlflow.start_run():
        info = log_model(clone, cfg, splits)
    return str(info.registered_model_version)


def _register_set(trained: tuple[TrainConfig, CustomVGG], name: str) -> Registered:
    config, model = trained
    good = _register_copy(config, model, name)
    bad = _register_copy(config, model, name, bias_to_good=True)
    good_b = _register_copy(config, model, name)
    return Registered(name, good, bad, good_b)


def _promotion_runs(name: str) -> list:
    exp = mlflow.get_experiment_by_name(get_settings().promote_experiment_name)
    if exp is None:
        return []
    return mlflow.search_runs([exp.experiment_id], filter_string=f"tags.model_name = '{name}'", output_format="list")


def _stage(client: MlflowClient, name: str, version: str) -> str:
    return client.get_model_version(name, version).current_stage


@pytest.mark.integration
def test_gate_promotes_better_refuses_worse_idempotent_and_rolls_back(trained, platform, monkeypatch) -> None:  # noqa: ANN001
    from mlops.rest import alias_version, pending_requests
    from mlops_cli.cli import app

    config, _ = trained
    reg = _register_set(trained, f"{config.model_name}-gate")
    client = MlflowClient()
    runner = CliRunner()

    # No champion: the broken model fails the absolute floor.
    res = runner.invoke(app, ["promote", "--model", reg.name, "--candidate", reg.bad])
    assert res.exit_code == 1, res.output
    assert "below the floor promote_min_accuracy" in res.output

    # A person (who may not move 'champion') asks; the gate's job judges as the gate and records who asked.
    person = subprocess.Popen(
        [sys.executable, "-m", "mlops_cli", "promote", "--model", reg.name, "--candidate", reg.good, "--wait", "300"],
        cwd=REPO, env={**os.environ, **platform.env_as("data-scientist")}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while "promotion_requested_by" not in client.get_model_version(reg.name, reg.good).tags:
        assert person.poll() is None and time.monotonic() < deadline, person.communicate()[0]
        time.sleep(0.5)
    # The gate job's check without MLflow's client sees the request as MLflow's client does; a login it
    # cannot use is "cannot tell" (None: the job then asks through MLflow), never "nothing pending".
    assert pending_requests(reg.name) == [(reg.good, "data-scientist")]
    with monkeypatch.context() as patched:
        patched.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
        assert pending_requests(reg.name) is None
    res = runner.invoke(app, ["gate", "--model", reg.name])
    assert res.exit_code == 0, res.output
    assert f"version {reg.good}, asked by data-scientist:" in res.output and "no champion yet" in res.output
    output = person.communicate(timeout=120)[0]
    assert person.returncode == 0, output
    assert "Asked the promotion gate" in output and "no champion yet" in output, output
    assert client.get_model_version_by_alias(reg.name, "champion").version == reg.good
    run = client.get_run(client.get_model_version(reg.name, reg.good).tags["promotion_run_id"])
    assert run.data.tags["mlops.requested_by"] == "data-scientist" and run.info.user_id == "svc-gate"
    assert "promotion_requested_by" not in client.get_model_version(reg.name, reg.good).tags
    assert runner.invoke(app, ["gate", "--model", reg.name]).output.startswith("No pending promotion request")
    assert pending_requests(reg.name) == [] and pending_requests("no-such-model") == []
    assert alias_version(reg.name, "champion") == reg.good and alias_version(reg.name, "no-such-alias") == ""
    assert _stage(client, reg.name, reg.good) == "Production"

    # Worse than the champion: refused with the failed threshold, gets 'challenger'.
    decision = promote(reg.name, reg.bad)
    assert not decision.promoted
    assert decision.champion_version == reg.good
    assert "refused" in decision.reason and "promote_min_accuracy" in decision.reason
    assert client.get_model_version_by_alias(reg.name, "challenger").version == reg.bad
    assert client.get_model_version_by_alias(reg.name, "champion").version == reg.good
    run = client.get_run(decision.evaluation_run_id)
    assert run.data.tags["candidate_version"] == reg.bad and run.data.tags["champion_version"] == reg.good
    assert {"candidate_accuracy", "champion_accuracy", "candidate_latency_p50_ms"} <= set(run.data.metrics)
    assert run.data.params["threshold_min_accuracy"] == "0.55"
    assert client.get_model_version(reg.name, reg.bad).tags["promotion_run_id"] == decision.evaluation_run_id

    # Idempotent: the same calls again change nothing and log nothing.
    runs_before = len(_promotion_runs(reg.name))
    again = promote(reg.name, reg.bad)
    assert not again.promoted and not again.changed and again.reason == decision.reason
    same = promote(reg.name, reg.good)
    assert same.promoted and not same.changed
    res = runner.invoke(app, ["promote", "--model", reg.name, "--candidate", reg.bad])
    assert res.exit_code == 1
    assert len(_promotion_runs(reg.name)) == runs_before
    assert client.get_model_version_by_alias(reg.name, "champion").version == reg.good

    # An equal model passes (not lower, latency within the limit): aliases and stages move.
    win = promote(reg.name, "latest")
    assert win.promoted and win.candidate_version == reg.good_b and win.champion_version == reg.good, win.reason
    assert client.get_model_version_by_alias(reg.name, "champion").version == reg.good_b
    assert client.get_model_version_by_alias(reg.name, "previous-champion").version == reg.good
    assert _stage(client, reg.name, reg.good_b) == "Production"
    assert _stage(client, reg.name, reg.good) == "Archived"
    assert client.get_model_version(reg.name, reg.good_b).tags["promotion_run_id"] == win.evaluation_run_id

    # Rollback: one step, recorded.
    res = runner.invoke(app, ["rollback", "--model", reg.name])
    assert res.exit_code == 0, res.output
    assert client.get_model_version_by_alias(reg.name, "champion").version == reg.good
    assert client.get_model_version_by_alias(reg.name, "previous-champion").version == reg.good_b
    assert _stage(client, reg.name, reg.good) == "Production"
    assert _stage(client, reg.name, reg.good_b) == "Archived"
    assert any(r.data.tags.get("action") == "rollback" for r in _promotion_runs(reg.name))


@pytest.mark.integration
def test_bad_input_gets_a_clear_error(trained) -> None:  # noqa: ANN001
    from mlops_cli.cli import app

    config, _ = trained
    res = CliRunner().invoke(app, ["promote", "--model", config.model_name, "--candidate", "99"])
    assert res.exit_code == 2 and "has no version 99" in res.output
    res = CliRunner().invoke(app, ["rollback", "--model", config.model_name])
    assert res.exit_code == 2 and "no 'previous-champion' alias" in res.output


@pytest.mark.integration
def test_two_concurrent_promotions_leave_exactly_one_champion(trained, gate_env: dict[str, str]) -> None:  # noqa: ANN001
    config, _ = trained
    reg = _register_set(trained, f"{config.model_name}-race")
    env = {**os.environ, **gate_env}
    procs = [
        subprocess.Popen([sys.executable, "-m", "mlops_cli", "promote", "--model", reg.name, "--candidate", v],
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for v in (reg.good, reg.good_b)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    client = MlflowClient()
    champion = client.get_model_version_by_alias(reg.name, "champion").version
    previous = client.get_model_version_by_alias(reg.name, "previous-champion").version
    assert {champion, previous} == {reg.good, reg.good_b}
    production = [v.version for v in client.search_model_versions(f"name = '{reg.name}'")
                  if v.current_stage == "Production"]
    assert production == [champion]
    # Serialised: the second evaluation compared against the first one's result, not against "no champion".
    runs = _promotion_runs(reg.name)
    seen = sorted((r.data.tags["candidate_version"], r.data.tags["champion_version"]) for r in runs)
    assert seen == sorted([(previous, "none"), (champion, previous)])
