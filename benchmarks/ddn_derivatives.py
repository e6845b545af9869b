"""Speed of ddn's closed-form derivatives against torch.func on the same network.

Ratios (torch.func time / ddn time, > 1 means ddn is faster) come from interleaved repeats
in one process; medians are reported. Efficiency is the time the matrix products alone would
take at the machine's measured matmul rate (FLOPs counted by torch's FlopCounterMode),
divided by the measured time.

    python benchmarks/ddn_derivatives.py                       # CPU, 1 thread, float32 + float64
    python benchmarks/ddn_derivatives.py --device cuda --batch 1000 10000 100000
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
from torch.func import hessian, jacrev, vmap
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import environment, matmul_rate, time_interleaved  # noqa: E402

import ddn  # noqa: E402


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def run_case(n: int, batch: int, width: int, depth: int, activation: str, dtype, device, repeats: int, rate: float):
    torch.manual_seed(0)
    net = ddn.DifferentialNetwork(n, 1, width=width, depth=depth, activation=activation, dtype=dtype, device=device)
    x = torch.randn(batch, n, dtype=dtype, device=device)
    f = lambda xi: net(xi)  # noqa: E731 - one sample (n,) -> (1,)
    fns = {
        "hess_func": lambda: vmap(hessian(f))(x),
        "hess_ddn": lambda: net(x, order=2),
        "jac_func": lambda: vmap(jacrev(f))(x),
        "jac_ddn": lambda: net(x, order=1),
        "value": lambda: net(x),
    }
    with torch.no_grad():
        t = time_interleaved(fns, device, repeats=repeats, min_time=0.01)
        flops2 = count_flops(lambda: net(x, order=2))
        flops1 = count_flops(lambda: net(x, order=1))
    rows = []
    for order, ref, ours, flops in [(2, "hess_func", "hess_ddn", flops2), (1, "jac_func", "jac_ddn", flops1)]:
        rows.append(
            dict(
                n=n,
                batch=batch,
                order=order,
                func_ms=t[ref] * 1e3,
                ddn_ms=t[ours] * 1e3,
                ratio=t[ref] / t[ours],
                value_ms=t["value"] * 1e3,
                gflop=flops / 1e9,
                efficiency=(flops / rate) / t[ours],
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
        "ratio = torch.func time / ddn time (order 2: vmap(hessian), order 1: vmap(jacrev)); "
        "efficiency = (matmul FLOPs / measured matmul rate) / ddn time.",
        "",
    ]
    print("\n".join(lines), flush=True)
    for dtype_name in args.dtype:
        dtype = getattr(torch, dtype_name)
        rate = matmul_rate(8 * 1000, args.width, dtype, device)
        head = [
            f"## {dtype_name} (matmul rate {rate / 1e9:.1f} GFLOP/s at (8000, {args.width}) x ({args.width}, {args.width}))",
            "",
            "| n | batch | order | torch.func ms | ddn ms | ratio | value-only ms | ddn GFLOP | efficiency |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        print("\n".join(head), flush=True)
        lines += head
        for batch in args.batch:
            for n in args.inputs:
                for r in run_case(n, batch, args.width, args.depth, args.activation, dtype, device, args.repeats, rate):
                    row = (
                        f"| {r['n']} | {r['batch']} | {r['order']} | {r['func_ms']:.3f} | {r['ddn_ms']:.3f} | "
                        f"{r['ratio']:.2f}x | {r['value_ms']:.3f} | {r['gflop']:.3f} | {r['efficiency']:.0%} |"
                    )
                    print(row, flush=True)
                    lines.append(row)
        lines.append("")
        print()
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
