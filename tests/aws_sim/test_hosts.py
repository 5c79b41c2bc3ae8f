"""The scaled layout on simulated hosts (tests/aws_sim/conftest.py): what several hosts must show.

- a notebook's runs and a promotion land through either MLflow host (one store, one auth store);
- a two-node `torchrun` DDP training across the two trainers gives one run and one version;
- no service listens beyond its host's private address, except the load balancer.

The second provisioning run changing nothing on every host is test_provision.py's; killing an
MLflow host under load is test_failover.py's (it runs last).
"""

from __future__ import annotations

import subprocess
import uuid

import pytest

pytestmark = [pytest.mark.aws_sim, pytest.mark.slow]

ENTRY_HOST = "lb"


def test_the_notebook_settings_point_at_the_load_balancer(aws_sim) -> None:
    env = aws_sim.client_env
    assert env["MLFLOW_TRACKING_URI"] == f"https://{aws_sim.address('lb')}:443"


def test_runs_and_a_promotion_land_through_either_mlflow_host(aws_sim, mlflow_env) -> None:
    """A person logs a run through mlflow-0 and another through mlflow-1: each host sees both.
    The person registers a version through one host; the gate's identity moves @champion through the
    other; the person may not move it through either (the permissions are one auth store)."""
    from mlflow.exceptions import MlflowException

    person, gate = aws_sim.login("data-scientist"), aws_sim.login("svc-gate")
    marker = uuid.uuid4().hex[:8]
    runs = {}
    experiment = None
    for host in ("mlflow-0", "mlflow-1"):
        client = aws_sim.mlflow_client(host, person)
        if experiment is None:
            experiment = client.create_experiment(f"either-host-{marker}")
        run = client.create_run(experiment)
        client.log_param(run.info.run_id, "host", host)
        client.log_metric(run.info.run_id, "loss", 0.5)
        client.set_terminated(run.info.run_id)
        runs[host] = run.info.run_id
    for host in ("mlflow-0", "mlflow-1"):
        client = aws_sim.mlflow_client(host, person)
        found = {r.info.run_id: r.data.params["host"] for r in client.search_runs([experiment])}
        assert found == {runs["mlflow-0"]: "mlflow-0", runs["mlflow-1"]: "mlflow-1"}, host

    model = f"either-host-{marker}"
    client = aws_sim.mlflow_client("mlflow-1", person)
    client.create_registered_model(model)
    version = client.create_model_version(model, f"runs:/{runs['mlflow-0']}/model", run_id=runs["mlflow-0"])
    for host in ("mlflow-0", "mlflow-1"):
        with pytest.raises(MlflowException) as refused:
            aws_sim.mlflow_client(host, person).set_registered_model_alias(model, "champion", version.version)
        assert "PERMISSION_DENIED" in str(refused.value) and "model-gate" in str(refused.value), host
    aws_sim.mlflow_client("mlflow-0", gate).set_registered_model_alias(model, "champion", version.version)
    for host in ("mlflow-0", "mlflow-1", ENTRY_HOST):
        champion = aws_sim.mlflow_client(host, person).get_model_version_by_alias(model, "champion")
        assert champion.version == version.version, host


def test_ddp_training_across_two_trainers(aws_sim, mlflow_env) -> None:
    """`mlops train` on both trainers, in their namespaces, as the retrain job's account with the DDP
    settings the trainer role wrote (rendezvous on trainer-0, gloo on each host's interface): one
    MLflow run with both ranks in it, one registered version."""
    marker = uuid.uuid4().hex[:8]
    experiment, model = f"ddp-{marker}", f"ddp-{marker}"
    procs, ranks = [], []
    for host in aws_sim.group("trainers"):
        env = aws_sim.trainer_env(host)
        assert env["MLOPS_RDZV_ENDPOINT"] == f"{aws_sim.address('trainer-0')}:29500"
        assert env["GLOO_SOCKET_IFNAME"] == "eth0" and env["MLOPS_NNODES"] == "2"
        ranks.append(env["MLOPS_NODE_RANK"])
        home = aws_sim.path("data", host) / "retrain"
        env |= {"HOME": str(home), "MPLCONFIGDIR": str(home / ".cache" / "matplotlib"), "LANG": "C.UTF-8"}
        argv = [
            "runuser", "-u", "mlops-retrain", "--", "env", "-i",
            *(f"{k}={v}" for k, v in env.items()),
            str(aws_sim.path("home", host) / "trainer" / "bin" / "mlops"), "train",
            "--nnodes", "2", "--node-rank", env["MLOPS_NODE_RANK"], "--nproc-per-node", "1",
            "--rdzv-endpoint", env["MLOPS_RDZV_ENDPOINT"],
            "--epochs", "1", "--n-train", "64", "--n-val", "32", "--image-size", "32", "--width", "0.0625",
            "--batch-size", "16", "--backend", "native", "--no-int8", "--threads", "1",
            "--experiment", experiment, "--model-name", model,
        ]  # fmt: skip
        with (aws_sim.root / f"ddp-{host}.log").open("w") as log:
            procs.append((host, aws_sim.network.popen(host, argv, cwd=home, stdout=log, stderr=subprocess.STDOUT)))
    assert ranks == ["0", "1"]
    for host, proc in procs:
        try:
            code = proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "timeout"
        output = (aws_sim.root / f"ddp-{host}.log").read_text()
        assert code == 0, f"{host}: {code}\n{output[-4000:]}"

    client = aws_sim.mlflow_client(ENTRY_HOST, aws_sim.login("data-scientist"))
    (exp,) = [e for e in client.search_experiments() if e.name == experiment]
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.params.get("world_size") == "2", runs[0].data.params
    versions = client.search_model_versions(f"name = '{model}'")
    assert [v.run_id for v in versions] == [runs[0].info.run_id]


def _private(aws_sim, host: str) -> set[str]:
    return {"127.0.0.1", "::1", aws_sim.address(host)}


def test_nothing_listens_beyond_a_private_address_but_the_entry_point(aws_sim) -> None:
    """On every host each listening socket (TCP, and UDP: the Alertmanagers' gossip) is on loopback or the
    host's own private address; the load balancer listens on its address, port 443 only."""
    seen = {}
    for host in aws_sim.hosts:
        sockets = aws_sim.network.listening(host)
        seen[host] = sockets
        wide = [s for s in sockets if s[0] not in _private(aws_sim, host)]
        assert wide == [], f"{host} listens beyond its private address: {wide}"
    assert any(port == 443 and addr == aws_sim.address("mlflow-1") for addr, port, _ in seen["mlflow-1"])
    assert any(port == 443 and addr == aws_sim.address("serving-0") for addr, port, _ in seen["serving-0"])
    entry = aws_sim.network.listening(ENTRY_HOST)
    assert {(addr, port) for addr, port, _ in entry} == {(aws_sim.address("lb"), 443)}, entry
