"""Train the pill quality model and log everything to the tracking server.

Call :func:`train` from a notebook or through ``mlops train``. The tracking server is
``MLFLOW_TRACKING_URI``; when unset, ``.mlops/local.env`` (written by ``make up``) is used.
"""

from __future__ import annotations

import json
import logging
import statistics
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mlops.settings import get_settings
from mlops.tracking import load_client_env
from training import distributed, tracking
from training.cpu import detect_capabilities
from training.data import CLASS_NAMES, ImageSet, Splits, mvtec_splits, synthetic_splits
from training.metrics import Scores, confusion_figure, curves_figure, score
from training.model import CustomVGG, ModelConfig, build_model, plain_copy
from training.optimize import (
    Backend,
    BackendChoice,
    Bf16Autocast,
    autocast,
    interleaved_latencies_ms,
    ipex_available,
    ipex_version,
    predict_logits,
    prepare_training,
    select_backend,
    to_memory_format,
    tune_runtime,
)
from training.probe import int8_reduce_range
from training.profile import ReferenceImages, log_profile
from training.quantize import (
    AccuracyGateError,
    GateResult,
    check_accuracy_gate,
    compile_for_inference,
    quantize_ipex,
    quantize_pt2e,
    save_pt2e,
)

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Every hyperparameter of a run (all logged as params).

    The first group's values come from the settings (:meth:`from_settings`; no defaults here, the
    settings class is their one source); the second group are per-run options with their defaults.
    """

    epochs: int
    batch_size: int
    learning_rate: float
    image_size: int
    width: float
    n_train: int
    n_val: int
    seed: int
    backend: Backend
    threads: int | None
    int8_max_drop_points: float
    calibration_images: int
    experiment_name: str
    model_name: str
    weight_decay: float = 1e-4
    batch_norm: bool = True
    val_fraction: float = 0.2
    data: Path | None = None
    category: str = "pill"
    pretrained: Path | None = None
    freeze_trunk: bool = False
    compile: bool = False
    int8: bool = True
    int8_required: bool = True
    """An INT8 model refused by the accuracy gate fails the run (``mlops train``); False: the FP32 model stands,
    logged (the retrain loop: serving then runs FP32)."""
    register: bool = True

    @classmethod
    def from_settings(cls, **overrides: object) -> TrainConfig:
        s = get_settings()
        values: dict[str, object] = {
            "epochs": s.train_epochs,
            "batch_size": s.train_batch_size,
            "learning_rate": s.train_learning_rate,
            "image_size": s.train_image_size,
            "width": s.train_width,
            "n_train": s.train_n_train,
            "n_val": s.train_n_val,
            "seed": s.train_seed,
            "backend": Backend(s.train_backend),
            "threads": s.train_threads,
            "int8_max_drop_points": s.int8_max_drop_points,
            "calibration_images": s.int8_calibration_images,
            "experiment_name": s.experiment_name,
            "model_name": s.model_name,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def as_params(self) -> dict[str, object]:
        params = {k: (v.value if isinstance(v, Backend) else v) for k, v in asdict(self).items()}
        params["data"] = str(self.data) if self.data else "synthetic"
        return params

    def worker_args(self) -> list[str]:
        """The ``mlops train`` options that reproduce this config inside a torchrun worker."""
        args = [
            f"--epochs={self.epochs}", f"--batch-size={self.batch_size}", f"--lr={self.learning_rate}",
            f"--image-size={self.image_size}", f"--width={self.width}", f"--n-train={self.n_train}",
            f"--n-val={self.n_val}", f"--seed={self.seed}", f"--backend={self.backend.value}",
            f"--max-int8-drop={self.int8_max_drop_points}", f"--experiment={self.experiment_name}",
            f"--model-name={self.model_name}",
            "--int8" if self.int8 else "--no-int8",
            "--register" if self.register else "--no-register",
        ]
        if self.compile:
            args.append("--compile")
        if self.threads:
            args.append(f"--threads={self.threads}")
        if self.data:
            args.append(f"--data={self.data}")
        if self.pretrained:
            args.append(f"--pretrained={self.pretrained}")
        return args


@dataclass
class TrainResult:
    run_id: str | None
    model_uri: str | None
    registered_version: str | None
    backend: str
    final: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    int8_gate: GateResult | None = None
    int8_artifact: str | None = None
    openvino_int8: str | None = None


def load_splits(config: TrainConfig) -> Splits:
    if config.data is not None:
        return mvtec_splits(config.data, config.image_size, config.val_fraction, config.seed, config.category)
    return synthetic_splits(config.n_train, config.n_val, config.image_size, config.seed)


def evaluate(
    model: nn.Module, splits_val_x: torch.Tensor, labels: torch.Tensor, choice: BackendChoice
) -> tuple[float, Scores]:
    model.eval()
    with autocast(choice):
        logits = predict_logits(model, splits_val_x, 64, prepare=lambda b: to_memory_format(b, choice))
    loss = float(F.cross_entropy(logits, labels))
    return loss, score(logits, labels)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal/vertical flips (pills are symmetric under both)."""
    if torch.rand((), generator=generator) < 0.5:
        x = x.flip(3)
    if torch.rand((), generator=generator) < 0.5:
        x = x.flip(2)
    return x


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    order: np.ndarray,
    config: TrainConfig,
    choice: BackendChoice,
    generator: torch.Generator,
    desc: str,
    show_progress: bool,
) -> tuple[float, int, float]:
    """One pass over ``order``; returns (mean loss, images seen, seconds)."""
    model.train()
    total, seen = 0.0, 0
    steps = range(0, len(order) - len(order) % config.batch_size or len(order), config.batch_size)
    start = time.perf_counter()
    for i in tqdm(steps, desc=desc, leave=False, disable=not show_progress):
        idx = torch.as_tensor(order[i : i + config.batch_size])
        xb = to_memory_format(_augment(x[idx], generator), choice)
        yb = y[idx]
        with autocast(choice):
            loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
        seen += len(idx)
    return total / max(seen, 1), seen, time.perf_counter() - start


