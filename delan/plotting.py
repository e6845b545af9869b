"""Figures (matplotlib, Agg backend: no display needed). Each function writes one PNG and
returns its path.

* :func:`plot_decomposition` - tau, H qdd, c, g per joint over time, learned against truth, test
  trajectories side by side (like Figure 2 of the DeLaN paper);
* :func:`plot_training`      - training (and validation) loss per epoch from a run's log;
* :func:`plot_rollout`       - a rollout against its reference: positions, errors, energy.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from delan.evaluation import is_lagrangian, predict  # noqa: E402
from delan.fileio import atomic_path  # noqa: E402

ROWS = [
    ("tau", "tau", "torque $\\tau$"),
    ("inertial", "tau_inertial", "inertial $H\\ddot q$"),
    ("coriolis", "tau_coriolis", "Coriolis $c$"),
    ("gravity", "tau_gravity", "gravity $g$"),
]


def plot_decomposition(model, trajectories: Sequence, path: str) -> str:
    """Per joint, rows tau / H qdd / c / g (only tau for the mlp) against time; trajectories
    placed one after another on the time axis (grey lines separate them); truth black, learned
    coloured. Trajectories are :class:`delan.data.Trajectory` objects.
    """
    trajectories = list(trajectories)
    n = trajectories[0].n_dof
    rows = ROWS if is_lagrangian(model) else ROWS[:1]
    fig, axes = plt.subplots(len(rows), n, figsize=(4.5 * n, 1.9 * len(rows) + 0.8), squeeze=False, sharex=True)
    offset = 0.0
    for tr in trajectories:
        pred = predict(model, tr.q, tr.qd, tr.qdd, tr.tau)
        t = tr.t - tr.t[0] + offset
        for r, (key, truth_key, _) in enumerate(rows):
            truth = tr.tau if truth_key == "tau" else tr.truth.get(truth_key)
            for j in range(n):
                ax = axes[r, j]
                if truth is not None:
                    ax.plot(t, truth[:, j], color="k", lw=1.6, label="truth" if offset == 0 else None)
                if key in pred:
                    ax.plot(
                        t,
                        pred[key][:, j],
                        color="tab:orange",
                        lw=1.0,
                        ls="--",
                        label="learned" if offset == 0 else None,
                    )
        if offset > 0:
            for ax in axes.ravel():
                ax.axvline(offset, color="0.7", lw=0.6)
        mid = offset + 0.5 * (tr.t[-1] - tr.t[0])
        axes[0, 0].annotate(tr.name, (mid, 1.02), xycoords=("data", "axes fraction"), ha="center", fontsize=9)
        if n > 1:
            axes[0, 1].annotate(tr.name, (mid, 1.02), xycoords=("data", "axes fraction"), ha="center", fontsize=9)
        offset = t[-1] + 0.05 * (tr.t[-1] - tr.t[0])
    for r, (_, _, label) in enumerate(rows):
        axes[r, 0].set_ylabel(label + " [Nm]")
    for j in range(n):
        axes[-1, j].set_xlabel(f"time [s] - joint {j}")
    axes[0, -1].legend(loc="upper right", fontsize=8)
    fig.suptitle("torque decomposition on test trajectories (learned without seeing the split)", y=0.995)
    fig.tight_layout()
    return _save(fig, path)


def plot_training(run_dir: str, path: str) -> str:
    """Loss terms per epoch (log scale) from ``run_dir/log.jsonl``; validation dashed."""
    with open(os.path.join(run_dir, "log.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if rows:
        epochs = [r["epoch"] for r in rows]
        keys = [k for k in rows[0] if k.startswith("train_")]
        for i, k in enumerate(keys):
            color = f"C{i}"
            ax.semilogy(epochs, [r[k] for r in rows], color=color, label=k[6:])
            vk = "val_" + k[6:]
            if vk in rows[0]:
                ax.semilogy(epochs, [r[vk] for r in rows], color=color, ls="--", lw=1, label=f"{k[6:]} (validation)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("normalised loss")
    ax.set_title(os.path.basename(os.path.abspath(run_dir)))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_rollout(result: Dict[str, Any], path: str) -> str:
    """A rollout of :func:`delan.evaluation.compare_rollout`: joint positions (model against the
    reference), the position and velocity error norms with the validity threshold, and the
    energy change E(t) - E(0); a diverged rollout gets a dashed black line at the divergence
    time on every panel, labelled "diverged at ... s"."""
    t, q, q_ref = result["t"], result["q"], result["q_ref"]
    n = q.shape[1]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for j in range(n):
        axes[0].plot(t, q_ref[:, j], color=f"C{j}", lw=1.8, label=f"q{j} reference")
        axes[0].plot(t, q[:, j], color=f"C{j}", ls="--", lw=1.0, label=f"q{j} model")
    axes[0].set_xlabel("time [s]")
    axes[0].set_ylabel("position [rad or m]")
    axes[0].legend(fontsize=7)
    # one log axis, two quantities of different units: each curve's unit in its label, the axis names both
    axes[1].semilogy(t, np.maximum(result["position_error"], 1e-12), label="position |q - q_ref| [rad or m]")
    axes[1].semilogy(t, np.maximum(result["velocity_error"], 1e-12), label="velocity |qd - qd_ref| [rad/s or m/s]")
    axes[1].axhline(result["threshold"], color="r", lw=0.8, ls=":", label="validity threshold (position)")
    axes[1].axvline(result["valid_time"], color="r", lw=0.8)
    axes[1].set_xlabel("time [s]")
    axes[1].set_ylabel("error norm [rad, rad/s]")
    axes[1].set_title(f"valid for {result['valid_time']:.2f} s", fontsize=9)
    axes[1].legend(fontsize=7)
    axes[2].plot(t, result["energy"] - result["energy"][0], label="model")
    if "energy_ref" in result:
        axes[2].plot(t, result["energy_ref"] - result["energy_ref"][0], color="k", lw=1, label="true system")
    axes[2].set_xlabel("time [s]")
    axes[2].set_ylabel("E(t) - E(0) [J]")
    axes[2].legend(fontsize=7)
    if result.get("diverged"):
        td = result["diverged_at"]
        for ax in axes:
            ax.axvline(td, color="k", lw=1.0, ls="--")
            ax.text(
                td,
                0.97,
                f" diverged at {td:.3g} s",
                transform=ax.get_xaxis_transform(),
                ha="right",
                va="top",
                rotation=90,
                fontsize=7,
            )
    fig.suptitle(f"{result.get('source', 'rollout')} - {result['method']}, dt {result['dt']:g} s", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_metric_bars(table: Dict[str, Dict[str, float]], keys: List[str], path: str, title: str = "") -> str:
    """Grouped log-scale bars: ``table[model][metric]`` for the metrics ``keys``."""
    models = list(table)
    fig, ax = plt.subplots(figsize=(1.6 * len(keys) + 2, 3.8))
    w = 0.8 / max(len(models), 1)
    for i, m in enumerate(models):
        vals = [table[m].get(k, np.nan) for k in keys]
        ax.bar(np.arange(len(keys)) + i * w, vals, width=w, label=m)
    ax.set_xticks(np.arange(len(keys)) + 0.4 - w / 2)
    ax.set_xticklabels(keys, rotation=20)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        with atomic_path(path, suffix=".png") as tmp:  # a reader never sees half a PNG
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path
