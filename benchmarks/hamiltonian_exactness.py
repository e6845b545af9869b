"""Exactness of the Hamiltonian models in float64: Hamilton's equations from the closed-form ddn
derivatives against torch.func on the model's own H(q, p), and forward(inverse(qdd)) = qdd.

For each n_dof 1..7 and each model, several random models (seeds; revolute joints, friction, eps
= 0 or not, output scales cycling as in tests/test_models_hamiltonian.py) at 64 random states:
the max over them of max|a - b| / max|b| for qd = dH/dp and pdot = -dH/dq + tau - f, and for
forward_dynamics(q, qd, inverse_dynamics(q, qd, qdd)) against qdd.

    python benchmarks/hamiltonian_exactness.py --output benchmarks/results/hamiltonian_exactness.md
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch.func import grad, vmap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import write_report  # noqa: E402

from delan.models import BlackBoxHamiltonianNetwork, DeepHamiltonianNetwork  # noqa: E402

F64 = torch.float64


def rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def make(kind: str, n: int, seed: int):
    torch.manual_seed(seed)
    kw = dict(
        revolute=[i % 2 == 0 for i in range(n)] if seed % 2 else None,
        friction=seed % 3 != 0,
        width=64,
        depth=2,
        dtype=F64,
    )
    if kind == "hamiltonian":
        return DeepHamiltonianNetwork(
            n,
            epsilon=0.0 if seed % 2 else 1e-5,
            shared_trunk=seed != 2,
            mass_scale=[10.0 ** (-k / 2) for k in range(n)] if seed == 3 else None,
            **kw,
        )
    return BlackBoxHamiltonianNetwork(
        n,
        mass_scale=[10.0 ** (-k / 2) for k in range(n)] if seed == 3 else None,
        energy_scale=5.0 if seed == 3 else 1.0,
        **kw,
    )


def errors(model, n: int, seed: int):
    g = torch.Generator().manual_seed(100 + seed)
    q, p, qd, qdd, tau = (torch.randn(64, n, dtype=F64, generator=g) for _ in range(5))
    qd_m, pdot_m = model.hamiltonian_vector_field(q, p, tau)
    H = lambda qi, pi: model.hamiltonian(qi.unsqueeze(0), pi.unsqueeze(0))[0]  # noqa: E731
    dH_dq, dH_dp = vmap(grad(H, 0))(q, p), vmap(grad(H, 1))(q, p)
    pdot_r = -dH_dq + tau - model.friction(q, dH_dp)
    tau_m = model.inverse_dynamics(q, qd, qdd)
    return rel(qd_m, dH_dp), rel(pdot_m, pdot_r), rel(model.forward_dynamics(q, qd, tau_m), qdd)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--output")
    args = p.parse_args()
    lines = [
        "# Hamiltonian models: exactness in float64",
        "",
        f"Max relative error over {args.seeds} random models x 64 random states per cell (width 64, depth 2, "
        "softplus; options cycling over revolute joints, friction, eps, separate networks, output scales).",
        "",
        "Command: `python benchmarks/hamiltonian_exactness.py --output benchmarks/results/hamiltonian_exactness.md`",
        "",
        "| n_dof | model | qd = dH/dp vs torch.func | pdot vs torch.func | forward(inverse(qdd)) vs qdd |",
        "|---|---|---|---|---|",
    ]
    for n in range(1, 8):
        for kind in ("hamiltonian", "black-box-hamiltonian"):
            worst = [0.0, 0.0, 0.0]
            for seed in range(args.seeds):
                e = errors(make(kind, n, seed), n, seed)
                worst = [max(a, b) for a, b in zip(worst, e)]
            lines.append(f"| {n} | {kind} | {worst[0]:.1e} | {worst[1]:.1e} | {worst[2]:.1e} |")
            print(lines[-1], flush=True)
    write_report(lines, args.output)


if __name__ == "__main__":
    main()