def with_extra(splits: Splits, extra: ImageSet | None) -> Splits:
    """``extra`` (e.g. labelled served images) appended to the training split; validation unchanged."""
    if extra is None or len(extra) == 0:
        return splits
    if extra.images.shape[1:] != splits.train.images.shape[1:]:
        raise ValueError(f"extra examples have shape {tuple(extra.images.shape[1:])}, the training images "
                         f"{tuple(splits.train.images.shape[1:])}: preprocess them to the same image size")
    sources = extra.sources or ["labelled"] * len(extra)
    train_set = ImageSet(torch.cat([splits.train.images, extra.images]),
                         torch.cat([splits.train.labels, extra.labels.to(splits.train.labels.dtype)]),
                         [*splits.train.sources, *sources])
    return Splits(train_set, splits.val, splits.source)


def train(config: TrainConfig, show_progress: bool = True, extra: ImageSet | None = None,
          reference: ReferenceImages | None = None, run_id: str | None = None) -> TrainResult:
    """Train, evaluate per epoch, log to MLflow (rank 0), register the model, quantize to INT8.

    ``extra``: labelled examples appended to the training split (logged as ``labelled_examples``);
    the validation split stays the reference one, so runs remain comparable. ``reference``: what the
    drift reference profile describes instead of the training data (logged as ``reference_source``).
    ``run_id``: log into this existing run (the retrain loop creates and tags it first) instead of a new one.
    """
    ctx = distributed.init_from_env()
    try:
        return _train(config, ctx, show_progress and ctx.is_main, extra, reference, run_id)
    finally:
        distributed.shutdown(ctx)


