"""The model comparison both DeLaN experiments run: structured vs black-box vs mlp, one data set.

Each model trains for the same wall-clock budget on 1 CPU thread; the table reports the DeLaN
paper's metrics on the held-out trajectories (mean over samples of the squared error norm), the
rollout of every held-out trajectory under its recorded torques, and the training time.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from typing import Dict, List, Optional, Sequence

from delan.api import evaluate, simulate, train
from delan.errors import DelanError
from delan.plotting import plot_metric_bars

KEYS = ["torque_mse", "inertial_mse", "coriolis_mse", "gravity_mse", "power_mse", "forward_mse"]


def loss_weights(kind: str, power_weight: float, forward_weight: float = 1.0) -> Dict[str, float]:
    # the black-box Lagrangian's d2L/dqd2 is indefinite at initialisation, so its forward
    # dynamics (and the forward loss) is undefined there: it trains on inverse + power only
    if kind == "mlp":
        return {}
    return {"inverse": 1.0, "forward": 0.0 if kind == "black-box" else forward_weight, "power": power_weight}


def compare(name: str, data: str, test: Sequence[str], models: Sequence[str], budget: float,
            settings: dict, power_weight: float, out: str, title: str,
            paper: Optional[Dict[str, float]] = None, model_options: Optional[dict] = None,
            forward_weight: float = 1.0) -> List[str]:
    """Train, evaluate and roll out each model kind; write out/<name>.{json,md} and figures into
    out/<name>/. Rows of kinds not rerun are kept from an earlier JSON. Returns the table lines."""
    figs = os.path.join(out, name)
    runs = os.path.join(figs, "runs")
    os.makedirs(runs, exist_ok=True)
    table: Dict[str, dict] = {}
    old = os.path.join(out, f"{name}.json")
    if os.path.exists(old):
        with open(old) as f:
            table.update(json.load(f).get("results", {}))
    for kind in models:
        run_dir = os.path.join(runs, kind)
        shutil.rmtree(run_dir, ignore_errors=True)
        options = dict(settings, loss_weights=loss_weights(kind, power_weight, forward_weight))
        if model_options and kind != "mlp":
            options["model_options"] = model_options
        started = time.perf_counter()
        run = train(data, run_dir, test=list(test), model=kind, time_budget=budget, quiet=True, **options)
        seconds = time.perf_counter() - started
        m = evaluate(run, data, test=list(test), plots=os.path.join(figs, kind))
        row = {k: m[k] for k in KEYS if k in m}
        row.update(epochs=run.summary["epochs"], train_seconds=run.summary["seconds"], wall_seconds=round(seconds, 1))
        if kind != "mlp":
            valid, rmse = [], []
            for i, traj in enumerate(test):
                try:
                    ro = simulate(run, data=data, trajectory=traj,
                                  plots=os.path.join(figs, kind, f"rollout_{traj}") if i == 0 else None)
                    valid.append(ro["valid_time"])
                    rmse.append(ro["position_rmse"])
                except DelanError:  # a diverging rollout counts as valid for 0 s
                    valid.append(0.0)
                    rmse.append(float("nan"))
            row["rollout_valid_time_mean"] = sum(valid) / len(valid)
            row["rollout_position_rmse_mean"] = sum(rmse) / len(rmse)
        table[kind] = row
        print(kind, json.dumps(row), flush=True)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump({"test": list(test), "budget_s": budget, "settings": settings, "power_weight": power_weight,
                   "forward_weight": forward_weight, "paper": paper, "results": table}, f, indent=2)
    lines = [title, "", "| model | " + " | ".join(KEYS) + " | rollout valid [s] | epochs | train s |",
             "|---" * (len(KEYS) + 4) + "|"]
    rows = list(table.items()) + ([("paper DeLaN (10k epochs)", paper)] if paper else [])
    for kind, row in rows:
        cells = [f"{row[k]:.2e}" if k in row else "n/a" for k in KEYS]
        vt = f"{row['rollout_valid_time_mean']:.2f}" if "rollout_valid_time_mean" in row else "n/a"
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {vt} | {row.get('epochs', '')} | "
                     f"{row.get('train_seconds', '')} |")
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot_metric_bars(table, KEYS, os.path.join(figs, "metrics.png"), "held-out trajectories: MSE (log scale)")
    print("\n".join(lines))
    return lines
