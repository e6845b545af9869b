"""Figures of closed-loop runs (matplotlib, Agg backend). Each function writes one PNG and returns
its path.

* :func:`plot_tracking` - per joint: reference against actual position, the tracking error, and
  the applied torque (one column per joint);
* :func:`plot_swing_up` - the pendulum's angle from upright (with the success band), the actuated
  joint's position and its torque/force, for every row of a batch.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from delan.control import ClosedLoopResult, wrap_angle  # noqa: E402


def _save(fig, path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _names(n: int, joint_names: Optional[Sequence[str]]):
    return list(joint_names) if joint_names is not None and len(joint_names) == n else [f"joint {j}" for j in range(n)]


def plot_tracking(
    result: ClosedLoopResult, path: str, joint_names: Optional[Sequence[str]] = None, title: str = ""
) -> str:
    """Rows: position (reference dashed, actual solid), error q - q_ref, torque; one column per
    joint. ``result`` is one trajectory (q (T, n)) with a reference."""
    if result.q_ref is None:
        raise ValueError("plot_tracking needs a run with a reference")
    t = result.t.double().numpy()
    q, q_ref, tau = (x.double().cpu().numpy() for x in (result.q, result.q_ref, result.tau))
    if q.ndim == 3:  # a batch: the first row
        q, tau = q[:, 0], tau[:, 0]
    n = q.shape[1]
    names = _names(n, joint_names)
    fig, axes = plt.subplots(3, n, figsize=(4.2 * n, 7.5), sharex=True, squeeze=False)
    for j in range(n):
        ax = axes[0, j]
        ax.plot(t, q_ref[:, j], "k--", lw=1.2, label="reference")
        ax.plot(t, q[:, j], "C0", lw=1.0, label="actual")
        ax.set_title(names[j])
        axes[1, j].plot(t, q[:, j] - q_ref[:, j], "C3", lw=1.0)
        axes[1, j].axhline(0.0, color="grey", lw=0.5)
        axes[2, j].plot(t, tau[:, j], "C2", lw=1.0)
        axes[2, j].set_xlabel("time [s]")
    axes[0, 0].set_ylabel("position")
    axes[1, 0].set_ylabel("error q - q_ref")
    axes[2, 0].set_ylabel("torque / force")
    axes[0, 0].legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_swing_up(
    result: ClosedLoopResult,
    path: str,
    actuated: int = 0,
    pendulum: int = 1,
    upright: float = math.pi,
    tolerance: float = 0.1,
    joint_names: Optional[Sequence[str]] = None,
    title: str = "",
) -> str:
    """Rows: |pendulum angle - upright| (log scale, the tolerance band dashed), the actuated
    joint's position, its torque; one line per row of a batch."""
    t = result.t.double().numpy()
    q, tau = result.q, result.tau
    if q.dim() == 2:
        q, tau = q[:, None], tau[:, None]
    err = wrap_angle(q[..., pendulum] - upright).abs().double().cpu().numpy()
    x = q[..., actuated].double().cpu().numpy()
    u = tau[..., actuated].double().cpu().numpy()
    names = _names(q.shape[-1], joint_names)
    fig, axes = plt.subplots(3, 1, figsize=(8, 7.5), sharex=True)
    for b in range(err.shape[1]):
        axes[0].semilogy(t, np.maximum(err[:, b], 1e-6), lw=1.0)
        axes[1].plot(t, x[:, b], lw=1.0)
        axes[2].plot(t, u[:, b], lw=1.0)
    axes[0].axhline(tolerance, color="k", ls="--", lw=1.0, label=f"{tolerance:g} rad")
    axes[0].set_ylabel(f"|{names[pendulum]} - upright| [rad]")
    axes[0].legend(loc="best", fontsize=8)
    axes[1].set_ylabel(f"{names[actuated]} position")
    axes[2].set_ylabel(f"{names[actuated]} torque / force")
    axes[2].set_xlabel("time [s]")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
