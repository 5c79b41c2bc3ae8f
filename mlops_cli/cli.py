"""The one command line: ``mlops``. Commands stay thin; logic lives in typed functions.

The top layer: it imports every package (plain imports, inside the commands so ``mlops --help``
starts fast); no product package imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mlops.access import ROLES
from mlops.log import configure_logging

app = typer.Typer(
    name="mlops",
    help="Self-hosted MLOps platform for PyTorch on Intel Xeon.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def run() -> None:
    """The ``mlops`` command: MLflow refusing the login (401) or the action (403) is one line and exit 2."""
    try:
        app()
    except Exception as exc:
        from mlflow.exceptions import MlflowException

        if not (isinstance(exc, MlflowException) and exc.error_code in {"PERMISSION_DENIED", "UNAUTHENTICATED"}):
            raise
        typer.echo(f"mlops: MLflow refused: {exc.message}".splitlines()[0], err=True)
        raise SystemExit(2) from None


def _name(value: str | None) -> str | None:
    """Option callback: a model, experiment, alias or version name is not empty and has no control characters."""
    if value is not None and (not value.strip() or len(value) > 256
                              or any(ord(c) < 32 or ord(c) == 127 for c in value)):
        raise typer.BadParameter(f"expected a name of 1-256 printable characters, got {value[:80]!r}")
    return value


def _positive(value: float | None) -> float | None:
    """Option callback: a rate or multiplier above 0."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be above 0, got {value}")
    return value


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level.")) -> None:
    """Configure logging once, before any command runs."""
    configure_logging(verbose)


@app.command()
def status() -> None:
    """Show the health of each platform service started by `make up`."""
    from mlops_cli.status import platform_status, render_status

    report = platform_status()
    typer.echo(render_status(report))
    if not report.healthy:
        raise typer.Exit(code=1)


@app.command()
def smoke() -> None:
    """Log a small run with a model through nginx and print where to see it in the UI."""
    from mlops_cli.smoke import run_smoke

    result = run_smoke()
    typer.echo(f"Logged run {result.run_id} in experiment '{result.experiment_name}'.")
    typer.echo(f"See it in the UI: {result.run_url}")
    typer.echo(f"Logged as {result.user!r}: log in to the UI as them (password in "
               f".mlops/credentials/mlflow-{result.user}); the admin's settings are in .mlops/admin.env, "
               "everyone's logins in `mlops users list`.")


@app.command()
def inventory(
    tf_output: Path = typer.Option(
        ..., "--tf-output", exists=True, dir_okay=False, help="JSON from `terraform output -json`."
    ),
    dest: Path = typer.Option(Path("ansible/inventories/aws"), "--dest", help="Inventory folder to write."),
) -> None:
    """Turn Terraform outputs into the Ansible inventory for the AWS hosts (no secret values)."""
    from mlops_cli.inventory import write_inventory

    for path in write_inventory(json.loads(tf_output.read_text()), dest):
        typer.echo(f"wrote {path}")