def _train(config: TrainConfig, ctx: distributed.DistContext, show_progress: bool,
           extra: ImageSet | None, reference: ReferenceImages | None, run_id: str | None) -> TrainResult:
    torch.manual_seed(config.seed)
    tuning = tune_runtime(config.threads, ctx.local_world_size)
    caps = detect_capabilities()
    choice = select_backend(config.backend, caps, ipex_available(), config.compile)
    log.info("Backend %s (%s): %s", choice.name.value, str(choice.dtype), choice.reason)

    splits = with_extra(load_splits(config), extra)
    model_config = ModelConfig(width=config.width, batch_norm=config.batch_norm, image_size=config.image_size)
    model: nn.Module = build_model(model_config, config.pretrained, config.freeze_trunk)
    optimizer: torch.optim.Optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate, weight_decay=config.weight_decay
    )
    model, optimizer = prepare_training(model, optimizer, choice)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, config.epochs))
    if ctx.enabled:
        model = nn.parallel.DistributedDataParallel(model)

    run = None
    if ctx.is_main:
        load_client_env()
        tracking.set_experiment(config.experiment_name)
        run = mlflow.start_run(run_id=run_id)
        log.info("MLflow run %s at %s", run.info.run_id, mlflow.get_tracking_uri())
    try:
        if ctx.is_main:
            params: dict[str, object] = {
                **config.as_params(),
                **model_config.as_params(),
                **choice.as_params(),
                **caps.as_params(),
                **tuning.as_params(),
                "torch_version": torch.__version__,
                "ipex_version": ipex_version(),
                "world_size": ctx.world_size,
                "dist_backend": ctx.backend,
                "n_train_images": len(splits.train),
                "labelled_examples": len(extra) if extra is not None else 0,
                "reference_source": reference.source if reference is not None else "training",
                "reference_images": len(splits.train) + len(splits.val) if reference is None
                else len(reference.features),
                "n_val_images": len(splits.val),
                "data_source": splits.source,
                "embedding_dim": plain_copy(model).embedding_dim,
            }
            tracking.log_params(params)
            tracking.set_tags({"stage": "training", "backend": choice.name.value})

        history: list[dict[str, float]] = []
        generator = torch.Generator().manual_seed(config.seed + ctx.rank)
        for epoch in range(1, config.epochs + 1):
            order = distributed.shard(len(splits.train), ctx, config.seed, epoch)
            loss, seen, seconds = train_epoch(
                model, optimizer, splits.train.images, splits.train.labels, order, config, choice,
                generator, f"epoch {epoch}/{config.epochs}", show_progress,
            )
            scheduler.step()
            seconds = distributed.max_across(seconds, ctx)
            ips = seen * ctx.world_size / seconds
            if ctx.is_main:
                # Evaluate the unwrapped module: a DDP forward broadcasts buffers (a collective).
                inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
                val_loss, scores = evaluate(inner, splits.val.images, splits.val.labels, choice)
                row = {"epoch": epoch, "train_loss": loss, "val_loss": val_loss, **scores.as_metrics(),
                       "train_images_per_s": ips}
                history.append(row)
                tracking.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
                log.info(
                    "epoch %d/%d  loss %.4f  val_loss %.4f  acc %.3f  f1 %.3f  auroc %.3f  %.1f img/s",
                    epoch, config.epochs, loss, val_loss, scores.accuracy, scores.f1, scores.auroc, ips,
                )
        distributed.barrier(ctx)
        if not ctx.is_main:
            return TrainResult(None, None, None, choice.name.value, {}, [])
        result = _finish(config, model, splits, choice, history, run.info.run_id if run else None, reference)
    except BaseException:
        if run is not None:
            mlflow.end_run(status="FAILED")
        raise
    if run is not None:
        mlflow.end_run(status="FINISHED")
    return result


