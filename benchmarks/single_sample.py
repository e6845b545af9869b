"""One state at a time, the control-loop case: the explicit fast path against plain torch.

Contenders, each on one state of a width-64, depth-2 structured DeLaN, on one CPU thread:

* fast:  ``fn = model.single_sample_inverse_dynamics()``; ``fn(q, qd, qdd)`` on NumPy (n,) arrays
         (delan/models/single_sample.py: the lean formulas in NumPy, re-reading the parameters);
* torch: ``model.inverse_dynamics`` on (1, n) tensors under ``torch.inference_mode`` (the plain
         torch path every other call takes);
* reference: the autograd reference ``delan/reference.py`` on (1, n) tensors, on a copy of the
             model with frozen parameters (its fastest inference setting).

Two configurations: the library's model defaults ("plain": softplus, no friction, no angle
features, unit output scales) and what ``delan train`` builds for an arm ("trained-like":
revolute joints as (sin q, cos q), learned friction, mass_scale and potential_scale set).
Each row also gives the largest difference between fast and torch over 1000 random states,
relative to the largest torque (float64: must be <= 1e-12). Rates are given per second of wall
clock and per second of the process's CPU time (robust to other jobs on a shared machine).

    python benchmarks/single_sample.py --output benchmarks/results/single_sample_cpu.md
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import conditions, environment, load_average, time_both, write_report  # noqa: E402

from delan import reference as ref  # noqa: E402
from delan.models import DeepLagrangianNetwork  # noqa: E402

WIDTH, DEPTH = 64, 2
CONFIGS = {
    "plain": lambda n: dict(),
    "trained-like": lambda n: dict(
        revolute=[True] * n, friction=True, mass_scale=[0.05 + 0.5 * i for i in range(n)], potential_scale=3.0
    ),
}


def make(n: int, config: str, dtype) -> DeepLagrangianNetwork:
    torch.manual_seed(0)
    return DeepLagrangianNetwork(n, width=WIDTH, depth=DEPTH, dtype=dtype, **CONFIGS[config](n))


def max_difference(model, fn, n: int, dtype, samples: int = 1000) -> float:
    """max |fast - torch| / max |torch| over random states, one call each."""
    g = torch.Generator().manual_seed(2)
    X = [torch.randn(samples, n, dtype=torch.float64, generator=g).to(dtype) for _ in range(3)]
    with torch.inference_mode():
        torch_tau = model.inverse_dynamics(*X).numpy()
    fast_tau = np.stack([fn(X[0][k].numpy(), X[1][k].numpy(), X[2][k].numpy()) for k in range(samples)])
    return float(np.abs(fast_tau - torch_tau).max() / np.abs(torch_tau).max())


def contenders(model: DeepLagrangianNetwork, q, qd, qdd) -> dict:
    """The three single-state calls on (1, n) tensors q, qd, qdd: "fast" (the NumPy fast path),
    "torch" (inverse_dynamics under inference_mode), "ref" (autograd, frozen parameters)."""
    fn = model.single_sample_inverse_dynamics()
    frozen = copy.deepcopy(model).requires_grad_(False)
    qn, qdn, qddn = (x[0].numpy().copy() for x in (q, qd, qdd))

    def fast():
        return fn(qn, qdn, qddn)

    def plain():
        with torch.inference_mode():
            return model.inverse_dynamics(q, qd, qdd)

    def theirs():
        return ref.model_inverse_dynamics(frozen, q, qd, qdd, create_graph=False)

    return {"fast": fast, "torch": plain, "ref": theirs}


def bench(n: int, config: str, dtype, repeats: int) -> dict:
    model = make(n, config, dtype)
    fn = model.single_sample_inverse_dynamics()
    g = torch.Generator().manual_seed(1)
    q, qd, qdd = (torch.randn(1, n, dtype=torch.float64, generator=g).to(dtype) for _ in range(3))
    t, c = time_both(contenders(model, q, qd, qdd), repeats=repeats)
    return dict(
        n=n,
        config=config,
        dtype=str(dtype).replace("torch.", ""),
        fast=1 / t["fast"],
        torch=1 / t["torch"],
        ref=1 / t["ref"],
        fast_cpu=1 / c["fast"],
        torch_cpu=1 / c["torch"],
        diff=max_difference(model, fn, n, dtype),
    )


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--output", help="also write the printed report to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    load_start = load_average()
    rows = [
        bench(n, config, dtype, args.repeats)
        for dtype in (torch.float64, torch.float32)
        for config in CONFIGS
        for n in (2, 7)
    ]
    load = max(load, os.getloadavg()[0])
    lines = [
        "# Single-sample inverse dynamics: the explicit fast path vs plain torch",
        "",
        f"{environment(torch.device('cpu'))}; width {WIDTH}, depth {DEPTH}, softplus; one state per call; "
        f"{conditions(args.repeats, load, load_start)}",
        "",
        "Calls per second of wall-clock time, and per second of this process's CPU time in brackets: other "
        "jobs sharing the machine slow the wall clock (a load average above the CPU count means the "
        "benchmark got only part of a core), much less the CPU time or the fast / torch ratio.",
        "",
        "| dtype | configuration | n_dof | fast (`single_sample_inverse_dynamics()`) | torch (`inverse_dynamics`, "
        "inference_mode) | reference (autograd, frozen parameters) | fast / torch | "
        "max abs(fast - torch) / max abs(torch) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dtype']} | {r['config']} | {r['n']} | "
            f"{r['fast'] / 1e3:.1f} kHz ({r['fast_cpu'] / 1e3:.1f}) | "
            f"{r['torch'] / 1e3:.1f} kHz ({r['torch_cpu'] / 1e3:.1f}) | {r['ref'] / 1e3:.2f} kHz | "
            f"{r['fast'] / r['torch']:.2f}x | {r['diff']:.1e} |"
        )
    return write_report(lines, args.output)


if __name__ == "__main__":
    main()
