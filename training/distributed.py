"""Scale-out: PyTorch DDP launched through ``torchrun`` (gloo on CPU; oneCCL where installed).

``mlops train --nproc-per-node N`` re-runs itself under ``torchrun``; each worker sees the
``WORLD_SIZE``/``RANK`` variables torchrun sets, joins the process group, trains on its shard
and only rank 0 talks to MLflow.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


def process_group_backend() -> str:
    """oneCCL when its bindings are installed, gloo otherwise."""
    if importlib.util.find_spec("oneccl_bindings_for_pytorch") is not None:
        import oneccl_bindings_for_pytorch  # noqa: F401

        return "ccl"
    return "gloo"


def init_from_env() -> DistContext:
    """Join the process group when launched by torchrun; a single-process context otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    backend = process_group_backend()
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    ctx = DistContext(
        rank=dist.get_rank(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=dist.get_world_size(),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        backend=backend,
    )
    log.info("DDP rank %d/%d (local %d) on %s", ctx.rank, ctx.world_size, ctx.local_rank, backend)
    return ctx


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard(n: int, ctx: DistContext, seed: int, epoch: int) -> np.ndarray:
    """This rank's shuffled sample indices for an epoch; every rank gets the same count (no DDP hang)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    per_rank = n // ctx.world_size
    return order[ctx.rank * per_rank : (ctx.rank + 1) * per_rank] if ctx.enabled else order


def max_across(value: float, ctx: DistContext) -> float:
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def torchrun_command(
    nproc_per_node: int,
    worker_args: list[str],
    nnodes: str = "1",
    node_rank: int | None = None,
    rdzv_endpoint: str | None = None,
    rdzv_id: str = "mlops-train",
) -> list[str]:
    """``python -m torch.distributed.run … -m mlops_cli train <worker_args>``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc_per_node}"]
    if rdzv_endpoint:
        cmd += [f"--nnodes={nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}", f"--rdzv-id={rdzv_id}"]
        if node_rank is not None:
            cmd.append(f"--node-rank={node_rank}")
    else:
        if nnodes not in ("1", "1:1"):
            raise ValueError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT reachable from every node")
        cmd.append("--standalone")
    return [*cmd, "-m", "mlops_cli", "train", *worker_args]


def launch(cmd: list[str], env: dict[str, str]) -> int:
    """Run torchrun with the tuning variables for its workers; returns its exit code."""
    full_env = {**os.environ, **env}
    log.info("Launching: %s (env %s)", " ".join(cmd), env)
    return subprocess.run(cmd, env=full_env, check=False).returncode
