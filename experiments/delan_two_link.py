"""Structured DeLaN vs black-box Lagrangian vs mlp on the two-link character data (letters held out).

Each model trains for the same wall-clock budget on 1 CPU thread (see _comparison.py). Writes
experiments/results/two_link.{json,md} and figures into experiments/results/two_link/.

    python experiments/delan_two_link.py [--budget 120] [--models structured,black-box,mlp]
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from _comparison import compare
from delan.cli.demo import DEMO_SETTINGS, TEST_LETTERS, bundled_data

HERE = os.path.dirname(os.path.abspath(__file__))
PAPER = {"torque_mse": 4.3e-4, "inertial_mse": 7.3e-4, "coriolis_mse": 2.2e-4, "gravity_mse": 7.3e-4,
         "power_mse": 4.5e-5}  # DeLaN (Lutter et al. 2019), two-link characters, after 10,000 epochs


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
    title = (f"Two-link characters, held-out letters {','.join(TEST_LETTERS)}; {args.budget:g} s training per "
             f"model on 1 CPU thread. MSE = mean over samples of the squared error norm.")
    compare("two_link", data, TEST_LETTERS, args.models.split(","), args.budget, DEMO_SETTINGS,
            args.power_weight, args.out, title, paper=PAPER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