def _finish(
    config: TrainConfig,
    model: nn.Module,
    splits: Splits,
    choice: BackendChoice,
    history: list[dict[str, float]],
    run_id: str | None,
    reference: ReferenceImages | None = None,
) -> TrainResult:
    plain = plain_copy(model)
    with torch.no_grad():
        fp32_logits = predict_logits(plain, splits.val.images)
    final = score(fp32_logits, splits.val.labels)
    tracking.log_metrics({"final_val_accuracy": final.accuracy, "final_val_f1": final.f1,
                          "final_val_auroc": final.auroc})
    if history:
        tracking.log_figure(curves_figure(history), "plots/training_curves.png")
    tracking.log_figure(confusion_figure(final.confusion, CLASS_NAMES), "plots/confusion_matrix.png")
    # The drift reference profile travels with the run the model version is registered from.
    log_profile(plain, splits, reference)

    with tempfile.TemporaryDirectory(prefix="mlops-ir-") as ir_dir:
        openvino_int8 = export_openvino(plain, splits, config, Path(ir_dir))
        model_info = log_model(plain, config, splits, Path(ir_dir))
    result = TrainResult(
        run_id=run_id,
        model_uri=model_info.model_uri,
        registered_version=str(model_info.registered_model_version) if model_info.registered_model_version else None,
        backend=choice.name.value,
        final=final.as_metrics("final_val_"),
        history=history,
    )
    result.openvino_int8 = openvino_int8
    if config.int8:
        result.int8_gate, result.int8_artifact = quantize_and_gate(plain, splits, choice, config, final.accuracy)
    return result


def _gate(result: GateResult) -> str:
    """The run tag value of an accuracy gate's outcome."""
    return "accepted" if result.passed else "refused"


