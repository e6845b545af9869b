"""Structured DeLaN vs black-box Lagrangian vs mlp on simulated 7-DoF Panda data.

The data set is made by the project (``delan generate panda``: finite Fourier excitation
trajectories within the joint limits, exact inverse dynamics through Pinocchio, seeded) unless it
exists already (its file records the joint types: all revolute); four trajectories are held out.
Each model trains with the library's default options for the same wall-clock budget on 1 CPU
thread (see _comparison.py). Needs the `robots` extra (Pinocchio). Writes
experiments/results/panda.{json,md} and figures into experiments/results/panda/.

    python experiments/delan_panda.py [--budget 300] [--models structured,black-box,mlp]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from _comparison import compare

from delan.cli import main as delan_main

HERE = os.path.dirname(os.path.abspath(__file__))
TEST = ["fourier_003", "fourier_008", "fourier_013", "fourier_018"]


def _tau_var_sum(path: str) -> float:
    from delan.data import load_dataset

    test, _ = load_dataset(path).split(TEST)
    return float(test.concatenate()["tau"].var(0).sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=300.0, help="training seconds per model")
    ap.add_argument("--models", default="structured,black-box,mlp")
    ap.add_argument(
        "--data", default=os.path.join(HERE, "results", "panda", "panda.h5"), help="data file (generated when missing)"
    )
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not os.path.exists(args.data):
        os.makedirs(os.path.dirname(os.path.abspath(args.data)), exist_ok=True)
        code = delan_main(
            [
                "generate",
                "panda",
                "-o",
                args.data,
                "--trajectories",
                "20",
                "--duration",
                "10",
                "--rate",
                "100",
                "--seed",
                "0",
            ]
        )
        if code:
            return code
    title = (
        f"Panda (7 DoF, simulated through Pinocchio), 20 Fourier trajectories x 10 s at 100 Hz, held out "
        f"{', '.join(TEST)}; {args.budget:g} s training per model on 1 CPU thread. "
        f"MSE = mean over samples of the squared error norm; summed per-joint torque variance of the "
        f"test set: {_tau_var_sum(args.data):.4g} (N m)^2."
    )
    compare("panda", args.data, TEST, args.models.split(","), args.budget, args.out, title, true_system="panda")
    return 0


if __name__ == "__main__":
    sys.exit(main())
