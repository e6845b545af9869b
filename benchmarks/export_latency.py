"""Single-state latency of the exported artefacts (``delan export``), called from Python.

A control loop asks for one state's torque at a time (B = 1). Contenders, all on the same
width-64, depth-2 structured DeLaN as ``delan train`` builds it for an arm (revolute joints as
(sin q, cos q), learned friction, mass_scale and potential_scale), on one CPU thread:

* eager:        ``model.inverse_dynamics`` on (1, n) tensors under ``torch.inference_mode``;
* fast path:    ``model.single_sample_inverse_dynamics()`` on NumPy (n,) arrays;
* torchscript:  ``torch.jit.load(file).inverse_dynamics(q, qd, qdd)`` (the torque alone), and the
                entry point ``forward(q, qd, qdd, tau)`` (all six outputs);
* exported:     ``torch.export.load(file).module()(q, qd, qdd, tau)`` (all six outputs);
* onnx:         ``onnxruntime.InferenceSession.run`` with 1 intra-op and 1 inter-op thread, asking
                for all six outputs, and for ``torque`` alone (the same graph).

For each, the median time per call over interleaved repeats (wall clock, and this process's CPU
time in brackets, which other jobs on a shared machine inflate far less), and the largest
difference of its torque from the eager model's over 200 random states, relative to the largest
torque. float32 and float64 (every format exports both).

    python benchmarks/export_latency.py --output benchmarks/results/export_latency.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import conditions, environment, load_average, time_both  # noqa: E402

from delan.export import export_model  # noqa: E402
from delan.models import DeepLagrangianNetwork  # noqa: E402

WIDTH, DEPTH = 64, 2


def make(n: int, dtype: torch.dtype) -> DeepLagrangianNetwork:
    torch.manual_seed(0)
    model = DeepLagrangianNetwork(
        n,
        width=WIDTH,
        depth=DEPTH,
        revolute=[True] * n,
        friction=True,
        mass_scale=[0.05 + 0.5 * i for i in range(n)],
        potential_scale=3.0,
    )
    return model.to(dtype).eval()


def contenders(model, folder: str, n: int, dtype):
    """{name: (call on one state, torque of a state given as (1, n) tensors)}."""
    import onnxruntime as ort

    paths = {
        fmt: os.path.join(folder, f"m{n}_{str(dtype)[6:]}{ext}")
        for fmt, ext in (("torchscript", ".pt"), ("exported", ".pt2"), ("onnx", ".onnx"))
    }
    for fmt, path in paths.items():
        export_model(model, path, fmt)
    ts = torch.jit.load(paths["torchscript"])
    ep = torch.export.load(paths["exported"]).module()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(paths["onnx"], options, providers=["CPUExecutionProvider"])
    fast = model.single_sample_inverse_dynamics()

    g = torch.Generator().manual_seed(1)
    x = tuple(torch.randn(1, n, dtype=torch.float64, generator=g).to(dtype) for _ in range(4))
    xn = tuple(v[0].numpy().copy() for v in x)
    feed = {k: v.numpy() for k, v in zip(("q", "qd", "qdd", "tau"), x)}

    def eager(*s):
        with torch.inference_mode():
            return model.inverse_dynamics(*s[:3])

    def ts_inverse(*s):
        with torch.no_grad():
            return ts.inverse_dynamics(*s[:3])

    def ts_all(*s):
        with torch.no_grad():
            return ts(*s)[0]

    def ep_all(*s):
        with torch.no_grad():
            return ep(*s)[0]

    def ort_run(names):
        def call(*s):
            return torch.from_numpy(session.run(names, {k: v.numpy() for k, v in zip(feed, s)})[0])

        return call

    def fast_torque(*s):
        return torch.from_numpy(fast(*(v[0].numpy() for v in s[:3]))).unsqueeze(0)

    return {
        "eager `inverse_dynamics`": (lambda: eager(*x), eager),
        "fast path (NumPy)": (lambda: fast(*xn[:3]), fast_torque),
        "torchscript `inverse_dynamics`": (lambda: ts_inverse(*x), ts_inverse),
        "torchscript `forward` (all outputs)": (lambda: ts_all(*x), ts_all),
        "exported `module()` (all outputs)": (lambda: ep_all(*x), ep_all),
        "onnxruntime, all outputs": (lambda: session.run(None, feed), ort_run(None)),
        "onnxruntime, `torque` only": (lambda: session.run(["torque"], feed), ort_run(["torque"])),
    }


def max_difference(model, torque_fn, n: int, dtype, samples: int = 200) -> float:
    g = torch.Generator().manual_seed(2)
    X = [torch.randn(samples, n, dtype=torch.float64, generator=g).to(dtype) for _ in range(4)]
    with torch.inference_mode():
        want = model.inverse_dynamics(*X[:3]).double()
    got = torch.cat([torque_fn(*(v[k : k + 1] for v in X)).double() for k in range(samples)])
    return float((got - want).abs().max() / want.abs().max())


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--n-dof", default="2,7", help="comma-separated joint counts (default 2,7)")
    p.add_argument("--output", help="also write the printed report to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    load = os.getloadavg()[0]
    load_start = load_average()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for dtype in (torch.float32, torch.float64):
            for n in (int(v) for v in args.n_dof.split(",")):
                model = make(n, dtype)
                calls = contenders(model, folder, n, dtype)
                # TorchScript optimises a graph after its first calls; onnxruntime allocates on its first
                wall, cpu = time_both({k: v[0] for k, v in calls.items()}, repeats=args.repeats, warmup=20)
                load = max(load, os.getloadavg()[0])
                base = wall["eager `inverse_dynamics`"]
                for name, (_, torque_fn) in calls.items():
                    rows.append(
                        (
                            str(dtype)[6:],
                            n,
                            name,
                            wall[name],
                            cpu[name],
                            base / wall[name],
                            max_difference(model, torque_fn, n, dtype),
                        )
                    )
    lines = [
        "# Single-state latency of the exported artefacts, from Python",
        "",
        f"{environment(torch.device('cpu'))}; onnxruntime {ort.__version__} (1 intra-op, 1 inter-op thread); "
        f"structured DeLaN, width {WIDTH}, depth {DEPTH}, softplus, revolute joints, friction, output scales; "
        f"batch 1 (one state per call); {conditions(args.repeats, load, load_start)}",
        "",
        "Microseconds per call by the wall clock, and by this process's CPU time in brackets (other jobs on a "
        "shared machine inflate the wall clock far more). speed-up: eager time / this time (wall). "
        "torque error: max |torque - eager torque| / max |eager torque| over 200 random states, one call each. "
        "Rows marked (all outputs) compute torque, acceleration, mass matrix, Coriolis, gravity and friction "
        "in one call.",
        "",
        "| dtype | n_dof | call | latency [us] | speed-up vs eager | torque error |",
        "|---|---|---|---|---|---|",
    ]
    for dt, n, name, w, c, ratio, diff in rows:
        lines.append(f"| {dt} | {n} | {name} | {w * 1e6:.1f} ({c * 1e6:.1f}) | {ratio:.2f}x | {diff:.1e} |")
    text = "\n".join(lines)
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return text


if __name__ == "__main__":
    main()