def export_openvino(plain: CustomVGG, splits: Splits, config: TrainConfig, out: Path) -> str:
    """Write the version's OpenVINO IRs (FP32, and NNCF INT8 when it passes the gate) into ``out`` and log them
    as ``openvino/`` with their accuracy and latency (the registered model's pyfunc carries them too).

    Returns the INT8 IR's gate outcome (``accepted``, ``refused``, ``skipped`` or ``unavailable``), also the
    run tag ``openvino_int8_gate``. Serving runs these IRs; a run without them still serves (they are then
    built at load).
    """
    try:
        from training import openvino as tov
    except ImportError as exc:  # an environment without the openvino extra: serving builds the IRs at load
        tracking.set_tags({"openvino_int8_gate": "unavailable", "openvino_ir": f"unavailable: {exc}"})
        log.warning("OpenVINO IRs not built (%s); serving will build them at load.", exc)
        return "unavailable"
    fp32_ir = tov.export_ir(plain)
    metrics: dict[str, float] = {}
    int8 = None
    gate = "skipped"
    if config.int8:
        calib = splits.train.images[: config.calibration_images]
        int8 = tov.quantize_ir(fp32_ir, [calib[i : i + 32] for i in range(0, calib.shape[0], 32)],
                               splits.val.images, splits.val.labels, config.int8_max_drop_points)
        gate = _gate(GateResult(int8.fp32_accuracy, int8.int8_accuracy, config.int8_max_drop_points))
        metrics |= {"openvino_fp32_val_accuracy": int8.fp32_accuracy, "openvino_int8_val_accuracy": int8.int8_accuracy,
                    "openvino_int8_accuracy_drop_points": int8.drop_points}
        tracking.log_params({"openvino_int8_method": int8.method})
    runners = {"fp32_eager": plain, "openvino_fp32": tov.CompiledIR(fp32_ir, "f32").logits}
    if int8 is not None:
        runners["openvino_int8"] = tov.CompiledIR(int8.ir, "f32").logits
    tags: dict[str, str] = {}
    if detect_capabilities().has_bf16_unit:  # BF16 rounds too: held to the same gate as INT8 (serving obeys it)
        bf16 = tov.CompiledIR(fp32_ir, "bf16").logits
        fp32_acc = (int8.fp32_accuracy if int8 is not None  # quantize_ir scored the FP32 IR on these images
                    else tov.accuracy(runners["openvino_fp32"], splits.val.images, splits.val.labels))
        runners["openvino_bf16"] = bf16
        # OpenVINO's BF16 hint and serving's torch BF16 autocast variant, each against the same FP32 figure.
        for name, fn in (("openvino_bf16", bf16), ("bf16", Bf16Autocast(plain).eval())):
            with torch.no_grad():
                result = GateResult(fp32_acc, tov.accuracy(fn, splits.val.images, splits.val.labels),
                                    config.int8_max_drop_points)
            metrics[f"{name}_accuracy_drop_points"] = result.drop_points
            tags[f"{name}_gate"] = _gate(result)
    with torch.no_grad():
        samples = interleaved_latencies_ms(list(runners.values()), [splits.val.images] * len(runners), iterations=50)
    metrics |= {f"{k}_latency_ms": statistics.median(v) for k, v in zip(runners, samples, strict=True)}
    ov_version, nncf_version = tov.versions()
    tov.save_ir(fp32_ir, out / tov.FP32_XML)
    if gate == "accepted" and int8 is not None:
        tov.save_ir(int8.ir, out / tov.INT8_XML)
    tov.IrMeta(openvino_version=ov_version, nncf_version=nncf_version, image_size=plain.config.image_size,
               outputs=tov.OUTPUTS, fp32=tov.FP32_XML, int8=tov.INT8_XML if gate == "accepted" else None,
               int8_method=int8.method if int8 else None, int8_gate=gate,
               fp32_val_accuracy=int8.fp32_accuracy if int8 else None,
               int8_val_accuracy=int8.int8_accuracy if int8 else None).write(out)
    for f in sorted(out.iterdir()):
        tracking.log_artifact(str(f), tov.ARTIFACT_DIR)
    tracking.log_metrics(metrics)
    tracking.log_params({"openvino_version": ov_version, "nncf_version": nncf_version or "none"})
    tracking.set_tags({"openvino_int8_gate": gate, "openvino_ir": tov.ARTIFACT_DIR, **tags})
    if gate == "refused" and int8 is not None:
        log.warning("OpenVINO INT8 refused: validation accuracy %.2f%% is %.2f points below FP32's %.2f%% (allowed "
                    "%.2f); serving uses the FP32 IR.", 100 * int8.int8_accuracy, int8.drop_points,
                    100 * int8.fp32_accuracy, config.int8_max_drop_points)
    else:
        log.info("OpenVINO IRs logged (INT8 %s): %s", gate,
                 ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return gate


def log_model(plain: CustomVGG, config: TrainConfig, splits: Splits,
              ir_dir: Path | None = None) -> mlflow.models.model.ModelInfo:
    """Log ``model_state/`` (state_dict + config: what serving loads, no IPEX, no compile) and the registered
    model, with signature and example: the OpenVINO pyfunc (:mod:`training.openvino_pyfunc`) carrying the
    IRs in ``ir_dir``; without IRs, the plain PyTorch module."""
    example = splits.val.images[:2].numpy()
    with torch.no_grad():
        output = plain(torch.from_numpy(example)).numpy()
    signature = mlflow.models.infer_signature(example, output)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state_dict.pt"
        torch.save(plain.state_dict(), state)
        cfg = Path(tmp) / "model_config.json"
        cfg.write_text(json.dumps(asdict(plain.config), indent=2))
        tracking.log_artifact(str(state), "model_state")
        tracking.log_artifact(str(cfg), "model_state")
        common = {"name": "model", "signature": signature, "input_example": example,
                  "registered_model_name": config.model_name if config.register else None}
        numpy_pin = f"numpy=={np.__version__}"
        if ir_dir is not None and any(ir_dir.iterdir()):
            import openvino

            from training import openvino_pyfunc

            archive = Path(tmp) / openvino_pyfunc.ARCHIVE
            with tarfile.open(archive, "w") as tar:
                for f in sorted(ir_dir.iterdir()):
                    tar.add(f, arcname=f.name)

            @tracking.retry
            def _log() -> mlflow.models.model.ModelInfo:
                return mlflow.pyfunc.log_model(
                    loader_module="openvino_pyfunc", data_path=str(archive), code_paths=[openvino_pyfunc.__file__],
                    pip_requirements=[f"mlflow=={mlflow.__version__}", numpy_pin,
                                      f"openvino=={openvino.__version__.split('-')[0]}"], **common)
        else:

            @tracking.retry
            def _log() -> mlflow.models.model.ModelInfo:
                return mlflow.pytorch.log_model(
                    plain, pip_requirements=[f"torch=={torch.__version__.split('+')[0]}",
                                             f"mlflow=={mlflow.__version__}", numpy_pin], **common)

        info = _log()
    log.info("Logged model %s (registered %s v%s)", info.model_uri, config.model_name if config.register else "-",
             info.registered_model_version)
    return info


def quantize_and_gate(
    plain: CustomVGG, splits: Splits, choice: BackendChoice, config: TrainConfig, fp32_accuracy: float
) -> tuple[GateResult | None, str | None]:
    """INT8 on the run's backend, calibrated on training images; logged, then gated.

    A refusal raises :class:`AccuracyGateError` when ``config.int8_required``; otherwise it is logged and
    tagged (``int8_gate=refused``, so serving never loads the INT8 program) and ``(None, None)`` returned.
    """
    calib = splits.train.images[: config.calibration_images]
    calibration = [calib[i : i + 32] for i in range(0, calib.shape[0], 32)]
    example = splits.val.images[:2]
    artifact = None
    if choice.name == Backend.ipex:
        qmodel = quantize_ipex(plain_copy(plain), calibration, example)
        logits = predict_logits(qmodel, splits.val.images, 64,
                                prepare=lambda b: b.contiguous(memory_format=torch.channels_last))
        method = "ipex.quantization static (TorchScript; needs IPEX to load)"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model_int8_ipex.pt"
            torch.jit.save(qmodel, path)
            tracking.log_artifact(str(path), "int8_ipex")
        artifact = "int8_ipex/model_int8_ipex.pt"
    else:
        # Full-range or 7-bit activations, whichever the INT8 probe proved on this CPU (see quantize_pt2e);
        # gate what serving runs: the inductor-compiled INT8 kernels, not the eager q/dq graph.
        reduce_range, why = int8_reduce_range()
        tracking.log_params({"int8_probe": why[:500]})
        if reduce_range is None:
            # Not a refusal of this model: the CPU cannot run INT8 correctly. The FP32 model stands.
            tracking.set_tags({"int8_gate": "unavailable"})
            log.warning("INT8 skipped: no INT8 path passed its probe on this CPU (%s); the FP32 model stands.", why)
            return None, None
        converted = quantize_pt2e(plain_copy(plain), calibration, example, reduce_range=reduce_range)
        logits = predict_logits(compile_for_inference(converted), splits.val.images, 64)
        tracking.log_params({"int8_reduce_range": reduce_range})
        method = "PT2E X86InductorQuantizer static, compiled (torch.export.save; load with training.quantize.load_pt2e)"
        with tempfile.TemporaryDirectory() as tmp:
            path = save_pt2e(converted, example, Path(tmp) / "model_int8.pt2")
            meta = Path(tmp) / "int8.json"
            meta.write_text(json.dumps({"format": "torch.export", "loader": "training.quantize.load_pt2e",
                                        "needs": ["torch", "torchao"], "input_shape": [-1, 3, config.image_size,
                                                                                        config.image_size]}))
            tracking.log_artifact(str(path), "int8")
            tracking.log_artifact(str(meta), "int8")
        artifact = "int8/model_int8.pt2"
    int8_acc = float((logits.argmax(1) == splits.val.labels).float().mean())
    drop = 100.0 * (fp32_accuracy - int8_acc)
    tracking.log_metrics({"int8_fp32_val_accuracy": fp32_accuracy, "int8_val_accuracy": int8_acc,
                          "int8_accuracy_drop_points": drop})
    tracking.log_params({"int8_method": method, "int8_max_drop_points": config.int8_max_drop_points})
    try:
        gate = check_accuracy_gate(fp32_accuracy, int8_acc, config.int8_max_drop_points)
    except AccuracyGateError as exc:
        tracking.set_tags({"int8_gate": "refused"})
        if config.int8_required:
            raise
        log.warning("%s The FP32 model stands; serving will not use INT8 for it.", exc)
        return None, None
    except Exception:
        tracking.set_tags({"int8_gate": "refused"})
        raise
    tracking.set_tags({"int8_gate": "accepted", "int8_artifact": artifact})
    return gate, artifact
