"""Whole training runs on the GPU: eager vs CUDA-graph steps, and the batch size under a time budget.

Generates a 7-DoF data file (``delan generate n-link --n-dof 7``: 32 Fourier trajectories of 8 s
at 500 Hz, 128,032 samples; 4 held out for testing), then trains the default structured DeLaN
through ``delan.train`` on the GPU:

* throughput: ``--epochs`` epochs at batch 8192 with ``step`` eager and cuda-graph, from the
  same seed: training samples per second of the whole run (validation, logging and checkpoints
  included) and how far the two runs' weights are apart;
* batch size: the same ``--time-budget`` seconds with each of ``--batches`` (CUDA-graph
  steps): epochs done, the validation loss it chose by, and the held-out torque nMSE
  (``delan.evaluate``), so a larger default batch on the GPU is taken only where it does not
  cost accuracy.

    python benchmarks/gpu_training.py --output benchmarks/results/gpu_training_cuda.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import environment, write_report  # noqa: E402
from gpu_steps import max_relative_difference  # noqa: E402

import delan  # noqa: E402
from delan.cli import main as delan_main  # noqa: E402

TEST = ["fourier_028", "fourier_029", "fourier_030", "fourier_031"]


def make_data(folder: str) -> str:
    path = os.path.join(folder, "n7.h5")
    argv = ["generate", "n-link", "--n-dof", "7", "--trajectories", "32", "--duration", "8", "--rate", "500"]
    if delan_main(argv + ["-o", path]) != 0:
        raise SystemExit("delan generate failed")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--epochs", type=int, default=15, help="epochs of the throughput runs")
    p.add_argument("--time-budget", type=float, default=20.0, help="seconds per batch-size run")
    p.add_argument("--batches", type=int, nargs="+", default=[512, 2048, 8192])
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    lines = [
        "# Training runs on the GPU: eager vs CUDA-graph steps, batch size under a time budget",
        "",
        f"Written by `python benchmarks/gpu_training.py {' '.join(sys.argv[1:] if argv is None else argv)}`.",
        "",
        environment(device),
        "data: `delan generate n-link --n-dof 7 --trajectories 32 --duration 8 --rate 500` (128,032 samples; "
        f"{', '.join(TEST)} held out); default structured DeLaN, float32, seed 0",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(tmp)
        common = dict(test=TEST, device=args.device, progress=False, quiet=True)
        lines += [
            f"Throughput, {args.epochs} epochs at batch 8192:",
            "",
            "| steps | seconds | training samples/s | vs eager |",
            "|---|---|---|---|",
        ]
        runs = {}
        for step in ("eager", "cuda-graph"):
            run = delan.train(
                data,
                os.path.join(tmp, step),
                epochs=args.epochs,
                batch_size=8192,
                step=step if device.type == "cuda" else "eager",
                **common,
            )
            s = run.summary
            runs[step] = (run, s["n_train_samples"] * s["epochs"] / s["seconds"])
        for step, (run, rate) in runs.items():
            lines.append(
                f"| {step} ({run.summary['step_mode']['mode']}) | {run.summary['seconds']:.2f} | {rate:,.0f} | "
                f"{rate / runs['eager'][1]:.2f}x |"
            )
        worst = max_relative_difference(runs["cuda-graph"][0].model, runs["eager"][0].model)
        lines += ["", f"Weights after the two runs: max relative difference {worst:.2e}.", ""]
        write_report(lines, args.output, echo=False)

        lines += [
            f"Batch size under a {args.time_budget:g} s budget (CUDA-graph steps):",
            "",
            "| batch | epochs | steps | best epoch | validation loss | held-out torque nMSE |",
            "|---|---|---|---|---|---|",
        ]
        for batch in args.batches:
            run = delan.train(
                data, os.path.join(tmp, f"b{batch}"), time_budget=args.time_budget, batch_size=batch, **common
            )
            s = run.summary
            metrics = delan.evaluate(run, data, rollouts=False)
            lines.append(
                f"| {batch} | {s['epochs']} | {s['steps']} | {s['best_epoch']} | {s['best_loss']:.3e} | "
                f"{metrics['torque_nmse']:.3e} |"
            )
            write_report(lines, args.output, echo=False)
    write_report(lines, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
