"""The model comparison both DeLaN experiments run: structured vs black-box vs mlp, one data set.

Each model trains with the library's default options for the same wall-clock budget on 1 CPU
thread; the table reports, on the held-out trajectories, the DeLaN paper's metrics (mean over
samples of the squared error norm), their scale-free versions (nMSE: each joint's error over the
variance of that joint's truth), the valid prediction time of the learned forward model (VPT,
see delan.evaluation) and the training time.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from typing import Dict, List, Optional, Sequence

from delan.api import evaluate, train
from delan.plotting import plot_metric_bars

KEYS = [
    "torque_mse",
    "inertial_mse",
    "coriolis_mse",
    "gravity_mse",
    "power_mse",
    "forward_mse",
    "torque_nmse",
    "inertial_nmse",
    "coriolis_nmse",
    "gravity_nmse",
]


def compare(
    name: str,
    data: str,
    test: Sequence[str],
    models: Sequence[str],
    budget: float,
    out: str,
    title: str,
    settings: Optional[dict] = None,
    quoted: Optional[Dict[str, Dict[str, float]]] = None,
    quoted_note: str = "",
    true_system: Optional[str] = None,
) -> List[str]:
    """Train, evaluate and roll out each model kind; write out/<name>.{json,md} and a figure into
    out/<name>/. Rows of kinds not rerun are kept from an earlier JSON. ``quoted`` are other
    people's figures ({label: {metric: value}}), printed below ours and marked as theirs, with
    ``quoted_note`` saying where they come from. ``true_system`` (a name for
    :func:`delan.systems.make_system`) adds the VPT of the exact dynamics under the same protocol:
    the ceiling the sampling rate puts on any model's VPT. Returns the table lines."""
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
        started = time.perf_counter()
        run = train(data, run_dir, test=list(test), model=kind, time_budget=budget, quiet=True, **(settings or {}))
        seconds = time.perf_counter() - started
        m = evaluate(run, data, test=list(test), plots=os.path.join(figs, kind))
        row = {k: m[k] for k in KEYS + ["vpt"] if k in m}
        if "vpt_per_trajectory" in m:
            row["vpt_median"] = statistics.median(m["vpt_per_trajectory"].values())
        row.update(
            epochs=run.summary["epochs"],
            best_epoch=run.summary["best_epoch"],
            train_seconds=run.summary["seconds"],
            wall_seconds=round(seconds, 1),
            load_average=round(os.getloadavg()[0], 2),
        )
        table[kind] = row
        print(kind, json.dumps(row), flush=True)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(
            {
                "test": list(test),
                "budget_s": budget,
                "settings": settings or "library defaults",
                "quoted": quoted,
                "results": table,
            },
            f,
            indent=2,
        )
    # a time-budgeted run trains fewer epochs on a busy machine: the load shows why epochs differ
    head = ["model"] + KEYS + ["VPT mean [s]", "VPT median [s]", "epochs", "train s", "load avg"]
    lines = [title, "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for kind, row in table.items():
        cells = [f"{row[k]:.2e}" if k in row else "n/a" for k in KEYS]
        vpt = " | ".join(f"{row[k]:.2f}" if k in row else "n/a" for k in ("vpt", "vpt_median"))
        lines.append(
            f"| {kind} | " + " | ".join(cells) + f" | {vpt} | {row.get('epochs', '')} | "
            f"{row.get('train_seconds', '')} | {row.get('load_average', 'n/a')} |"
        )
    if true_system:
        ceiling = true_vpt(true_system, data, test)
        lines += [
            "",
            f"The exact {true_system} dynamics under the same VPT protocol (zero-order hold of the recorded "
            f"torques): VPT mean {ceiling['mean']:.2f} s, median {ceiling['median']:.2f} s - the most any "
            "model can reach at this sampling rate; with the torque interpolated linearly between samples "
            f"(a smaller hold error) the exact dynamics reach a median of {ceiling['median_linear']:.2f} s.",
        ]
    if quoted:
        lines += [
            "",
            "Quoted, not measured here (" + quoted_note + "):",
            "",
            "| source | " + " | ".join(k for k in KEYS + ["vpt"]) + " |",
            "|---" * (len(KEYS) + 2) + "|",
        ]
        for label, row in quoted.items():
            lines.append(
                f"| {label} | " + " | ".join(f"{row[k]:.2g}" if k in row else "" for k in KEYS + ["vpt"]) + " |"
            )
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot_metric_bars(table, KEYS[:6], os.path.join(figs, "metrics.png"), "held-out trajectories: MSE (log scale)")
    print("\n".join(lines))
    return lines


def true_vpt(system: str, data: str, test: Sequence[str]) -> Dict[str, float]:
    """VPT statistics of the exact dynamics of ``system`` on the held-out trajectories."""
    from delan.data import load_dataset
    from delan.evaluation import valid_prediction_times
    from delan.systems import make_system

    held, _ = load_dataset(data).split(list(test))
    exact = make_system(system)
    out = {}
    for hold, suffix in (("zero", ""), ("linear", "_linear")):
        v = [x for x, _ in valid_prediction_times(exact, list(held), hold=hold).values()]
        out["mean" + suffix], out["median" + suffix] = statistics.mean(v), statistics.median(v)
    return out
