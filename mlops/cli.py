"""The one command line: ``mlops``. Commands stay thin; logic lives in typed functions."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import typer

from mlops.log import configure_logging

app = typer.Typer(
    name="mlops",
    help="Self-hosted MLOps platform for PyTorch on Intel Xeon.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level.")) -> None:
    """Configure logging once, before any command runs."""
    configure_logging(verbose)


@app.command()
def status() -> None:
    """Show the health of each platform service started by `make up`."""
    from mlops.status import platform_status, render_status

    report = platform_status()
    typer.echo(render_status(report))
    if not report.healthy:
        raise typer.Exit(code=1)


@app.command()
def smoke() -> None:
    """Log a small run with a model through nginx and print where to see it in the UI."""
    from mlops.smoke import run_smoke

    result = run_smoke()
    typer.echo(f"Logged run {result.run_id} in experiment '{result.experiment_name}'.")
    typer.echo(f"See it in the UI: {result.run_url}")
    typer.echo("Log in as 'admin'; the password is in .mlops/credentials/nginx-admin.")


@app.command()
def inventory(
    tf_output: Path = typer.Option(
        ..., "--tf-output", exists=True, dir_okay=False, help="JSON from `terraform output -json`."
    ),
    dest: Path = typer.Option(Path("ansible/inventories/aws"), "--dest", help="Inventory folder to write."),
) -> None:
    """Turn Terraform outputs into the Ansible inventory for the AWS hosts (no secret values)."""
    from mlops.inventory import write_inventory

    for path in write_inventory(json.loads(tf_output.read_text()), dest):
        typer.echo(f"wrote {path}")


@app.command()
def train(
    epochs: int | None = typer.Option(None, help="Training epochs (default: MLOPS_TRAIN_EPOCHS)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per step."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (AdamW, cosine schedule)."),
    image_size: int | None = typer.Option(None, "--image-size", help="Square input size in pixels."),
    width: float | None = typer.Option(None, "--width", help="VGG16 channel multiplier (1.0 = full VGG16)."),
    n_train: int | None = typer.Option(None, "--n-train", help="Synthetic training images."),
    n_val: int | None = typer.Option(None, "--n-val", help="Synthetic validation images."),
    seed: int | None = typer.Option(None, help="Random seed (data, init, shuffling)."),
    data: Path | None = typer.Option(
        None, "--data", exists=True, file_okay=False, help="MVTec AD root (or its pill/ folder); default synthetic."
    ),
    pretrained: Path | None = typer.Option(
        None, "--pretrained", exists=True, dir_okay=False, help="Local torchvision VGG16 state dict for the trunk."
    ),
    backend: str | None = typer.Option(None, "--backend", help="auto | ipex | native | none."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the training step (native)."),
    threads: int | None = typer.Option(None, "--threads", help="Intra-op threads (default: available cores)."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Quantize to INT8 and gate on accuracy."),
    max_int8_drop: float | None = typer.Option(
        None, "--max-int8-drop", help="Largest allowed INT8 accuracy drop in points."
    ),
    experiment: str | None = typer.Option(None, "--experiment", help="MLflow experiment name."),
    model_name: str | None = typer.Option(None, "--model-name", help="Registered model name."),
    register: bool = typer.Option(True, "--register/--no-register", help="Register the model version."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", help="DDP workers on this host (torchrun)."),
    nnodes: str = typer.Option("1", "--nnodes", help="Number of hosts (or MIN:MAX) for torchrun."),
    node_rank: int | None = typer.Option(None, "--node-rank", help="This host's rank (multi-node)."),
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
    steps: int = typer.Option(12, help="Timed training steps per variant."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per step."),
    image_size: int = typer.Option(64, "--image-size", help="Square input size."),
    width: float = typer.Option(0.125, "--width", help="VGG16 channel multiplier."),
    threads: int | None = typer.Option(None, "--threads", help="Intra-op threads for every variant."),
    include_compile: bool = typer.Option(True, "--compile/--no-compile", help="Include torch.compile (slow to build)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results and summary here."),
    log_to_mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log table and chart to MLflow."),
) -> None:
    """Training images/s per variant, with the ratio to FP32 eager."""
    from training.bench import BenchConfig, bench_training, finish_bench

    cfg = BenchConfig(steps=steps, batch_size=batch_size, image_size=image_size, width=width, threads=threads,
                      include_compile=include_compile)
    typer.echo(finish_bench("train", bench_training(cfg), cfg, json_out, log_to_mlflow))


@bench_app.command("infer")
def bench_infer(
    iterations: int = typer.Option(100, help="Timed batch-1 calls per variant."),
    batch_size: int = typer.Option(32, "--batch-size", help="Batch size for the throughput figure."),
    image_size: int = typer.Option(64, "--image-size", help="Square input size."),
    width: float = typer.Option(0.125, "--width", help="VGG16 channel multiplier."),
    epochs: int = typer.Option(3, help="Epochs to train the model all variants share (accuracy)."),
    threads: int | None = typer.Option(None, "--threads", help="Intra-op threads for every variant."),
    include_compile: bool = typer.Option(True, "--compile/--no-compile", help="Include compiled variants."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results and summary here."),
    log_to_mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log table and chart to MLflow."),
) -> None:
    """Inference latency p50/p99 at batch 1, images/s and accuracy per variant (FP32, compiled, INT8)."""
    from training.bench import BenchConfig, bench_inference, finish_bench

    cfg = BenchConfig(iterations=iterations, batch_size=batch_size, image_size=image_size, width=width,
                      threads=threads, include_compile=include_compile, epochs=epochs)
    typer.echo(finish_bench("infer", bench_inference(cfg), cfg, json_out, log_to_mlflow))


# Commands owned by other parts of the tree register themselves here.
for _part in ("pipelines.registry_cli", "serving.cli", "pipelines.cli"):
    importlib.import_module(_part).register(app, bench_app)


if __name__ == "__main__":
    app()
