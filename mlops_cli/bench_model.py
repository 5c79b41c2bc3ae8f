"""Side-by-side benchmarks of the optimisation variants (same model, data and thread count, one run).

Figures, not tests: noisy on a shared 2-core machine, which is why variants always run together
and are reported as ratios to FP32 eager.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlops.settings import get_settings
from training.cpu import CpuCapabilities, detect_capabilities
from training.data import Splits, synthetic_splits
from training.model import CustomVGG, ModelConfig
from training.optimize import (
    Backend,
    ipex_available,
    predict_logits,
    select_backend,
    tune_runtime,
)
from training.probe import int8_reduce_range, probe

log = logging.getLogger(__name__)


def bf16_skip(path: str, caps: CpuCapabilities) -> str | None:
    """Why a BF16 variant is not measured here (None: it runs): no BF16 instructions, IPEX missing, or
    its probe failed. Without AMX it is still measured (it may well be slower than FP32; reported, not assumed)."""
    if not caps.has_bf16_unit:
        return "no AMX/AVX512_BF16 on this CPU (emulated BF16 is measured 3-45x slower)"
    if path == "ipex_bf16" and not ipex_available():
        return "IPEX not installed"
    result = probe(path, caps)
    return None if result.ok else f"{path} probe {result.describe()}"



@dataclass
class BenchConfig:
    steps: int = 12
    iterations: int = 100
    batch_size: int = 32
    image_size: int = 64
    width: float = 0.125
    threads: int | None = None
    include_compile: bool = True
    epochs: int = 3
    rounds: int = 3
    n_train: int = 512
    n_val: int = 256
    seed: int = 0
    kit: bool = True
    """Also run every inference variant at the reference kit's real size (:func:`kit_config`)."""
    classifier_only: bool = False
    """Train only the classifier, on the (random) trunk's embeddings: seconds where full training takes hours."""


def kit_config(cfg: BenchConfig) -> BenchConfig:
    """The kit's real model (224 px, width 1.0: VGG16-BN trunk), trained briefly: a full training takes hours
    on 2 cores. Accuracy drops are measured on 256 held-out images against this model's own FP32 accuracy."""
    return replace(cfg, image_size=224, width=1.0, epochs=500, n_train=256, n_val=256, batch_size=8,
                   iterations=min(cfg.iterations, 24), kit=False, classifier_only=True)


@dataclass
class Variant:
    name: str
    images_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    accuracy: float | None = None
    skipped: str | None = None
    ratio: float | None = None
    extra: dict[str, object] = field(default_factory=dict)


def _time_train(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int,
                cl: bool, bf16: bool) -> float:
    model.train()
    xb = x.contiguous(memory_format=torch.channels_last) if cl else x

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(xb), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * x.shape[0] / (time.perf_counter() - start)


def bench_training(cfg: BenchConfig) -> list[Variant]:
    tune_runtime(cfg.threads)
    caps = detect_capabilities()
    torch.manual_seed(cfg.seed)
    base = CustomVGG(ModelConfig(width=cfg.width, image_size=cfg.image_size))
    x = synthetic_splits(cfg.batch_size, 1, cfg.image_size, cfg.seed).train.images
    y = torch.arange(cfg.batch_size) % 2
    plans: list[tuple[str, bool, str | None]] = [("fp32_eager", False, None), ("channels_last", True, None)]
    plans.append(("compiled", True, None if cfg.include_compile else "--no-compile"))
    plans.append(("bf16_autocast", True, bf16_skip("native_bf16", caps)))
    plans.append(("ipex_fp32", True, None if ipex_available() else "IPEX not installed"))
    plans.append(("ipex_bf16", True, bf16_skip("ipex_bf16", caps)))
    built: dict[str, tuple[nn.Module, torch.optim.Optimizer, bool]] = {}
    for name, cl, skip in plans:
        if skip:
            continue
        model = copy.deepcopy(base)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        opt: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        if name.startswith("ipex"):
            import intel_extension_for_pytorch as ipex

            model.train()
            model, opt = ipex.optimize(model, optimizer=opt,
                                       dtype=torch.bfloat16 if name == "ipex_bf16" else torch.float32)
        if name == "compiled":
            model = torch.compile(model)
        built[name] = (model, opt, cl)
    # Interleaved rounds, median per variant: the machine is shared, so noise hits all variants alike.
    samples: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(cfg.rounds):
        for name, (model, opt, cl) in built.items():
            samples[name].append(_time_train(model, opt, x, y, cfg.steps, cl, name in ("bf16_autocast", "ipex_bf16")))
    results = []
    for name, _, skip in plans:
        if skip:
            results.append(Variant(name, skipped=skip))
        else:
            ips = float(np.median(samples[name]))
            log.info("train %-14s %.1f img/s (rounds %s)", name, ips, [round(v, 1) for v in samples[name]])
            results.append(Variant(name, images_per_s=ips))
    return _ratios(results)


