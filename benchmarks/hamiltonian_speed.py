"""Speed of a training step of the Hamiltonian models against the structured DeLaN.

One step = loss + backward + Adam, each model kind with the loss `delan train` gives it
(:data:`delan.training.DEFAULT_LOSS_WEIGHTS`, mass-norm forward part): the structured DeLaN
(inverse + forward + power, :func:`delan.losses.delan_loss`), the structured Hamiltonian and the
black-box Hamiltonian (pdot + power + forward, :func:`delan.hamiltonian_losses.hamiltonian_loss`).
Same width/depth (64, 2, softplus), revolute joints as (sin q, cos q), output scales 1, float32,
batch 512, one thread; the contenders are timed round-robin in one process (medians of repeats,
``_timing.time_interleaved``), so a slow spell of the shared machine hits them alike.

The black box finds each sample's momentum by Newton's method (no-graph forward-over-reverse
passes along the n momentum directions until converged, then one first-order pass with the graph)
before its second-order pass with the graph (along the momentum directions and qd);
the Newton steps it took are reported (they depend on how far H is from quadratic in p: a trained
model may need more than an initialised one).

    python benchmarks/hamiltonian_speed.py --output benchmarks/results/hamiltonian_speed_cpu.md
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import environment, load_average, time_interleaved, write_report  # noqa: E402

from delan.hamiltonian_losses import hamiltonian_loss, velocity_variance  # noqa: E402
from delan.losses import Normaliser, delan_loss  # noqa: E402
from delan.models import BlackBoxHamiltonianNetwork, DeepHamiltonianNetwork, DeepLagrangianNetwork  # noqa: E402
from delan.training import DEFAULT_LOSS_WEIGHTS  # noqa: E402

WIDTH, DEPTH, BATCH = 64, 2, 512
KINDS = {
    "structured": DeepLagrangianNetwork,
    "hamiltonian": DeepHamiltonianNetwork,
    "black-box-hamiltonian": BlackBoxHamiltonianNetwork,
}


def data(n: int, dtype):
    g = torch.Generator().manual_seed(1)
    return tuple(torch.randn(BATCH, n, dtype=dtype, generator=g) for _ in range(4))


def step_fn(kind: str, n: int, dtype):
    """A closure doing one training step of ``kind`` on a fixed batch."""
    torch.manual_seed(0)
    model = KINDS[kind](n, width=WIDTH, depth=DEPTH, revolute=[True] * n, dtype=dtype)
    batch = data(n, dtype)
    scales = Normaliser.from_data(*batch)
    qd_var = velocity_variance(batch[1])
    weights = DEFAULT_LOSS_WEIGHTS[kind]
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)

    def step():
        opt.zero_grad(set_to_none=True)
        if kind == "structured":
            loss, _ = delan_loss(model, batch, scales, weights)
        else:
            loss, _ = hamiltonian_loss(model, batch, scales, qd_var, weights)
        loss.backward()
        opt.step()

    return model, step


def newton_steps(model: BlackBoxHamiltonianNetwork, n: int, dtype) -> int:
    """Second-order network passes without a graph that the momentum solve of one step takes."""
    calls = []
    original = model._second

    def counting(*args):
        if not torch.is_grad_enabled():
            calls.append(1)
        return original(*args)

    model._second = counting
    try:
        q, qd, _, _ = data(n, dtype)
        model.momentum(q, qd)
    finally:
        del model._second
    return len(calls)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", help="also write the report to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.float32
    load_start = load_average()
    lines = [
        "# Hamiltonian training step vs the structured DeLaN (CPU)",
        "",
        f"{environment(torch.device('cpu'))}; float32; width {WIDTH}, depth {DEPTH}, softplus; batch {BATCH}; "
        f"{args.threads} thread(s); medians of {args.repeats} interleaved repeats; {load_start}, at the end "
        "{end}.",
        "",
        "Command: `python benchmarks/hamiltonian_speed.py --output benchmarks/results/hamiltonian_speed_cpu.md`",
        "",
        "| n_dof | structured DeLaN step [ms] | hamiltonian step [ms] | ratio | black-box-hamiltonian step [ms] "
        "| ratio | black-box Newton passes |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in (2, 7):
        fns, models = {}, {}
        for kind in KINDS:
            models[kind], fns[kind] = step_fn(kind, n, dtype)
        t = time_interleaved(fns, torch.device("cpu"), repeats=args.repeats, warmup=3, min_time=0.05)
        steps = newton_steps(models["black-box-hamiltonian"], n, dtype)
        s, h, b = (1e3 * t[k] for k in KINDS)
        lines.append(f"| {n} | {s:.2f} | {h:.2f} | {h / s:.2f}x | {b:.2f} | {b / s:.2f}x | {steps} |")
        print(lines[-1], flush=True)
    lines[2] = lines[2].replace("{end}", load_average())
    lines += [
        "",
        "ratio: the Hamiltonian model's step time over the structured DeLaN's (< 1: faster). Each kind "
        "with its default loss of `delan train`; the black box's Newton passes are those of its momentum "
        "solve at initialisation (float32 tolerance 1e-5 relative).",
    ]
    write_report(lines, args.output)


if __name__ == "__main__":
    main()
