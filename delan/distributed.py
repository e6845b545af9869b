"""Data-parallel training across processes: the process group and what the trainer asks of it.

``torchrun --nproc-per-node N -m delan train DATA.h5 -o RUN ...`` starts N copies of the trainer
with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in their environment;
:func:`init_from_env` joins them into one process group (gloo on CPU, NCCL when training on
CUDA). Every rank then builds the same model from the same seed and walks the same global
minibatch order; each steps on its slice of every global batch
(:func:`delan.data.streaming.shard`), and DistributedDataParallel averages the gradients, so the
weights stay those of one process on the global batch up to the order of floating-point sums.
Rank 0 alone holds the run lock and writes the run directory.

Without torchrun (no WORLD_SIZE, or WORLD_SIZE 1) nothing changes: :func:`current` is the
single process, and the trainer takes its ordinary path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from delan.errors import RunError


@dataclass(frozen=True)
class Dist:
    """This process's place in the group: ``rank`` of ``world`` (1: no group)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    # -- collectives the trainer needs (no-ops for one process) --------------------------------
    def sum_floats(self, values: Dict[str, float]) -> Dict[str, float]:
        """``values`` summed over the ranks (same keys on every rank, in float64)."""
        if not self.active or not values:
            return values
        import torch.distributed as dist

        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self._device())
        dist.all_reduce(t)
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def max_ints(self, values):
        """The elementwise largest of ``values`` (a list of ints) over the ranks (e.g. a stop
        signal or a bad loss seen by any of them)."""
        if not self.active:
            return list(values)
        import torch.distributed as dist

        t = torch.tensor([int(v) for v in values], dtype=torch.int64, device=self._device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [int(v) for v in t.tolist()]

    def from_main(self, value: float) -> float:
        """Rank 0's ``value`` on every rank (decisions that must agree: the clock, say)."""
        if not self.active:
            return value
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64, device=self._device())
        dist.broadcast(t, 0)
        return float(t.item())

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def _device(self) -> str:
        return f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu"


_CURRENT = Dist()


def current() -> Dist:
    """The group this process belongs to (the single process unless :func:`init_from_env` ran)."""
    return _CURRENT


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def init_from_env(device: str = "cpu") -> Dist:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT): NCCL for a CUDA ``device`` (each rank on GPU LOCAL_RANK), else
    gloo. A WORLD_SIZE of 1 (or none) is the single process. RunError for a broken environment."""
    global _CURRENT
    import torch.distributed as dist

    try:
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        rank = int(os.environ.get("RANK", "0") or 0)
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    except ValueError:
        raise RunError("torchrun environment: RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    if world <= 1:
        _CURRENT = Dist()
        return _CURRENT
    if not (0 <= rank < world):
        raise RunError(f"torchrun environment: RANK {rank} outside 0..{world - 1}")
    cuda = str(device).startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise RunError("--device cuda under torchrun, but torch sees no CUDA device")
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    _CURRENT = Dist(rank, world, local, backend)
    return _CURRENT


def shutdown() -> None:
    """Leave the process group (so that the processes end cleanly)."""
    global _CURRENT
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = Dist()


def rank_device(device: str, d: Dist) -> str:
    """The device of rank ``d``: a CUDA run puts every rank on its own GPU (LOCAL_RANK)."""
    return f"cuda:{d.local_rank}" if d.active and str(device).startswith("cuda") else device


class _LossModule(nn.Module):
    """The loss of a model on a batch as a module, so DistributedDataParallel's forward (which
    sets up the gradient averaging of the backward pass) runs around it."""

    def __init__(self, model: nn.Module, loss_fn: Callable[..., Tuple[Tensor, Dict[str, Tensor]]]) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Dict[str, Tensor], weight: float) -> Tuple[Tensor, Dict[str, Tensor]]:
        total, parts = self.loss_fn(self.model, batch)
        return total * weight, parts


class ParallelLoss:
    """``loss(batch, global_size)`` for one rank: its slice's mean loss times
    ``world * slice / global_size``, so that DDP's average of the ranks' gradients is the
    gradient of the global batch's mean loss even when the slices differ in size.

    Returns (weighted total for backward, the slice's unweighted total, parts, slice size)."""

    def __init__(self, model: nn.Module, loss_fn, d: Dist) -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.d = d
        ids = [d.local_rank] if d.backend == "nccl" else None
        # the models' buffers are constants, the same on every rank: no broadcast before each step
        # (torch >= 2.12 spells that forward_sync_buffers, and deprecates broadcast_buffers)
        import inspect

        params = inspect.signature(DistributedDataParallel.__init__).parameters
        sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
        self.ddp = DistributedDataParallel(_LossModule(model, loss_fn), device_ids=ids, **sync)

    def __call__(self, batch: Dict[str, Tensor], global_size: int) -> Tuple[Tensor, Tensor, Dict[str, Tensor], int]:
        from delan.data.streaming import shard

        part = shard(batch, self.d.rank, self.d.world)
        b = int(part["q"].shape[0])
        if b == 0:
            # a last batch smaller than the group: this rank still joins the gradient average, with
            # weight 0 on one sample of the batch
            part = {k: (v[:1] if isinstance(v, Tensor) and v.dim() > 0 else v) for k, v in batch.items()}
        weight = self.d.world * b / float(global_size)
        total, parts = self.ddp(part, weight)
        plain = total / weight if weight else total.detach() * 0
        return total, plain, parts, b
