"""Trajectory training: a multi-step loss that integrates the learned dynamics over short windows.

The one-step losses (:mod:`delan.losses`) judge the model at each recorded sample on its own. A
model used for simulation must also hold over time, so this loss starts the model at a recorded
state (q_i, qd_i), integrates its forward dynamics for K sample intervals under the recorded
torque and penalises the distance to the recorded states q_{i+1..i+K}, qd_{i+1..i+K}::

    L_roll = mean_windows  1/K sum_{k=1..K} sum_j [ (q^_kj - q_kj)^2 / var(q_j) + (qd^_kj - qd_kj)^2 / var(qd_j) ]

with var the training data's per-joint variances (so joints and units weigh alike, as in the
one-step losses; the VPT threshold is on the same scale: sum_j (q^ - q)_j^2 / var(q_j) = 1e-2).

Integration: classical RK4, differentiable, the torque held at tau_k over [t_k, t_k+1) (zero-order
hold, as the VPT of :mod:`delan.evaluation` replays it), ``substeps`` RK4 steps per interval; the
interval is each window's own (jittered clocks stay exact). All windows of a batch are stepped
together: a window is identified by its start sample, so a training minibatch of samples IS a
batch of window starts; only the loop over the K steps (and substeps) is in Python.

Windows never cross the end of a trajectory or a validation block: the training and validation
arrays of :func:`delan.training.split_samples` are concatenations of contiguous *segments*
(:func:`split_segments`), and a sample starts a window only when K more samples of its own
segment follow it (:func:`window_arrays` marks it in ``win_ok``). Samples closer to a segment's end
still enter the one-step losses.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

# the batch keys window_arrays adds: targets (N, K, n), torques (N, K, n), intervals (N, K), validity (N,)
WINDOW_KEYS = ("win_q", "win_qd", "win_tau", "win_dt", "win_ok")


def split_segments(
    ds, whole: Sequence[str], blocks: Mapping[str, Tuple[int, int]]
) -> Tuple[List[Dict[str, np.ndarray]], List[Dict[str, np.ndarray]]]:
    """(training, validation) contiguous segments {"t", "q", "qd", "tau"} of a Dataset, in the
    order :func:`delan.training.split_samples` concatenates them: per trajectory, the part before
    its validation block, the part after it (training) and the block (validation); trajectories
    named in ``whole`` go to validation whole. Empty parts are left out."""
    train: List[Dict[str, np.ndarray]] = []
    val: List[Dict[str, np.ndarray]] = []
    for tr in ds:
        n = len(tr)
        a, b = (0, n) if tr.name in whole else blocks.get(tr.name, (0, 0))
        for dest, lo, hi in ((train, 0, a), (train, b, n), (val, a, b)):
            if hi > lo:
                dest.append({k: np.asarray(getattr(tr, k))[lo:hi] for k in ("t", "q", "qd", "tau")})
    return train, val


def window_arrays(segments: Sequence[Mapping[str, np.ndarray]], horizon: int) -> Dict[str, np.ndarray]:
    """Per-sample window data of the concatenated ``segments`` (see :data:`WINDOW_KEYS`).

    For sample i of a segment of m samples, step k = 0..K-1 of its window: ``win_tau[i, k]`` =
    tau_{i+k} (held over the interval), ``win_dt[i, k]`` = t_{i+k+1} - t_{i+k}, and the targets
    ``win_q[i, k]``, ``win_qd[i, k]`` = q_{i+k+1}, qd_{i+k+1}; ``win_ok[i]`` is True iff i + K <= m - 1.
    Where the window would leave the segment, indices are clamped to its last sample (finite
    filler, never used: such samples have win_ok False).

    Returns numpy arrays: win_q, win_qd, win_tau (N, K, n), win_dt (N, K), win_ok (N,) bool.
    """
    if not isinstance(horizon, (int, np.integer)) or isinstance(horizon, bool) or horizon < 1:
        raise ValueError(f"rollout horizon must be an integer >= 1, got {horizon!r}")
    K = int(horizon)
    parts: Dict[str, list] = {k: [] for k in WINDOW_KEYS}
    for seg in segments:
        t, q, qd, tau = (np.asarray(seg[k], float) for k in ("t", "q", "qd", "tau"))
        m = len(t)
        i = np.arange(m)[:, None]
        k = np.arange(K)[None, :]
        src = np.minimum(i + k, m - 1)  # (m, K) the sample each step starts from
        dst = np.minimum(i + k + 1, m - 1)  # (m, K) the sample it must reach
        parts["win_q"].append(q[dst])
        parts["win_qd"].append(qd[dst])
        parts["win_tau"].append(tau[src])
        dt = t[dst] - t[src]
        parts["win_dt"].append(np.where(dst > src, dt, 0.0))
        parts["win_ok"].append(np.arange(m) + K <= m - 1)
    if not parts["win_q"]:
        raise ValueError("no segments to make rollout windows from")
    return {k: np.concatenate(v) for k, v in parts.items()}


def window_tensors(
    segments: Sequence[Mapping[str, np.ndarray]], horizon: int, dtype: torch.dtype, device
) -> Dict[str, Tensor]:
    """:func:`window_arrays` as tensors (win_ok stays bool)."""
    arrays = window_arrays(segments, horizon)
    return {
        k: torch.as_tensor(v, device=device) if k == "win_ok" else torch.as_tensor(v, dtype=dtype, device=device)
        for k, v in arrays.items()
    }


def rk4_zoh_step(model, q: Tensor, qd: Tensor, tau: Tensor, h: Tensor) -> Tuple[Tensor, Tensor]:
    """One classical RK4 step of qdd = model.forward_dynamics(q, qd, tau) with tau held constant.

    q, qd, tau (B, n); h (B, 1) step per row. Differentiable (plain torch)."""
    a1 = model.forward_dynamics(q, qd, tau)
    v2 = qd + 0.5 * h * a1
    a2 = model.forward_dynamics(q + 0.5 * h * qd, v2, tau)
    v3 = qd + 0.5 * h * a2
    a3 = model.forward_dynamics(q + 0.5 * h * v2, v3, tau)
    v4 = qd + h * a3
    a4 = model.forward_dynamics(q + h * v3, v4, tau)
    return (q + h / 6 * (qd + 2 * v2 + 2 * v3 + v4), qd + h / 6 * (a1 + 2 * a2 + 2 * a3 + a4))


def rollout_windows(
    model, q0: Tensor, qd0: Tensor, win_tau: Tensor, win_dt: Tensor, substeps: int = 1
) -> Tuple[Tensor, Tensor]:
    """Integrate every window from (q0, qd0) (B, n) over its K intervals: (q, qd) each (B, K, n),
    the state at the end of each interval. win_tau (B, K, n) held per interval, win_dt (B, K)."""
    q, qd = q0, qd0
    qs, qds = [], []
    for k in range(win_tau.shape[1]):
        tau = win_tau[:, k]
        h = (win_dt[:, k] / substeps).unsqueeze(-1)
        for _ in range(substeps):
            q, qd = rk4_zoh_step(model, q, qd, tau, h)
        qs.append(q)
        qds.append(qd)
    return torch.stack(qs, 1), torch.stack(qds, 1)


class RolloutLoss:
    """The multi-step state loss (module docstring) with the training data's per-joint variances.

    Args:
        q_var, qd_var: (n,) positive per-joint variances of the training q and qd.
        substeps: RK4 steps per sample interval.
    """

    def __init__(self, q_var, qd_var, substeps: int = 1):
        self.q_var = torch.as_tensor(np.asarray(q_var, float), dtype=torch.float64)
        self.qd_var = torch.as_tensor(np.asarray(qd_var, float), dtype=torch.float64)
        if self.q_var.dim() != 1 or self.q_var.shape != self.qd_var.shape:
            raise ValueError(
                f"q_var and qd_var must both be (n,), got {tuple(self.q_var.shape)} and {tuple(self.qd_var.shape)}"
            )
        if not (self.q_var > 0).all() or not (self.qd_var > 0).all():
            raise ValueError("rollout-loss variances must be positive")
        if not isinstance(substeps, (int, np.integer)) or isinstance(substeps, bool) or substeps < 1:
            raise ValueError(f"rollout substeps must be an integer >= 1, got {substeps!r}")
        self.substeps = int(substeps)

    @classmethod
    def from_data(cls, q, qd, substeps: int = 1) -> RolloutLoss:
        """From training arrays q, qd (N, n); a constant joint's variance is floored at 1e-12 of
        the largest (as the one-step losses do)."""

        def var(x):
            x = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, float)
            v = x.var(0)
            return np.maximum(v, 1e-12 * max(float(v.max()), 1e-30))

        return cls(var(q), var(qd), substeps)

    def __call__(self, model, batch: Mapping[str, Tensor]) -> Tuple[Optional[Tensor], int]:
        """(loss, number of windows) over the batch's valid window starts; (None, 0) when none
        is valid. ``batch`` holds q, qd (B, n) and the :data:`WINDOW_KEYS`."""
        ok = batch["win_ok"]
        if not bool(ok.any()):
            return None, 0
        if not bool(ok.all()):
            idx = torch.nonzero(ok)[:, 0]
            pick = lambda x: x.index_select(0, idx)  # noqa: E731
        else:
            pick = lambda x: x  # noqa: E731
        q0, qd0 = pick(batch["q"]), pick(batch["qd"])
        q_hat, qd_hat = rollout_windows(model, q0, qd0, pick(batch["win_tau"]), pick(batch["win_dt"]), self.substeps)
        return self.error(q_hat, qd_hat, pick(batch["win_q"]), pick(batch["win_qd"])), int(q0.shape[0])

    def error(self, q_hat: Tensor, qd_hat: Tensor, q: Tensor, qd: Tensor) -> Tensor:
        """mean over windows and steps of sum_j the normalised squared q and qd errors, all (B, K, n)."""
        iq = (1.0 / self.q_var).to(dtype=q.dtype, device=q.device)
        iqd = (1.0 / self.qd_var).to(dtype=q.dtype, device=q.device)
        return ((q_hat - q).square() * iq + (qd_hat - qd).square() * iqd).sum(-1).mean()

    def to_dict(self) -> Dict[str, list]:
        return {"q_var": self.q_var.tolist(), "qd_var": self.qd_var.tolist(), "substeps": self.substeps}


def add_windows(
    train: Dict[str, Tensor],
    val: Optional[Dict[str, Tensor]],
    ds,
    whole: Sequence[str],
    blocks: Mapping[str, Tuple[int, int]],
    horizon: int,
) -> None:
    """Add the :data:`WINDOW_KEYS` of ``horizon`` intervals to the training (and validation)
    tensors made by :func:`delan.training.split_samples` from ``ds``, ``whole``, ``blocks``, in
    their dtype and device. Checks that the segments give exactly those samples, in that order."""
    segs = split_segments(ds, whole, blocks)
    for data, parts in zip((train, val), segs):
        if data is None:
            continue
        q = np.concatenate([s["q"] for s in parts]) if parts else np.zeros((0, data["q"].shape[1]))
        ref = data["q"].detach().cpu().numpy()
        if q.shape != ref.shape or not np.allclose(q, ref, rtol=1e-6, atol=1e-6 * max(1.0, float(np.abs(ref).max()))):
            raise RuntimeError("rollout windows do not line up with the training samples (split_samples changed?)")
        data.update(window_tensors(parts, horizon, data["q"].dtype, data["q"].device))


def add_rollout_part(
    total: Tensor,
    parts: Dict[str, Tensor],
    rollout: RolloutLoss,
    model,
    batch: Mapping[str, Tensor],
    weight: float,
    every: int = 1,
    windows: Optional[int] = None,
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """``total + weight * rollout(model, batch)`` and the parts with "rollout" added.

    A training batch carries its optimiser ``step`` (and may carry ``rollout_on``, False to skip
    it): the part is computed on every ``every``-th step, from at most ``windows`` of its valid
    window starts (the batch is shuffled, so the first ones are a random subset). A validation
    batch (no ``step``) uses every window. A model whose
    forward dynamics does not exist at some state of the rollout (a black-box Lagrangian whose
    d2L/dqd2 is indefinite there) skips the part for that batch; "rollout_skipped" (1 per batch)
    records it.
    """
    step = batch.get("step")
    if step is not None and (int(step) % every or not batch.get("rollout_on", True)):
        return total, parts
    if "win_ok" not in batch:
        return total, parts
    if step is not None and windows is not None:
        ok = batch["win_ok"]
        keep = ok & (torch.cumsum(ok.to(torch.int64), 0) <= windows)
        batch = dict(batch, win_ok=keep)
    try:
        value, n = rollout(model, batch)
    except (torch.linalg.LinAlgError, ValueError) as exc:
        from delan.errors import IndefiniteMassMatrixError

        if isinstance(exc, (IndefiniteMassMatrixError, torch.linalg.LinAlgError)):
            return total, dict(parts, rollout_skipped=total.new_ones(()))
        raise
    if value is None:
        return total, parts
    return total + weight * value, dict(parts, rollout=value.detach())
