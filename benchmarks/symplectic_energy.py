"""Energy error under zero torque: the symplectic integrator (implicit midpoint) against rk4.

Free motion of the true pendulum (q0 = 2 rad, 40 s, about 16 periods) and of a randomly
initialised structured DeLaN (float64, 2 DoF, its own energy T + V, 8 s); max |E(t) - E(0)| over
the first and over the last quarter of the run, for two step sizes. A symplectic method keeps it
bounded (equal in both quarters) and O(dt^2); rk4's grows with time.

    python benchmarks/symplectic_energy.py

Writes benchmarks/results/symplectic_energy.md.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def energy_error(dynamics, ro) -> np.ndarray:
    with torch.no_grad():
        T, V = dynamics.energy(ro.q, ro.qd)
    E = (T + V).numpy()
    return np.abs(E - E[0])


def main() -> int:
    from delan.integrators import rollout
    from delan.models import DeepLagrangianNetwork
    from delan.systems import make_system

    torch.set_num_threads(1)
    torch.manual_seed(3)
    model = DeepLagrangianNetwork(2, width=16, depth=2, dtype=torch.float64).eval()
    cases = [
        ("true pendulum", make_system("pendulum"), [2.0], [0.0], 40.0, (0.1, 0.05)),
        ("random structured DeLaN", model, [0.3, -0.2], [0.4, -0.3], 8.0, (0.04, 0.02)),
    ]
    lines = [
        "# Energy error under zero torque: symplectic (implicit midpoint) vs rk4",
        "",
        "Made by `python benchmarks/symplectic_energy.py` (see its docstring). max |E(t) - E(0)| over the "
        "first and the last quarter of each run.",
        "",
        "| dynamics | method | dt [s] | horizon [s] | first quarter | last quarter | last / first | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, dyn, q0, qd0, horizon, dts in cases:
        q0t, qd0t = torch.tensor(q0, dtype=torch.float64), torch.tensor(qd0, dtype=torch.float64)
        for method in ("rk4", "symplectic"):
            for dt in dts:
                started = time.perf_counter()
                with torch.no_grad():
                    ro = rollout(dyn, q0t, qd0t, None, dt, round(horizon / dt), method)
                err = energy_error(dyn, ro)
                n = len(err) // 4
                first, last = err[1 : n + 1].max(), err[-n:].max()
                lines.append(
                    f"| {name} | {method} | {dt:g} | {horizon:g} | {first:.3e} | {last:.3e} | "
                    f"{last / first:.2f} | {time.perf_counter() - started:.1f} |"
                )
                print(lines[-1], flush=True)
    out = os.path.join(HERE, "results", "symplectic_energy.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