@app.command()
def train(
    epochs: int | None = typer.Option(None, min=1, help="Training epochs (default: MLOPS_TRAIN_EPOCHS)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Images per step."),
    lr: float | None = typer.Option(None, "--lr", callback=_positive,
                                    help="Peak learning rate (AdamW, cosine schedule)."),
    image_size: int | None = typer.Option(None, "--image-size", min=1, help="Square input size in pixels."),
    width: float | None = typer.Option(None, "--width", callback=_positive,
                                       help="VGG16 channel multiplier (1.0 = full VGG16)."),
    n_train: int | None = typer.Option(None, "--n-train", min=1, help="Synthetic training images."),
    n_val: int | None = typer.Option(None, "--n-val", min=1, help="Synthetic validation images."),
    seed: int | None = typer.Option(None, min=0, help="Random seed (data, init, shuffling)."),
    data: Path | None = typer.Option(
        None, "--data", exists=True, file_okay=False, help="MVTec AD root (or its pill/ folder); default synthetic."
    ),
    pretrained: Path | None = typer.Option(
        None, "--pretrained", exists=True, dir_okay=False, help="Local torchvision VGG16 state dict for the trunk."
    ),
    backend: str | None = typer.Option(None, "--backend", help="auto | ipex | native | none."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the training step (native)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Intra-op threads (default: available cores)."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Quantize to INT8 and gate on accuracy."),
    max_int8_drop: float | None = typer.Option(
        None, "--max-int8-drop", min=0.0, help="Largest allowed INT8 accuracy drop in points."
    ),
    experiment: str | None = typer.Option(None, "--experiment", callback=_name, help="MLflow experiment name."),
    model_name: str | None = typer.Option(None, "--model-name", callback=_name, help="Registered model name."),
    register: bool = typer.Option(True, "--register/--no-register", help="Register the model version."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", min=1, help="DDP workers on this host (torchrun)."),
    nnodes: str = typer.Option("1", "--nnodes", help="Number of hosts (or MIN:MAX) for torchrun."),
    node_rank: int | None = typer.Option(None, "--node-rank", min=0, help="This host's rank (multi-node)."),
    rdzv_endpoint: str | None = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT of the rendezvous (multi-node)."),
) -> None:
    """Train the pill quality model, log it to MLflow and register it (INT8 gated on accuracy)."""
    from training import distributed
    from training.optimize import Backend, BackendUnavailable, tune_runtime
    from training.quantize import AccuracyGateError
    from training.train import TrainConfig
    from training.train import train as run_training

    if backend is not None and backend not in {b.value for b in Backend}:
        raise typer.BadParameter(f"expected one of {[b.value for b in Backend]}", param_hint="--backend")
    config = TrainConfig.from_settings(
        epochs=epochs, batch_size=batch_size, learning_rate=lr, image_size=image_size, width=width,
        n_train=n_train, n_val=n_val, seed=seed, data=data, pretrained=pretrained,
        backend=Backend(backend) if backend else None, compile=compile_model or None, threads=threads,
        int8=int8, int8_max_drop_points=max_int8_drop, experiment_name=experiment, model_name=model_name,
        register=register,
    )
    if (nproc_per_node > 1 or nnodes not in ("1", "1:1")) and not distributed.under_torchrun():
        tuning = tune_runtime(threads, local_world_size=nproc_per_node)
        cmd = distributed.torchrun_command(
            nproc_per_node, config.worker_args(), nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint
        )
        code = distributed.launch(cmd, tuning.child_env)
        if code:
            typer.echo(f"Distributed training failed: torchrun exited with {code}.", err=True)
        raise typer.Exit(code=code)
    try:
        result = run_training(config)
    except (AccuracyGateError, BackendUnavailable) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from exc
    if result.run_id:
        typer.echo(f"Run {result.run_id}: backend {result.backend}, " + ", ".join(
            f"{k} {v:.3f}" for k, v in result.final.items()))
        if result.registered_version:
            typer.echo(f"Registered {config.model_name} version {result.registered_version} ({result.model_uri}).")
        if result.int8_gate:
            typer.echo(f"INT8 accepted ({result.int8_gate.drop_points:.2f} points drop): {result.int8_artifact}")


bench_app = typer.Typer(help="Compare optimisation variants side by side (figures, not tests).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("train")
def bench_train(
    steps: int = typer.Option(12, min=1, help="Timed training steps per variant."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per step."),
    image_size: int = typer.Option(64, "--image-size", min=1, help="Square input size."),
    width: float = typer.Option(0.125, "--width", callback=_positive, help="VGG16 channel multiplier."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Intra-op threads for every variant."),
    include_compile: bool = typer.Option(True, "--compile/--no-compile", help="Include torch.compile (slow to build)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results and summary here."),
    log_to_mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log table and chart to MLflow."),
) -> None:
    """Training images/s per variant, with the ratio to FP32 eager."""
    from mlops_cli.bench_model import BenchConfig, bench_training, finish_bench

    cfg = BenchConfig(steps=steps, batch_size=batch_size, image_size=image_size, width=width, threads=threads,
                      include_compile=include_compile)
    typer.echo(finish_bench("train", bench_training(cfg), cfg, json_out, log_to_mlflow))


@bench_app.command("infer")
def bench_infer(
    iterations: int = typer.Option(100, min=1, help="Timed batch-1 calls per variant."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Batch size for the throughput figure."),
    image_size: int = typer.Option(64, "--image-size", min=1, help="Square input size."),
    width: float = typer.Option(0.125, "--width", callback=_positive, help="VGG16 channel multiplier."),
    epochs: int = typer.Option(3, min=1, help="Epochs to train the model all variants share (accuracy)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Intra-op threads for every variant."),
    include_compile: bool = typer.Option(True, "--compile/--no-compile", help="Include compiled variants."),
    kit: bool = typer.Option(True, "--kit/--no-kit",
                             help="Also at the reference kit's size (224 px, width 1.0; a few minutes more)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results and summary here."),
    log_to_mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log table and chart to MLflow."),
) -> None:
    """Batch-1 latency p50/p99, images/s, accuracy and drop per variant (torch FP32/compiled/BF16/INT8, OpenVINO)."""
    from mlops_cli.bench_model import BenchConfig, bench_inference, finish_bench, kit_config

    cfg = BenchConfig(iterations=iterations, batch_size=batch_size, image_size=image_size, width=width,
                      threads=threads, include_compile=include_compile, epochs=epochs, kit=kit)
    results = bench_inference(cfg)
    kit_results = bench_inference(kit_config(cfg)) if kit else None
    typer.echo(finish_bench("infer", results, cfg, json_out, log_to_mlflow, kit_results))


# --- registry -------------------------------------------------------------------------

@app.command()
def promote(
    model: str | None = typer.Option(None, "--model",
                                     callback=_name, help="Registered model name (default: MLOPS_MODEL_NAME)."),
    candidate: str = typer.Option("latest", "--candidate",
                                  callback=_name, help="Version number, 'latest' or an alias."),
    wait: float | None = typer.Option(None, "--wait", min=0,
                                      help="Seconds to wait for the gate when your login asks it (default: "
                                           "MLOPS_PROMOTE_WAIT_S)."),
) -> None:
    """Gate a candidate version against the champion; make it champion if it wins (exit 1 if refused).

    The gate's login and admins judge in-process; any other login asks the gate job, which decides as
    itself within a minute, and waits for its verdict (exit 1 if none came within --wait).
    """
    from mlops.registry import PromotionError, RegistryError
    from mlops.settings import get_settings
    from pipelines.gate import ask

    name = model or get_settings().model_name
    try:
        decision = ask(name, candidate, wait_s=wait, say=typer.echo)
    except (PromotionError, RegistryError) as exc:
        typer.echo(f"Promotion failed: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    if decision is None:
        typer.echo("The gate has not decided yet: the request stays, and the gate job will decide it (see the "
                   "version's tags in the MLflow UI, or run `mlops promote` again to wait for it).", err=True)
        raise typer.Exit(code=1)
    typer.echo(decision.reason)
    if decision.evaluation_run_id:
        typer.echo(f"Evaluation run: {decision.evaluation_run_id}")
    if not decision.promoted:
        raise typer.Exit(code=1)


@app.command()
def gate(
    model: str | None = typer.Option(None, "--model",
                                     callback=_name, help="Registered model name (default: MLOPS_MODEL_NAME)."),
) -> None:
    """The promotion gate's job: judge every pending promotion request once, as this login (exit 1 if one failed)."""
    from mlops.rest import pending_requests
    from mlops.settings import get_settings

    name = model or get_settings().model_name
    # Every minute, usually nothing to do: known without importing MLflow where the REST API can tell.
    if pending_requests(name) == []:
        typer.echo(f"No pending promotion request for {name}.")
        return
    from mlops.registry import PromotionError, RegistryError
    from pipelines.gate import decide_requests

    try:
        handled = decide_requests(name)
    except (PromotionError, RegistryError) as exc:
        typer.echo(f"Gate failed: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    for h in handled:
        outcome = h.decision.reason if h.decision else f"not judged, the request stays ({h.error})"
        typer.echo(f"{name} version {h.version}, asked by {h.requested_by}: {outcome}")
    if not handled:
        typer.echo(f"No pending promotion request for {name}.")
    if any(h.decision is None for h in handled):
        raise typer.Exit(code=1)


@app.command()
def rollback(
    model: str | None = typer.Option(None, "--model",
                                     callback=_name, help="Registered model name (default: MLOPS_MODEL_NAME)."),
) -> None:
    """Make the previous champion the champion again (one step, recorded in MLflow)."""
    from mlops.settings import get_settings
    from pipelines.promote import PromotionError, RegistryError
    from pipelines.promote import rollback as run_rollback

    name = model or get_settings().model_name
    try:
        result = run_rollback(name)
    except (PromotionError, RegistryError) as exc:
        typer.echo(f"Rollback failed: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(result.reason)
    typer.echo(f"Recorded in run: {result.run_id}")


# --- people and service identities -----------------------------------------------------

users_app = typer.Typer(help="People and service identities on MLflow, with the platform's roles (as its admin).",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")
_ROLE_HELP = (f"Role: {', '.join(n for n, r in ROLES.items() if not r.service)} (people); "
              f"{', '.join(n for n, r in ROLES.items() if r.service)} (jobs).")


def _users(action):  # noqa: ANN001, ANN202 - a small wrapper: AccessError -> one line, exit 2
    from mlops.access import AccessError

    try:
        return action()
    except AccessError as exc:
        typer.echo(f"mlops users: {exc}", err=True)
        raise typer.Exit(code=2) from None


@users_app.command("list")
def users_list() -> None:
    """Every MLflow user with its platform role and admin flag."""
    from mlops_cli.users import admin_client, list_users

    rows = _users(lambda: list_users(admin_client()))
    typer.echo(f"{'user':<24} {'role':<16} admin")
    for row in rows:
        typer.echo(f"{row.name:<24} {row.role:<16} {'yes' if row.admin else 'no'}")


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="Login name (letters, digits, '.', '_', '@', '-')."),
    role: str = typer.Option(..., "--role", help=_ROLE_HELP),
    password_file: Path | None = typer.Option(None, "--password-file", exists=True, dir_okay=False,
                                              help="Read the password here (default: generate one)."),
) -> None:
    """Add a person or service identity with one role; a generated password goes to .mlops/credentials/."""
    from mlops_cli.users import add_user, admin_client

    where = _users(lambda: add_user(admin_client(), name, role, password_file))
    typer.echo(f"Added {name!r} with role {role!r}; the password is in {where}.")


@users_app.command("set-role")
def users_set_role(
    name: str = typer.Argument(..., help="Login name."),
    role: str = typer.Argument(..., help=_ROLE_HELP),
) -> None:
    """Give a user exactly this platform role (the one they had before is taken away)."""
    from mlops_cli.users import admin_client, set_role

    changed = _users(lambda: set_role(admin_client(), name, role))
    typer.echo(f"{name!r} has role {role!r}" + ("." if changed else " already."))


@users_app.command("reset-password")
def users_reset_password(
    name: str = typer.Argument(..., help="Login name."),
    password_file: Path | None = typer.Option(None, "--password-file", exists=True, dir_okay=False,
                                              help="Read the new password here (default: generate one)."),
) -> None:
    """Give a user a new password (a service's: restart the service after; the old one stops working)."""
    from mlops_cli.users import admin_client, reset_password

    where = _users(lambda: reset_password(admin_client(), name, password_file))
    typer.echo(f"New password for {name!r} is in {where}.")


@users_app.command("remove")
def users_remove(name: str = typer.Argument(..., help="Login name.")) -> None:
    """Remove a user: they can no longer log in; the runs and models they made stay."""
    from mlops_cli.users import admin_client, remove_user

    _users(lambda: remove_user(admin_client(), name))
    typer.echo(f"Removed {name!r}; their runs stay. (A user listed in mlops_users comes back at the next `make up`.)")


# --- serving --------------------------------------------------------------------------

@app.command()
def serve(
    host: str | None = typer.Option(None, "--host", help="Bind address (default MLOPS_SERVE_HOST, loopback)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Bind port (default MLOPS_SERVE_PORT)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="uvicorn worker processes under gunicorn."),
    model: str | None = typer.Option(None, "--model",
                                     callback=_name, help="Registered model (default MLOPS_MODEL_NAME)."),
    alias: str | None = typer.Option(None, "--alias",
                                     callback=_name, help="Alias to serve and follow (default champion)."),
) -> None:
    """Serve models:/NAME@champion (gunicorn + uvicorn workers) with hot swap on promotion."""
    from serving.server import run_server

    run_server(host=host, port=port, workers=workers, model=model, alias=alias)

@app.command()
def predict(
    image: list[Path] = typer.Option(..., "--image", exists=True, dir_okay=False,
                                     help="Image file (PNG/JPEG/BMP); repeat for a batch."),
    url: str | None = typer.Option(None, "--url", help="Serving base URL (default: the platform's /serve)."),
) -> None:
    """Ask the served champion about one or more image files (prints JSON)."""
    from serving.client import ServingError, endpoint
    from serving.client import predict as call

    try:
        result = call(image, ep=endpoint(url))
    except (ServingError, OSError) as exc:
        typer.echo(f"Prediction failed: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(json.dumps(result, indent=2))


@bench_app.command("serve")
def bench_serve(
    requests: int | None = typer.Option(None, "--requests", min=1,
                                        help="Requests per server and variant (fixed count)."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Concurrent clients."),
    variants: str = typer.Option("auto,openvino_int8,openvino_bf16,openvino_fp32,int8,bf16,compiled,fp32",
                                 "--variants",
                                 help="Serving variants to measure ('auto': the platform's own measured choice)."),
    model: str | None = typer.Option(None, "--model",
                                     callback=_name, help="Registered model (default MLOPS_MODEL_NAME)."),
    mlflow_serve: bool = typer.Option(True, "--mlflow-serve/--no-mlflow-serve",
                                      help="Also measure `mlflow models serve` on the same version."),
    kit: bool = typer.Option(True, "--kit/--no-kit",
                             help="Also at the kit's real size (224 px, width 1.0; registers <model>-bench-kit)."),
    kit_requests: int = typer.Option(64, "--kit-requests", min=1, help="Requests per variant at the kit's size."),
    scrape_interval: float | None = typer.Option(
        None, "--scrape-interval", min=0,
        help="Also measure the cost of Prometheus scraping serving every this many seconds (default 15; 0: not "
             "measured): a real Prometheus on vs off, 4 interleaved rounds of 3 intervals (about 4 minutes at 15 s, "
             "plus serving's start)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write results and summary here."),
) -> None:
    """Throughput and p50/p99 latency of our endpoint (through nginx) per variant vs `mlflow models serve`."""
    import json

    from mlops_cli.bench_serve import BenchServeConfig, find_prometheus, render
    from mlops_cli.bench_serve import bench_serve as run_bench

    interval = 15.0 if scrape_interval is None else scrape_interval
    if 0 < interval < 1:
        raise typer.BadParameter(f"0 (not measured) or at least 1 second, got {interval}",
                                 param_hint="--scrape-interval")
    if interval and find_prometheus() is None:
        if scrape_interval is not None:  # asked for: a refusal
            typer.echo("bench serve: --scrape-interval needs the Prometheus server (/usr/bin/prometheus, Debian "
                       "package prometheus); install it or pass --scrape-interval 0", err=True)
            raise typer.Exit(code=2)
        typer.echo("Scrape cost not measured: no Prometheus server (/usr/bin/prometheus)", err=True)
        interval = 0.0
    cfg = BenchServeConfig(**({"requests": requests} if requests else {}), concurrency=concurrency,
                           variants=[v.strip() for v in variants.split(",") if v.strip()], model=model,
                           mlflow_serve=mlflow_serve, kit=kit, kit_requests=kit_requests, scrape_interval_s=interval)
    result = run_bench(cfg)
    typer.echo(render(result))
    if json_out:
        json_out.write_text(json.dumps(result, indent=2))
        typer.echo(f"wrote {json_out}")


@bench_app.command("auth")
def bench_auth(
    requests: int = typer.Option(2000, "--requests", min=1, help="log_metric calls per target (fixed count)."),
    serve_requests: int = typer.Option(2000, "--serve-requests", min=1, help="Predictions per target."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Concurrent connections of the client."),
    rounds: int = typer.Option(5, "--rounds", min=1, help="Interleaved slices per target."),
    tracking: bool = typer.Option(True, "--tracking/--no-tracking", help="Measure tracking (log_metric)."),
    serving: bool = typer.Option(True, "--serving/--no-serving", help="Measure serving (/serve/predict)."),
    asgi: bool = typer.Option(False, "--asgi", help="Also time MLflow's ASGI app (uvicorn, no auth) on loopback, "
                              "interleaved with the baseline (summary asgi_ratio)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write results and summary here."),
) -> None:
    """What auth costs: tracking and predictions through nginx as a person vs loopback without auth, interleaved.

    Runs on the MLflow host of a `make up` deployment, as root (it starts MLflow without its auth app on the
    platform's store, on loopback, for the baseline) with a person's login (local.env) who may create
    experiments and predict. Exit 1 if a call failed or an acknowledged metric was not stored.
    """
    import json

    from mlops_cli.bench_auth import BenchAuthConfig, BenchAuthError, render
    from mlops_cli.bench_auth import bench_auth as run_bench

    if not (tracking or serving):
        typer.echo("bench auth: nothing to measure (--no-tracking and --no-serving)", err=True)
        raise typer.Exit(code=2)
    cfg = BenchAuthConfig(requests=requests, serve_requests=serve_requests, concurrency=concurrency, rounds=rounds,
                          tracking=tracking, serving=serving, asgi=asgi)
    try:
        result = run_bench(cfg, progress=lambda line: typer.echo(line, err=True))
    except BenchAuthError as exc:
        typer.echo(f"bench auth: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(render(result))
    if json_out:
        json_out.write_text(json.dumps(result, indent=2))
        typer.echo(f"wrote {json_out}")
    if result["summary"]["failed"] or result["summary"]["lost"]:
        raise typer.Exit(code=1)


@bench_app.command("soak")
def bench_soak(
    minutes: float = typer.Option(5.0, "--minutes", callback=_positive, help="How long the load runs."),
    clients: int = typer.Option(16, "--clients", min=2, help="Concurrent clients: half tracking, half predicting."),
    run_jobs: bool = typer.Option(True, "--jobs/--no-jobs",
                                  help="Also run the scheduled jobs (each once, then spread over the run)."),
    keep_runs: bool = typer.Option(False, "--keep-runs", help="Keep the soak's own runs (deleted after the check)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write per-operation figures and the summary here."),
) -> None:
    """Sustained load through nginx (tracking, predictions, jobs); then every acknowledged write is checked."""
    import json

    from mlops_cli.soak import SoakConfig, render, soak

    try:
        result = soak(SoakConfig(minutes=minutes, clients=clients, run_jobs=run_jobs, keep_runs=keep_runs),
                      progress=lambda line: typer.echo(line, err=True))
    except FileNotFoundError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(render(result))
    if json_out:
        json_out.write_text(json.dumps(result, indent=2))
        typer.echo(f"wrote {json_out}")
    summary = result["summary"]
    if summary["lost_writes"] or summary["server_errors"]:
        raise typer.Exit(code=1)


# --- drift, feedback, retraining, demo ---------------------------------------------------

@bench_app.command("drift")
def bench_drift(
    rows: int = typer.Option(1_000_000, min=1, help="Rows per frame (reference and current)."),
    columns: int = typer.Option(20, min=1, help="Numeric columns (3 shifted by 0.1 sigma, 2 scaled by 1.2)."),
    seed: int = typer.Option(0, min=0, help="Random seed of the frames."),
    evidently_python: Path = typer.Option(
        Path(".venv-evidently/bin/python"), "--evidently-python",
        help="Python of the Evidently environment (`make evidently-venv`).",
    ),
    evidently: bool = typer.Option(True, "--evidently/--no-evidently", help="Also run Evidently's default."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results and summary here."),
) -> None:
    """Univariate drift on ROWS x COLUMNS: our KS+PSI against Evidently's DataDriftPreset, same data."""
    from mlops_cli.bench_drift import BenchDriftConfig, render
    from mlops_cli.bench_drift import bench_drift as run_bench

    cfg = BenchDriftConfig(rows=rows, columns=columns, seed=seed,
                           evidently_python=evidently_python if evidently else None)
    try:
        result = run_bench(cfg)
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from exc
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))
    typer.echo(render(result))

drift_app = typer.Typer(help="Drift of serving inputs and predictions against the champion's profile.",
                        no_args_is_help=True)
app.add_typer(drift_app, name="drift")

@drift_app.command("check")
def drift_check(
    model: str | None = typer.Option(None, "--model",
                                     callback=_name, help="Registered model (default: MLOPS_MODEL_NAME)."),
    window: str | None = typer.Option(None, "--window", help="Window length, e.g. 30s, 15m, 1h (default: "
                                      "MLOPS_DRIFT_WINDOW); the latest complete aligned window is checked."),
    version: str | None = typer.Option(None, "--version",
                                       callback=_name, help="Compare with this version (default: champion)."),
    force: bool = typer.Option(False, "--force", help="Check again even if this window already has a drift run."),
) -> None:
    """Compare the latest window of serving traffic with the reference profile; log a drift run to MLflow.

    Exits 0 with no drift, 3 when drift was found, 4 when the window was skipped (reason printed), 1 on error.
    """
    from mlops.monitoring import MonitoringNotConfigured
    from mlops.settings import get_settings
    from pipelines.drift.runs import run_drift_check
    from pipelines.drift.windows import latest_complete_window, parse_duration
    from training.profile import DriftDataError

    s = get_settings()
    try:
        length = parse_duration(s.drift_window if window is None else window)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--window") from exc
    try:
        result = run_drift_check(model or s.model_name, latest_complete_window(length), version, force=force)
    except (DriftDataError, MonitoringNotConfigured) as exc:
        typer.echo(f"Drift check failed: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"{result.model_name} v{result.model_version}, window {result.window.id}: {result.verdict} "
               f"({result.reason})" + (" [recorded earlier]" if result.reused else ""))
    typer.echo(f"Drift run {result.run_id} in experiment '{s.drift_experiment}' (plots under plots/).")
    raise typer.Exit(code={"drifted": 3, "skipped": 4}.get(result.verdict, 0))

@app.command("feedback")
def feedback(
    request_id: str | None = typer.Option(None, "--request-id", help="The prediction request to label."),
    item: int = typer.Option(0, "--item", min=0, help="Image index within the request."),
    label: str | None = typer.Option(None, "--label", help="True class: good | defective (or 0 | 1)."),
    csv_file: Path | None = typer.Option(None, "--file", exists=True, dir_okay=False,
                                         help="CSV with header request_id,item_index,label."),
) -> None:
    """Record labelled feedback on served predictions (feeds the accuracy trigger of the retrain loop)."""
    from mlops import monitoring
    from pipelines.feedback import FeedbackError, parse_row, read_labels, record_feedback

    try:
        if csv_file is not None:
            labels = read_labels(csv_file)
        elif request_id and label is not None:
            labels = [parse_row({"request_id": request_id, "item_index": str(item), "label": label}, "feedback")]
        else:
            raise FeedbackError("give --request-id and --label, or --file")
    except FeedbackError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from exc
    conn = monitoring.connect("mlops-feedback")
    try:
        monitoring.ensure_schema(conn)
        typer.echo(f"Recorded {record_feedback(conn, labels)} label(s).")
    finally:
        conn.close()

@app.command("retrain-loop")
def retrain_loop(
    model: str | None = typer.Option(None, "--model",
                                     callback=_name, help="Registered model (default: MLOPS_MODEL_NAME)."),
    window: str | None = typer.Option(None, "--window", help="Window length (default: MLOPS_DRIFT_WINDOW)."),
) -> None:
    """Run one scheduled tick: check the latest window, retrain and promote if the trigger fires, exit."""
    import sys

    from mlops.monitoring import MonitoringNotConfigured
    from pipelines.retrain import tick

    try:
        result = tick(model, window)
    except Exception as exc:
        # training.profile (torch) is imported only by a tick that checks a window: a DriftDataError
        # can only come from one that did.
        profile = sys.modules.get("training.profile")
        expected = (MonitoringNotConfigured, ValueError) + ((profile.DriftDataError,) if profile else ())
        if not isinstance(exc, expected):
            raise
        typer.echo(f"Retrain tick failed: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"[{result.action}] window {result.window or '-'}: {result.reason}")
    if result.training_run_id:
        typer.echo(f"Drift run {result.drift_run_id} -> training run {result.training_run_id} -> version "
                   f"{result.candidate_version} -> {'champion' if result.promoted else 'not promoted'}")

@app.command("demo")
def demo(
    model: str | None = typer.Option(None, "--model",
                                     callback=_name, help="Registered model (default: MLOPS_MODEL_NAME)."),
    window: str = typer.Option("30s", "--window", help="Drift window length for the demo (short)."),
    images_per_window: int = typer.Option(2000, "--images-per-window", min=1,
                                          help="At most this many images per window."),
    clients: int = typer.Option(4, "--clients", min=1, help="Concurrent clients sending the traffic."),
    train_first: bool = typer.Option(True, "--train/--no-train", help="Train and promote a first model."),
) -> None:
    """The whole loop on the running platform: train, promote, serve, drift, retrain, new champion."""
    from mlops.settings import get_settings
    from mlops_cli.demo import DemoConfig, run_demo
    from pipelines.drift.windows import parse_duration

    try:
        parse_duration(window)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--window") from exc
    config = DemoConfig(model_name=model or get_settings().model_name, window=window,
                        max_images_per_window=images_per_window, clients=clients, train=train_first)
    try:
        run_demo(config, typer.echo)
    except (RuntimeError, TimeoutError) as exc:
        typer.echo(f"Demo stopped: {exc}", err=True)
        raise typer.Exit(code=1) from exc

if __name__ == "__main__":
    app()
