"""Structured DeLaN vs black-box Lagrangian vs mlp on the two-link character data (letters held out).

Each model trains for the same wall-clock budget on 1 CPU thread; the table reports the DeLaN
paper's metrics on the held-out letters (mean over samples of the squared error norm), the
rollout of every held-out letter under its recorded torques, and the training time. Writes
experiments/results/two_link.{json,md} and figures into experiments/results/two_link/.

    python experiments/delan_two_link.py [--budget 120] [--models structured,black-box,mlp]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import torch

from delan.api import evaluate, simulate, train
from delan.cli.demo import DEMO_SETTINGS, TEST_LETTERS, bundled_data
from delan.errors import DelanError
from delan.plotting import plot_metric_bars

HERE = os.path.dirname(os.path.abspath(__file__))
PAPER = {"torque_mse": 4.3e-4, "inertial_mse": 7.3e-4, "coriolis_mse": 2.2e-4, "gravity_mse": 7.3e-4,
         "power_mse": 4.5e-5}  # DeLaN (Lutter et al. 2019), two-link characters, after 10,000 epochs
KEYS = ["torque_mse", "inertial_mse", "coriolis_mse", "gravity_mse", "power_mse", "forward_mse"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per model")
    ap.add_argument("--models", default="structured,black-box,mlp")
    ap.add_argument("--power-weight", type=float, default=1.0, help="weight of the power loss (Lagrangian models)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = bundled_data()
    if not os.path.exists(data):
        sys.exit(f"{data} is missing; make it with: delan generate two-link --kind characters --rate 200 -o {data}")
    figs = os.path.join(args.out, "two_link")
    runs = os.path.join(figs, "runs")
    os.makedirs(runs, exist_ok=True)
    table = {}
    old = os.path.join(args.out, "two_link.json")
    if os.path.exists(old):  # keep the rows of models not rerun this time
        table.update(json.load(open(old)).get("results", {}))
    for kind in args.models.split(","):
        run_dir = os.path.join(runs, kind)
        shutil.rmtree(run_dir, ignore_errors=True)
        # the black-box Lagrangian's d2L/dqd2 is indefinite at initialisation, so its forward
        # dynamics (and the forward loss) is undefined there: it trains on inverse + power only
        weights = ({} if kind == "mlp" else {"inverse": 1.0, "forward": 0.0 if kind == "black-box" else 1.0,
                                             "power": args.power_weight})
        started = time.perf_counter()
        settings = dict(DEMO_SETTINGS, loss_weights=weights)
        run = train(data, run_dir, test=TEST_LETTERS, model=kind, time_budget=args.budget, quiet=True, **settings)
        seconds = time.perf_counter() - started
        m = evaluate(run, data, test=TEST_LETTERS, plots=os.path.join(figs, kind))
        row = {k: m[k] for k in KEYS if k in m}
        row.update(epochs=run.summary["epochs"], train_seconds=run.summary["seconds"], wall_seconds=round(seconds, 1))
        if kind != "mlp":
            vts, rmses = [], []
            for letter in TEST_LETTERS:
                try:
                    ro = simulate(run, data=data, trajectory=letter,
                                  plots=os.path.join(figs, kind, f"rollout_{letter}") if letter == TEST_LETTERS[0] else None)
                    vts.append(ro["valid_time"])
                    rmses.append(ro["position_rmse"])
                except DelanError:  # a diverging rollout counts as valid for 0 s
                    vts.append(0.0)
                    rmses.append(float("nan"))
            row["rollout_valid_time_mean"] = sum(vts) / len(vts)
            row["rollout_position_rmse_mean"] = sum(rmses) / len(rmses)
        table[kind] = row
        print(kind, json.dumps(row), flush=True)
    with open(os.path.join(args.out, "two_link.json"), "w") as f:
        json.dump({"test": TEST_LETTERS, "budget_s": args.budget, "settings": DEMO_SETTINGS,
                   "power_weight": args.power_weight, "paper": PAPER, "results": table}, f, indent=2)
    lines = [f"Two-link characters, held-out letters {','.join(TEST_LETTERS)}; {args.budget:g} s training per "
             f"model on 1 CPU thread. MSE = mean over samples of the squared error norm.", "",
             "| model | " + " | ".join(KEYS) + " | rollout valid [s] | epochs | train s |",
             "|---" * (len(KEYS) + 4) + "|"]
    for kind, row in list(table.items()) + [("paper DeLaN (10k epochs)", PAPER)]:
        cells = [f"{row[k]:.2e}" if k in row else "n/a" for k in KEYS]
        vt = f"{row['rollout_valid_time_mean']:.2f}" if "rollout_valid_time_mean" in row else "n/a"
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {vt} | {row.get('epochs', '')} | {row.get('train_seconds', '')} |")
    with open(os.path.join(args.out, "two_link.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot_metric_bars({k: v for k, v in table.items()}, KEYS, os.path.join(figs, "metrics.png"),
                     "held-out letters: MSE (log scale)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