def _latencies(fn: Callable[[torch.Tensor], torch.Tensor], x1: torch.Tensor, iterations: int) -> list[float]:
    times = []
    with torch.no_grad():
        fn(x1)
        for _ in range(iterations):
            t = time.perf_counter()
            fn(x1)
            times.append((time.perf_counter() - t) * 1000)
    return times


def _throughput(fn: Callable[[torch.Tensor], torch.Tensor], xb: torch.Tensor, repeats: int = 5) -> float:
    with torch.no_grad():
        fn(xb)
        t = time.perf_counter()
        for _ in range(repeats):
            fn(xb)
    return repeats * xb.shape[0] / (time.perf_counter() - t)


def brief_model(cfg: BenchConfig) -> tuple[CustomVGG, Splits, float]:
    """(model in eval mode, its synthetic splits, FP32 validation accuracy): the shared model the inference
    benches measure, trained briefly (``cfg.classifier_only``: only the classifier, on a random trunk's
    embeddings with batch-norm statistics of the data)."""
    from training.train import TrainConfig, evaluate, train_epoch

    torch.manual_seed(cfg.seed)
    splits = synthetic_splits(cfg.n_train, cfg.n_val, cfg.image_size, cfg.seed)
    # Train the shared model briefly so accuracy means something.
    model = CustomVGG(ModelConfig(width=cfg.width, image_size=cfg.image_size))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    none = select_backend(Backend.none, detect_capabilities(), False)
    tcfg = TrainConfig.from_settings(batch_size=32)
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.classifier_only:  # the trunk's embeddings once, then full-batch steps on the classifier alone
        with torch.no_grad():  # batch-norm statistics of these images first (a random trunk's defaults are not)
            for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
                bn.reset_running_stats()
                bn.momentum = None  # cumulative average over the batches
            model.train()
            for i in range(0, cfg.n_train, 32):
                model(splits.train.images[i : i + 32])
            model.eval()
            emb = torch.cat([model.embed(splits.train.images[i : i + 32]) for i in range(0, cfg.n_train, 32)])
        head = torch.optim.AdamW(model.classifier.parameters(), lr=1e-2)
        for _ in range(cfg.epochs):
            head.zero_grad()
            F.cross_entropy(model.classifier(emb), splits.train.labels).backward()
            head.step()
    for epoch in range(0 if cfg.classifier_only else cfg.epochs):
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(splits.train))
        train_epoch(model, opt, splits.train.images, splits.train.labels, order, tcfg, none, gen, "", False)
        sched.step()
    _, scores = evaluate(model, splits.val.images, splits.val.labels, none)
    log.info("Shared model: val accuracy %.3f", scores.accuracy)
    model.eval()
    return model, splits, scores.accuracy


