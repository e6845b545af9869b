"""Speed of the structured DeLaN against the autograd reference on the same model.

Ratios (reference time / DeLaN time, > 1 means the closed-form model is faster) come from
interleaved repeats in one process; medians are reported. The reference is
``delan/reference.py``: a forward pass for H and V, one reverse pass for d(T - V)/dq and one
Jacobian-vector product for Hdot qd (double-backward trick, faster than torch.func.jvp in eager
mode), batched, with ``create_graph`` for training.

* train: one step (loss + backward + Adam) with the torque loss alone, and with the torque and
  acceleration (forward-model) losses; the same loss for both contenders;
* inverse: ``model.inverse_dynamics`` under ``torch.inference_mode`` against the reference on a
  copy whose parameters are frozen (``requires_grad_(False)``: autograd then records only what
  depends on q and qd, the reference's fastest inference setting); the speed-up against the
  reference with trainable parameters is in the last column;
* terms: the full decomposition (H, c, g, T, V, tau) — the reference then needs two reverse passes;
* single: one state per call, in calls per second: the explicit fast path
  ``model.single_sample_inverse_dynamics()`` (NumPy (n,) in and out, see
  delan/models/single_sample.py and benchmarks/single_sample.py) and, in the notes, the plain
  torch call ``model.inverse_dynamics`` on (1, n) under inference_mode with its op count.

GFLOP/s counts the matrix-product FLOPs of one call; the percentage is the time those products
take replayed alone at the shapes the call used (``_timing.matmul_replay``, timed interleaved
with the call) over the call's time.

    python benchmarks/delan_speed.py --output benchmarks/results/delan_speed_cpu.md
    python benchmarks/delan_speed.py --device cuda --output benchmarks/results/delan_speed_cuda.md
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import single_sample  # noqa: E402
from _timing import (  # noqa: E402
    conditions,
    environment,
    load_average,
    matmul_replay,
    sync,
    time_interleaved,
    write_report,
)

from delan import reference as ref  # noqa: E402
from delan.losses import LossWeights, Normaliser, delan_loss, inverse_loss, loss_from_terms  # noqa: E402
from delan.models import DeepLagrangianNetwork  # noqa: E402

WIDTH, DEPTH = 64, 2


def count_ops(fn) -> tuple:
    """(top-level torch ops, all recorded ops incl. nested) of one call."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.events() if not e.name.startswith("[")]
    return sum(1 for e in events if e.cpu_parent is None), len(events)


def make(n: int, dtype, device, seed: int = 0) -> DeepLagrangianNetwork:
    torch.manual_seed(seed)
    return DeepLagrangianNetwork(n, width=WIDTH, depth=DEPTH, dtype=dtype, device=device)


def data(n: int, batch: int, dtype, device):
    g = torch.Generator().manual_seed(1)
    return tuple(torch.randn(batch, n, dtype=dtype, generator=g).to(device) for _ in range(4))


def bench_train(n, batch, dtype, device, repeats, weights: LossWeights):
    """One training step with the same loss for both: ``weights`` (inverse, forward, power)."""
    model = make(n, dtype, device)
    model_ref = copy.deepcopy(model)
    batch_t = data(n, batch, dtype, device)
    scales = Normaliser.from_data(*batch_t)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    opt_ref = torch.optim.Adam(model_ref.parameters(), lr=1e-5)
    q, qd, qdd, tau = batch_t

    def ours():
        opt.zero_grad(set_to_none=True)
        loss, _ = delan_loss(model, batch_t, scales, weights)
        loss.backward()
        opt.step()

    def theirs():
        opt_ref.zero_grad(set_to_none=True)
        if weights.forward or weights.power:
            t = ref.model_terms(model_ref, q, qd, qdd, create_graph=True, split=False)
            loss, _ = loss_from_terms(t, batch_t, scales, weights)
        else:
            loss = weights.inverse * inverse_loss(
                ref.model_inverse_dynamics(model_ref, q, qd, qdd, create_graph=True), tau, scales
            )
        loss.backward()
        opt_ref.step()

    flops, mm = matmul_replay(ours, dtype, device)
    t = time_interleaved({"ours": ours, "ref": theirs, "mm": mm}, device, repeats=repeats, min_time=0.05)
    parts = [name for name in ("inverse", "forward", "power") if getattr(weights, name)]
    return row(f"train step ({' + '.join(parts)} loss)", n, batch, t, flops, unit="ms")


def bench_inverse(n, batch, dtype, device, repeats):
    model = make(n, dtype, device)
    frozen = copy.deepcopy(model).requires_grad_(False)
    q, qd, qdd, _ = data(n, batch, dtype, device)

    def ours():
        with torch.inference_mode():
            return model.inverse_dynamics(q, qd, qdd)

    def theirs():
        return ref.model_inverse_dynamics(frozen, q, qd, qdd, create_graph=False)

    def theirs_trainable():
        return ref.model_inverse_dynamics(model, q, qd, qdd, create_graph=False)

    def ours_terms():
        with torch.inference_mode():
            return model.terms(q, qd, qdd)

    def theirs_terms():
        return ref.model_terms(frozen, q, qd, qdd, create_graph=False, split=True)

    def theirs_terms_trainable():
        return ref.model_terms(model, q, qd, qdd, create_graph=False, split=True)

    flops, mm = matmul_replay(ours, dtype, device)
    flops_terms, mm_terms = matmul_replay(ours_terms, dtype, device)
    t = time_interleaved(
        {
            "ours": ours,
            "ref": theirs,
            "ref_trainable": theirs_trainable,
            "mm": mm,
            "ours_terms": ours_terms,
            "ref_terms": theirs_terms,
            "ref_terms_trainable": theirs_terms_trainable,
            "mm_terms": mm_terms,
        },
        device,
        repeats=repeats,
        min_time=0.05,
    )
    rows = [row("inverse dynamics", n, batch, t, flops, unit="samples/s")]
    t2 = {
        "ours": t["ours_terms"],
        "ref": t["ref_terms"],
        "ref_trainable": t["ref_terms_trainable"],
        "mm": t["mm_terms"],
    }
    rows.append(row("terms (all of H,c,g,T,V,tau)", n, batch, t2, flops_terms, unit="samples/s"))
    return rows


def bench_single(n, dtype, device, repeats):
    """One state per call: the explicit NumPy fast path, the plain torch call on (1, n) under
    inference_mode, and the reference (frozen parameters); the calls of benchmarks/single_sample.py."""
    model = make(n, dtype, device)
    q, qd, qdd, _ = data(n, 1, dtype, device)
    fns = single_sample.contenders(model, q, qd, qdd)
    ours, plain, theirs = fns["fast"], fns["torch"], fns["ref"]

    with torch.inference_mode():
        ops = count_ops(plain)
    ref_ops = count_ops(theirs)
    t = time_interleaved({"ours": ours, "ref": theirs, "torch": plain}, device, repeats=repeats, min_time=0.2)
    return dict(
        what="single sample inverse dynamics (fast path)",
        n=n,
        batch=1,
        ours=f"{1 / t['ours'] / 1e3:.1f} kHz",
        ref=f"{1 / t['ref'] / 1e3:.2f} kHz",
        ratio=t["ref"] / t["ours"],
        gflops="",
        note=f"the plain torch call (inverse_dynamics on (1, n), inference_mode) runs at "
        f"{1 / t['torch'] / 1e3:.1f} kHz with {ops[0]} top-level torch ops ({ops[1]} incl. "
        f"nested); the reference takes {ref_ops[0]} ({ref_ops[1]})",
    )


def row(what, n, batch, t, flops, unit):
    """A table row: DeLaN's and the reference's time or rate, the speed-up, and DeLaN's matmul
    GFLOP/s (``flops`` per call) with the share of its time its own products take replayed alone
    (``t["mm"]``, timed interleaved with it)."""
    if unit == "ms":
        ours, theirs = f"{t['ours'] * 1e3:.2f} ms", f"{t['ref'] * 1e3:.2f} ms"
    else:
        ours, theirs = f"{batch / t['ours'] / 1e3:.0f}k/s", f"{batch / t['ref'] / 1e3:.0f}k/s"
    mm_time = t["mm"]
    trainable = f"{t['ref_trainable'] / t['ours']:.2f}x" if "ref_trainable" in t else ""
    return dict(
        what=what,
        n=n,
        batch=batch,
        ours=ours,
        ref=theirs,
        ratio=t["ref"] / t["ours"],
        trainable=trainable,
        gflops=f"{flops / t['ours'] / 1e9:.2f} ({mm_time / t['ours']:.0%})",
        note="",
    )


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--output", help="also write the printed report to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    cuda = device.type == "cuda"
    train_cases = [(7, 8192)] if cuda else [(2, 512), (7, 512)]
    inverse_cases = [(7, 262_144)] if cuda else [(2, 8192), (7, 8192)]
    load_start = load_average()
    load = os.getloadavg()[0]
    rows = []
    for weights in (LossWeights(1.0, 0.0, 0.0), LossWeights(1.0, 1.0, 0.0)):
        for n, batch in train_cases:
            rows.append(bench_train(n, batch, dtype, device, args.repeats, weights))
    for n, batch in inverse_cases:
        rows.extend(bench_inverse(n, batch, dtype, device, args.repeats))
    if not cuda:
        for n in (2, 7):
            rows.append(bench_single(n, dtype, device, args.repeats))
    sync(device)
    load = max(load, os.getloadavg()[0])

    lines = [
        "# Structured DeLaN vs the autograd reference (delan/reference.py)",
        "",
        f"{environment(device)}; dtype {args.dtype}; width {WIDTH}, depth {DEPTH}, softplus; "
        f"{conditions(args.repeats, load, load_start)} (other jobs on the machine slow the absolute rates, the "
        "ratios much less)",
        "reference for inference rows: parameters frozen (requires_grad False); 'vs trainable' = the speed-up "
        "against the reference with parameters that require grad (the old baseline)",
        "",
        "| what | n_dof | batch | DeLaN | reference | speed-up | vs trainable | DeLaN GFLOP/s (matmul share) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['what']} | {r['n']} | {r['batch']} | {r['ours']} | {r['ref']} | {r['ratio']:.2f}x | "
            f"{r.get('trainable', '')} | {r['gflops']} |"
        )
    notes = [r["note"] for r in rows if r["note"]]
    if notes:
        lines += [""] + [f"* single sample, n_dof {r['n']}: {r['note']}" for r in rows if r["note"]]
    return write_report(lines, args.output)


if __name__ == "__main__":
    main()
