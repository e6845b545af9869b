"""Speed of ddn's closed-form derivatives against torch.func on the same network.

Ratios (torch.func time / ddn time, > 1 means ddn is faster) come from interleaved repeats
in one process; medians are reported. Two torch.func routes to the Hessian are timed,
``vmap(hessian)`` (jacfwd over jacrev) and ``vmap(jacrev(jacrev))``, and the ratio is given
against each and against the faster of the two (the fair baseline). Efficiency is the time
the call's own matrix products take replayed alone at the shapes the call used
(``_timing.matmul_replay``, timed interleaved with the calls), divided by the call's time: the
share of the achievable matmul rate at those shapes.

    python benchmarks/ddn_derivatives.py                       # CPU, 1 thread, float32 + float64
    python benchmarks/ddn_derivatives.py --device cuda --batch 1000 10000 100000
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial

import torch
from torch.func import hessian, jacrev, vmap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import environment, load_average, matmul_replay, time_interleaved, write_report  # noqa: E402

import ddn  # noqa: E402


def run_case(n: int, batch: int, width: int, depth: int, activation: str, dtype, device, repeats: int):
    torch.manual_seed(0)
    net = ddn.DifferentialNetwork(n, 1, width=width, depth=depth, activation=activation, dtype=dtype, device=device)
    x = torch.randn(batch, n, dtype=dtype, device=device)
    f = lambda xi: net(xi)  # noqa: E731 - one sample (n,) -> (1,)
    fns = {
        "hess_func": lambda: vmap(hessian(f))(x),
        "hess_jacjac": lambda: vmap(jacrev(jacrev(f)))(x),
        "hess_ddn": lambda: net(x, order=2),
        "jac_func": lambda: vmap(jacrev(f))(x),
        "jac_ddn": lambda: net(x, order=1),
        "value": lambda: net(x),
    }
    with torch.no_grad():
        flops = {}
        for order in (1, 2):
            flops[order], fns[f"mm{order}"] = matmul_replay(partial(net, x, order=order), dtype, device)
        t = time_interleaved(fns, device, repeats=repeats, min_time=0.01)
    rows = []
    for order, refs, ours in [(2, ("hess_func", "hess_jacjac"), "hess_ddn"), (1, ("jac_func",), "jac_ddn")]:
        mm_time = t[f"mm{order}"]
        best = min(t[r] for r in refs)
        rows.append(
            dict(
                n=n,
                batch=batch,
                order=order,
                func_ms=t[refs[0]] * 1e3,
                jacjac_ms=t[refs[1]] * 1e3 if len(refs) > 1 else None,
                ddn_ms=t[ours] * 1e3,
                ratio=t[refs[0]] / t[ours],
                ratio_best=best / t[ours],
                value_ms=t["value"] * 1e3,
                gflop=flops[order] / 1e9,
                mm_ms=mm_time * 1e3,
                efficiency=mm_time / t[ours],
            )
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    p.add_argument("--inputs", nargs="+", type=int, default=[2, 7, 14], help="input sizes n")
    p.add_argument("--batch", nargs="+", type=int, default=[1000, 10000])
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--activation", default="tanh")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--output", help="also write the printed report to this markdown file")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    lines = [
        "# ddn derivatives vs torch.func",
        "",
        f"{environment(device)}; width {args.width}, depth {args.depth}, {args.activation}, one output; "
        f"median of {args.repeats} interleaved repeats.",
        f"{load_average()} when it started.",
        "ratio = torch.func time / ddn time (order 2: vmap(hessian) and vmap(jacrev(jacrev)), 'vs fastest' against "
        "the faster of the two; order 1: vmap(jacrev)); matmul ms = ddn's own matrix products replayed alone at "
        "the shapes it used; efficiency = matmul ms / ddn ms.",
        "",
    ]
    print("\n".join(lines), flush=True)
    for dtype_name in args.dtype:
        dtype = getattr(torch, dtype_name)
        head = [
            f"## {dtype_name}",
            "",
            "| n | batch | order | vmap(hessian) ms | vmap(jacrev(jacrev)) ms | ddn ms | ratio vs vmap(hessian) "
            "| ratio vs fastest torch.func | value-only ms | ddn GFLOP | matmul ms | efficiency |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        print("\n".join(head), flush=True)
        lines += head
        for batch in args.batch:
            for n in args.inputs:
                for r in run_case(n, batch, args.width, args.depth, args.activation, dtype, device, args.repeats):
                    jacjac = "-" if r["jacjac_ms"] is None else f"{r['jacjac_ms']:.3f}"
                    row = (
                        f"| {r['n']} | {r['batch']} | {r['order']} | {r['func_ms']:.3f} | {jacjac} | "
                        f"{r['ddn_ms']:.3f} | "
                        f"{r['ratio']:.2f}x | {r['ratio_best']:.2f}x | {r['value_ms']:.3f} | {r['gflop']:.3f} | "
                        f"{r['mm_ms']:.3f} | {r['efficiency']:.0%} |"
                    )
                    print(row, flush=True)
                    lines.append(row)
        lines.append("")
        print()
    lines.append(f"{load_average()} when it ended.")
    write_report(lines, args.output, echo=False)  # the rows were printed as they came
    return 0


if __name__ == "__main__":
    sys.exit(main())