def bench_inference(cfg: BenchConfig) -> list[Variant]:
    from training.quantize import compile_for_inference, quantize_ipex, quantize_pt2e

    tune_runtime(cfg.threads)
    caps = detect_capabilities()
    model, splits, _ = brief_model(cfg)
    val_x, val_y = splits.val.images, splits.val.labels
    x1, xb = val_x[:1], val_x[: cfg.batch_size]
    calib = [splits.train.images[i : i + 32] for i in range(0, min(256, cfg.n_train), 32)]
    cl = torch.channels_last
    gate_points = get_settings().int8_max_drop_points
    irs: dict[str, object] = {}
    methods: dict[str, str] = {}

    def to_cl(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=cl)

    def build(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        m = copy.deepcopy(model).eval()
        if name == "fp32_eager":
            return m
        if name == "channels_last":
            m = m.to(memory_format=cl)
            return lambda t: m(to_cl(t))
        if name == "compiled":
            m = m.to(memory_format=cl)
            c = compile_for_inference(m)
            return lambda t: c(to_cl(t))
        if name == "bf16_autocast":
            m = m.to(memory_format=cl)

            def run(t: torch.Tensor) -> torch.Tensor:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return m(to_cl(t)).float()
            return run
        if name in ("ipex_fp32", "ipex_bf16"):
            import intel_extension_for_pytorch as ipex

            dtype = torch.bfloat16 if name == "ipex_bf16" else torch.float32
            im = ipex.optimize(m.to(memory_format=cl), dtype=dtype)

            def run_ipex(t: torch.Tensor) -> torch.Tensor:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                    return im(to_cl(t)).float()
            return run_ipex
        if name == "int8_pt2e":
            q = quantize_pt2e(m, calib, val_x[:2], reduce_range=bool(int8_reduce_range(caps)[0]))
            c = compile_for_inference(q)
            return c
        if name == "int8_ipex":
            q = quantize_ipex(m, calib, val_x[:2])
            return lambda t: q(to_cl(t))
        if name.startswith("openvino_"):
            from training import openvino as tov

            if "ir" not in irs:
                irs["ir"] = tov.export_ir(m)
            if name == "openvino_int8":
                q8 = tov.quantize_ir(irs["ir"], calib, val_x, val_y, gate_points)
                methods[name] = q8.method
                return tov.CompiledIR(q8.ir, "f32").logits
            return tov.CompiledIR(irs["ir"], "bf16" if name == "openvino_bf16" else "f32").logits
        raise ValueError(name)

    int8_skip = "--no-compile (INT8 kernels come from inductor)" if not cfg.include_compile else None
    if int8_skip is None:
        int8_range, int8_why = int8_reduce_range(caps)
        int8_skip = None if int8_range is not None else f"no INT8 path passed its probe here: {int8_why}"
    plans = {
        "fp32_eager": None,
        "channels_last": None,
        "compiled": None if cfg.include_compile else "--no-compile",
        "bf16_autocast": bf16_skip("native_bf16", caps),
        "ipex_fp32": None if ipex_available() else "IPEX not installed",
        "ipex_bf16": bf16_skip("ipex_bf16", caps),
        "int8_pt2e": int8_skip,
        "int8_ipex": None if ipex_available() else "IPEX not installed",
        "openvino_fp32": openvino_skip(),
        "openvino_bf16": openvino_skip() or (None if caps.has_bf16_unit else
                                             "no AMX/AVX512_BF16 on this CPU (OpenVINO would not use BF16)"),
        "openvino_int8": openvino_skip(),
    }
    fns: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    prep: dict[str, float] = {}
    for name, skip in plans.items():
        if not skip:
            t0 = time.perf_counter()
            fns[name] = build(name)
            with torch.no_grad():
                fns[name](x1)
                fns[name](xb)
            prep[name] = time.perf_counter() - t0
    lat: dict[str, list[float]] = {n: [] for n in fns}
    ips: dict[str, list[float]] = {n: [] for n in fns}
    per_round = max(1, cfg.iterations // cfg.rounds)
    for _ in range(cfg.rounds):  # interleaved so shared-machine noise hits every variant alike
        for name, fn in fns.items():
            lat[name].extend(_latencies(fn, x1, per_round))
            ips[name].append(_throughput(fn, xb))
    results = []
    for name, skip in plans.items():
        if skip:
            results.append(Variant(name, skipped=skip))
            continue
        logits = predict_logits(fns[name], val_x, cfg.batch_size)
        acc = float((logits.argmax(1) == val_y).float().mean())
        p50, p99 = float(np.percentile(lat[name], 50)), float(np.percentile(lat[name], 99))
        v = Variant(name, images_per_s=float(np.median(ips[name])), p50_ms=p50, p99_ms=p99, accuracy=acc,
                    extra={"prepare_s": round(prep[name], 2), **({"method": methods[name]} if name in methods else {})})
        log.info("infer %-14s p50 %.2f ms p99 %.2f ms %.1f img/s acc %.3f", name, p50, p99, v.images_per_s, acc)
        results.append(v)
    results = _ratios(results, latency=True)
    base_acc = results[0].accuracy or 0.0
    for v in results:  # the accuracy gate every served variant meets; above it a variant is refused, not best
        if v.accuracy is not None:
            drop = 100.0 * (base_acc - v.accuracy)
            v.extra["drop_points"] = round(drop, 3)
            v.extra["gate"] = "accepted" if drop <= gate_points + 1e-9 else f"refused: {drop:.2f} points drop"
    return results


def openvino_skip() -> str | None:
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return f"openvino not installed ({exc})"
    return None


def _ratios(results: list[Variant], latency: bool = False) -> list[Variant]:
    base = results[0]
    for v in results:
        if v.skipped:
            continue
        if latency and v.p50_ms and base.p50_ms:
            v.ratio = base.p50_ms / v.p50_ms
        elif v.images_per_s and base.images_per_s:
            v.ratio = v.images_per_s / base.images_per_s
    return results


def summary(kind: str, results: list[Variant], caps: CpuCapabilities) -> dict[str, object]:
    ran = [v for v in results if not v.skipped and v.ratio is not None]
    if kind == "infer":  # the best variant a user could be served: within the accuracy gate
        ran = [v for v in ran if v.extra.get("gate") == "accepted"]
    best = max(ran, key=lambda v: v.ratio or 0.0)
    out: dict[str, object] = {"best_variant": best.name, "best_speedup_vs_fp32_eager": round(best.ratio or 0.0, 3),
                              "cpu_isa": caps.isa, "cpu_isa_limited_by": caps.limited_by or "none"}
    if kind == "infer":
        base_acc = results[0].accuracy or 0.0
        out["best_accuracy_drop_points"] = round(100 * (base_acc - (best.accuracy or 0.0)), 3)
        out["speedup_metric"] = "p50 latency at batch 1"
        out["refused_above_gate"] = {v.name: v.extra["drop_points"] for v in results
                                     if str(v.extra.get("gate", "")).startswith("refused")}
    else:
        out["speedup_metric"] = "training images/s"
    return out


def render_table(kind: str, results: list[Variant]) -> str:
    if kind == "infer":
        head = f"{'variant':<15}{'img/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'acc':>7}{'drop':>7}{'x fp32':>8}"
        rows = [head]
        for v in results:
            if v.skipped:
                rows.append(f"{v.name:<15}skipped: {v.skipped}")
            else:
                gate = str(v.extra.get("gate", ""))
                rows.append(f"{v.name:<15}{v.images_per_s:>9.1f}{v.p50_ms:>9.2f}{v.p99_ms:>9.2f}"
                            f"{v.accuracy:>7.3f}{v.extra.get('drop_points', 0.0):>7.2f}{v.ratio:>8.2f}"
                            + ("  (refused: over the accuracy gate)" if gate.startswith("refused") else ""))
    else:
        rows = [f"{'variant':<15}{'img/s':>9}{'x fp32':>8}"]
        for v in results:
            rows.append(f"{v.name:<15}skipped: {v.skipped}" if v.skipped
                        else f"{v.name:<15}{v.images_per_s:>9.1f}{v.ratio:>8.2f}")
    return "\n".join(rows)


def finish_bench(
    kind: str, results: list[Variant], cfg: BenchConfig, json_out: Path | None, log_to_mlflow: bool,
    kit_results: list[Variant] | None = None,
) -> str:
    """Table text; writes JSON and logs table + bar chart to MLflow when asked.

    ``kit_results``: the same variants at the kit's size (:func:`kit_config`), reported as ``summary.kit``."""
    caps = detect_capabilities()
    table = f"CPU: {caps.model_name or 'unknown'}, ISA class {caps.isa}" + (
        f" (limited by {caps.limited_by})" if caps.limited_by else "") + "\n"
    table += f"bench size ({cfg.image_size} px, width {cfg.width}):\n" + render_table(kind, results)
    data = {"kind": kind, "config": asdict(cfg), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": caps.as_params(),
            "results": [asdict(v) for v in results], "summary": summary(kind, results, caps)}
    if kit_results is not None:
        kit = kit_config(cfg)
        kit_summary = summary(kind, kit_results, caps)
        kit_summary["trained"] = (f"briefly: random VGG16-BN trunk (no pretrained weights reachable here), classifier "
                                  f"fitted in {kit.epochs} full-batch steps on its embeddings of {kit.n_train} "
                                  f"synthetic images; drops measured on {kit.n_val} held-out images against this "
                                  f"model's FP32 accuracy {kit_results[0].accuracy:.3f}")
        kit_summary["image_size"], kit_summary["width"] = kit.image_size, kit.width
        data["kit_config"], data["kit_results"] = asdict(kit), [asdict(v) for v in kit_results]
        data["summary"]["kit"] = kit_summary  # type: ignore[index]
        table += f"\nkit size ({kit.image_size} px, width {kit.width}):\n" + render_table(kind, kit_results)
    if json_out:
        json_out.write_text(json.dumps(data, indent=2))
    if log_to_mlflow:
        import mlflow

        from mlops.settings import get_settings
        from mlops.tracking import load_client_env
        from training import tracking
        from training.metrics import bar_figure

        load_client_env()
        tracking.set_experiment(get_settings().experiment_name + "-bench")
        with mlflow.start_run(run_name=f"bench-{kind}"):
            tracking.log_params({**{k: v for k, v in asdict(cfg).items()}, "bench": kind,
                                 "threads": torch.get_num_threads()})
            ran = [v for v in results if not v.skipped]
            tracking.log_metrics({f"{v.name}_speedup": v.ratio or 0.0 for v in ran})
            tracking.log_text(table, f"bench_{kind}.txt")
            tracking.log_dict(data, f"bench_{kind}.json")
            tracking.log_figure(bar_figure([v.name for v in ran], [v.ratio or 0.0 for v in ran], "x FP32 eager"),
                                f"bench_{kind}.png")
    return table + "\n" + json.dumps(data["summary"])
