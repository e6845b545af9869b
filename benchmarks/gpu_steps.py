"""GPU training steps and inference at the hardware's pace: eager, CUDA graph, compiled.

A structured DeLaN as ``delan train`` builds it by default (width 64, depth 2, softplus; loss:
torque + forward (mass norm) residuals; Adam, capturable on CUDA), n_dof 7, float32, on
synthetic states whose torques come from another random DeLaN.

* train step, per batch size: ``eager`` = :class:`delan.training_graph.GraphedSteps` with
  ``capture=False`` (the step's kernels launched from Python, no host read between steps -- the
  fastest eager loop; the trainer's eager loop also reads the loss each step); ``cuda graph`` =
  the same step replayed from a CUDA graph (what ``delan train --step cuda-graph`` runs);
  ``compiled + graph`` = the loss through ``torch.compile`` (fused elementwise kernels), then
  captured the same way.
* inverse dynamics at large batches: ``model.inverse_dynamics`` under inference_mode, and
  ``delan.compile_dynamics(model)``; samples per second.
* exactness: parameters after the same steps (same minibatches, same start) eager vs graph
  (max relative difference per tensor), and compiled vs eager inverse dynamics (relative error
  norm): float32 rounding, no more.

Times are medians of interleaved repeats (benchmarks/_timing.py), each sample long enough to
hold many steps; the host waits for the GPU only at the ends of a sample.

    python benchmarks/gpu_steps.py --output benchmarks/results/gpu_steps_cuda.md
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import environment, time_interleaved, write_report  # noqa: E402

import delan  # noqa: E402
from delan.dynamics import solve_spd_unchecked  # noqa: E402
from delan.errors import first_line  # noqa: E402
from delan.training import TrainConfig, build_model, make_loss, make_optimizer  # noqa: E402
from delan.training_graph import GraphedSteps  # noqa: E402

N_DOF = 7
failed: list = []  # variants that could not run, with why


def synthetic(n: int, samples: int, device: torch.device, seed: int = 0) -> dict:
    """States from a normal distribution and the torques of a random DeLaN (another seed)."""
    g = torch.Generator().manual_seed(seed)
    q, qd, qdd = (torch.randn(samples, n, generator=g) for _ in range(3))
    torch.manual_seed(seed + 1)
    teacher = delan.DeepLagrangianNetwork(n)
    with torch.no_grad():
        tau = teacher.inverse_dynamics(q, qd, qdd)
    return {k: v.to(device) for k, v in dict(q=q, qd=qd, qdd=qdd, tau=tau).items()}


def trainer_parts(config: TrainConfig, train: dict, seed: int = 0):
    """(model, optimiser, loss) as the trainer builds them for ``config`` with CUDA-graph steps
    (the forward part's solve without the host check); initial weights from ``seed``."""
    torch.manual_seed(seed)
    model = build_model(config, N_DOF, None, None, False)
    loss = make_loss(config, {k: v.cpu() for k, v in train.items()}, model, solve=solve_spd_unchecked)
    return model, make_optimizer(config, model), loss


def max_relative_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """The largest over the state's tensors of max |a - b| / max |b|."""
    worst = 0.0
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        worst = max(worst, float((x - y).abs().max() / y.abs().max().clamp_min(1e-30)))
    return worst


def _cycling(steps: GraphedSteps, order: list):
    """A call that takes one step on the next minibatch of ``order``, round and round."""
    position = [0]

    def one() -> None:
        steps.step(order[position[0] % len(order)])
        position[0] += 1

    return one


def step_rows(args, device, train, report):
    config = TrainConfig(device=str(device))
    n = train["q"].shape[0]
    rows, exact = [], []
    for batch in args.batch:
        order = [torch.randperm(n, device=device)[:batch] for _ in range(16)]
        fns, setups = {}, {}
        variants = ["eager", "cuda graph"] + (
            ["compiled + graph"] if args.compile and batch in args.compile_batch else []
        )
        base = None
        for name in variants:
            model, opt, loss = trainer_parts(config, train)
            if name == "compiled + graph":
                loss = torch.compile(loss, fullgraph=True)
            steps = GraphedSteps(model, opt, loss, train, batch, capture=name != "eager")
            t0 = time.perf_counter()
            try:
                for k in range(12):  # warm-up, capture (and compilation): the same 12 minibatches for all
                    steps.step(order[k % len(order)])
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            except Exception as exc:  # a compiler failure is a finding to report, not the end of the run
                failed.append(
                    f"- train step, batch {batch}, {name}: failed ({type(exc).__name__}: {first_line(exc)[:300]})"
                )
                continue
            setups[name] = time.perf_counter() - t0
            if name == "eager":
                base = copy.deepcopy(model)
            else:
                exact.append((batch, name, max_relative_difference(model, base), steps.captured))
            fns[name] = _cycling(steps, order)
        times = time_interleaved(fns, device, repeats=args.repeats, warmup=2, min_time=args.min_time)
        for name in fns:
            t = times[name]
            rows.append(
                f"| train step | {batch} | {name} | {t * 1e3:.3f} ms | {batch / t / 1e6:.3g} M/s | "
                f"{times['eager'] / t:.2f}x | {setups[name]:.1f} s |"
            )
        report(rows, exact)
    return rows, exact


def inference_rows(args, device, report_rows):
    rows, exact = [], []
    torch.manual_seed(0)
    model = delan.DeepLagrangianNetwork(N_DOF, device=device)
    model.requires_grad_(False)
    modes = args.infer_modes if args.compile else []
    compiled = {f"compiled ({m})": delan.compile_dynamics(model, mode=None if m == "default" else m) for m in modes}
    for batch in args.infer_batch:
        q, qd, qdd = (torch.randn(batch, N_DOF, device=device) for _ in range(3))
        inputs = (q, qd, qdd)
        with torch.inference_mode():
            ref = model.inverse_dynamics(*inputs)
            fns = {"eager": lambda a=inputs: model.inverse_dynamics(*a)}
            setup = {"eager": 0.0}
            for name, fast in compiled.items():
                t0 = time.perf_counter()
                try:
                    got = fast(*inputs)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                except Exception as exc:  # reported, as above
                    why = f"{type(exc).__name__}: {first_line(exc)[:300]}"
                    failed.append(f"- inverse dynamics, batch {batch}, {name}: failed ({why})")
                    continue
                setup[name] = time.perf_counter() - t0
                exact.append((batch, name, float((got - ref).norm() / ref.norm())))
                fns[name] = lambda a=inputs, f=fast: f(*a)
            times = time_interleaved(fns, device, repeats=args.repeats, warmup=2, min_time=args.min_time)
            if args.profile:
                _profile(fns, device, args.profile, batch)
        for name, t in times.items():
            rows.append(
                f"| inverse dynamics | {batch} | {name} | {t * 1e3:.3f} ms | {batch / t / 1e6:.3g} M/s | "
                f"{times['eager'] / t:.2f}x | {setup[name]:.1f} s |"
            )
        report_rows(rows, exact)
    return rows, exact


def _profile(fns, device, path, batch):
    """The GPU kernels of one call of each function, by time (torch.profiler), appended to ``path``."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with open(path, "a") as out:
        for name, fn in fns.items():
            with torch.profiler.profile(activities=activities) as prof:
                fn()
                fn()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
            out.write(f"## {name}, batch {batch} (two calls)\n\n")
            out.write(prof.key_averages().table(sort_by=sort, row_limit=25) + "\n\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, nargs="+", default=[512, 2048, 8192, 32768])
    p.add_argument("--compile-batch", type=int, nargs="+", default=[8192], help="batch sizes with a compiled step row")
    p.add_argument("--infer-batch", type=int, nargs="+", default=[262144])
    p.add_argument(
        "--infer-modes",
        nargs="+",
        default=["default"],
        help="torch.compile modes of the compiled inference rows (e.g. default max-autotune-no-cudagraphs)",
    )
    p.add_argument("--profile", default=None, metavar="FILE", help="append the inference calls' kernel tables here")
    p.add_argument("--samples", type=int, default=262144, help="training samples resident on the device")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.1, help="seconds per timed sample")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="leave out the compiled rows")
    p.add_argument("--skip-steps", action="store_true", help="inference rows only")
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(1)
    head = [
        "# Training steps and inference on the GPU: eager, CUDA graph, compiled",
        "",
        f"Written by `python benchmarks/gpu_steps.py {' '.join(sys.argv[1:] if argv is None else argv)}`.",
        "",
        environment(device),
        f"structured DeLaN, n_dof {N_DOF}, trainer defaults (width 64, depth 2, softplus; torque + forward "
        f"loss; Adam{', capturable' if device.type == 'cuda' else ''}); float32; medians of {args.repeats} "
        f"interleaved repeats of >= {args.min_time:g} s each",
        "",
        "| what | batch | how | time per call | samples/s | vs eager | setup (warm-up, capture, compile) |",
        "|---|---|---|---|---|---|---|",
    ]
    state = {"steps": ([], []), "infer": ([], [])}

    def render() -> str:
        (srows, sexact), (irows, iexact) = state["steps"], state["infer"]
        lines = head + srows + irows + ["", "Exactness:", ""]
        lines += [
            f"- train step, batch {b}, {name} vs eager after the same 12 steps: max relative parameter "
            f"difference {d:.2e} (graph captured: {c})"
            for b, name, d, c in sexact
        ]
        lines += [
            f"- inverse dynamics, batch {b}, {name} vs eager: relative error norm {e:.2e}" for b, name, e in iexact
        ]
        lines += failed
        return write_report(lines, args.output, echo=False)

    def report_steps(rows, exact):
        state["steps"] = (rows, exact)
        render()

    def report_infer(rows, exact):
        state["infer"] = (rows, exact)
        render()

    if not args.skip_steps:
        train = synthetic(N_DOF, args.samples, device)
        step_rows(args, device, train, report_steps)
    inference_rows(args, device, report_infer)
    print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
