"""Training steps replayed from a CUDA graph: a GPU step at the hardware's pace.

On a GPU a DeLaN training step is a few hundred small kernels, and at the batch sizes DeLaN
trains with, launching them one by one from Python takes longer than running them (an H200 ran
a 7-DoF step at batch 8192 in 3.07 ms eager, 6 % of its matmul rate). :class:`GraphedSteps`
records one whole step once as a CUDA graph -- the gather of the minibatch from the training
tensors held on the GPU, the loss, its backward, the optimiser's update and the sums of the loss
parts -- and replays it with one launch per step. A replay runs the eager step's own kernels on
the same memory, so it computes what the eager step computes.

What a graph fixes, and how training lives with it:

* the batch size: the last, smaller minibatch of an epoch steps eagerly (the same code);
* the storage of parameters, gradients and optimiser state: everything updates in place
  (``load_state_dict`` copies into it, so restoring the best weights keeps the graph valid);
* the learning rate: the graph reads it from a tensor on the GPU that :meth:`set_lr` fills
  (Adam with ``capturable=True``; the optimiser's own ``lr`` stays a float for checkpoints);
* no host synchronisation inside: the sums of the loss parts stay on the GPU until
  :meth:`take_sums`, so a loss that stops being finite is seen when its epoch ends, not at its
  step; the forward loss solves with :func:`delan.dynamics.solve_spd_unchecked`, whose failed
  factorisation shows up the same way, as non-finite sums.

The first full steps run eagerly on a side stream (cuBLAS and the optimiser's state initialise
outside the capture, as CUDA graphs need) and are training steps like any other. On a device
other than CUDA nothing is captured and every step is eager: the same code, for tests.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from delan.errors import first_line

WARMUP_STEPS = 3  # eager full steps before the capture

LossFn = Callable[[nn.Module, Dict[str, Tensor]], Tuple[Tensor, Dict[str, Tensor]]]


def set_capturable(optimizer: torch.optim.Optimizer, on: bool) -> None:
    """Set ``capturable`` on every parameter group of ``optimizer`` (Adam/AdamW) and put each
    parameter's step count where that mode keeps it: on the parameter's device when capturable
    (a checkpoint is read onto the CPU), a CPU tensor otherwise."""
    for group in optimizer.param_groups:
        group["capturable"] = on
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if "step" in state:
                state["step"] = state["step"].to(device=p.device if on else "cpu", dtype=torch.float32)


class GraphedSteps:
    """The training steps of one run, full minibatches replayed from a CUDA graph.

    Args:
        model, optimizer, loss_fn: as the trainer's (``loss_fn(model, batch) -> (total, parts)``
            with scalar parts); the optimiser must be capturable on CUDA (:func:`set_capturable`).
        train: the training tensors (N, ...) by name, on the model's device.
        batch_size: the size of a full minibatch, the one the graph is captured for.
        grad_clip: clip the gradient norm to this (None = no clipping), as the eager step does.
        warmup: eager full steps before the capture (>= 1).
        capture: record a graph (on CUDA; elsewhere never). False: every step eager, the same
            code without the graph, e.g. as the reference a captured run must equal.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: LossFn,
        train: Dict[str, Tensor],
        batch_size: int,
        grad_clip: Optional[float] = None,
        warmup: int = WARMUP_STEPS,
        capture: bool = True,
    ):
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1 (the capture needs the optimiser's state), got {warmup}")
        self.model, self.optimizer, self.loss_fn, self.train = model, optimizer, loss_fn, train
        self.batch_size, self.grad_clip, self.warmup = int(batch_size), grad_clip, int(warmup)
        self.device = next(iter(train.values())).device
        self.capture = bool(capture) and self.device.type == "cuda"
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.note: Optional[str] = None  # why the capture failed (steps stay eager)
        self.names: List[str] = []  # "loss" and the loss parts, the order of the sums
        self._sums: Optional[Tensor] = None  # float64 sample-weighted sums on the device
        self._idx: Optional[Tensor] = None  # the graph's minibatch rows
        self._lr: Optional[Tensor] = None  # the graph's learning rate
        self._full_eager = 0
        self._stream = torch.cuda.Stream(self.device) if self.capture else None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def set_lr(self, lr: float) -> None:
        """The learning rate of the following steps, eager and replayed."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self._lr is not None:
            self._lr.fill_(lr)

    def step(self, idx: Tensor) -> None:
        """One training step on rows ``idx`` (1-D int64, on the device) of the training tensors."""
        full = idx.shape[0] == self.batch_size
        if full and self.capture and self.graph is None and self.note is None and self._full_eager >= self.warmup:
            self._capture()
        if full and self.graph is not None:
            self._idx.copy_(idx)
            self.graph.replay()
            return
        if self.capture and self.graph is None:  # warm-up: on a side stream, as before a capture
            self._stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self._stream):
                self._body(idx)
            torch.cuda.current_stream(self.device).wait_stream(self._stream)
        else:
            self._body(idx)
        self._full_eager += int(full)

    def take_sums(self) -> Dict[str, float]:
        """The sample-weighted sums of the total loss and each part since the last call (one
        host synchronisation), and zero them."""
        if self._sums is None:
            return {}
        values = self._sums.tolist()
        self._sums.zero_()
        return dict(zip(self.names, values))

    # -- what a step does, eager or recorded ---------------------------------------------------
    def _body(self, idx: Tensor) -> None:
        batch = {k: v.index_select(0, idx) for k, v in self.train.items()}
        total, parts = self.loss_fn(self.model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        # float64, times the batch size, summed in step order: the eager trainer's float(v) * b
        values = torch.stack([total.detach(), *parts.values()]).to(torch.float64) * idx.shape[0]
        if self._sums is None:
            self.names = ["loss", *parts]
            self._sums = torch.zeros_like(values)
        self._sums += values

    def _capture(self) -> None:
        groups = self.optimizer.param_groups
        lrs = [g["lr"] for g in groups]
        dtype = next(iter(groups[0]["params"])).dtype
        self._lr = torch.tensor(float(lrs[0]), dtype=dtype, device=self.device)
        self._idx = torch.arange(self.batch_size, device=self.device)
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        try:
            for g in groups:
                g["lr"] = self._lr
            with torch.cuda.graph(graph):
                self._body(self._idx)
        except RuntimeError as exc:
            self.note = f"the CUDA graph capture failed ({first_line(exc)}); the steps stay eager"
            self._lr = None
            torch.cuda.synchronize(self.device)
            return
        finally:
            for g, lr in zip(groups, lrs):  # checkpoints keep a float; the graph reads self._lr
                g["lr"] = lr
        self.graph = graph
