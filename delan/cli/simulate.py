"""``delan simulate RUN_DIR``: roll out the learned forward dynamics and compare."""

from __future__ import annotations

import argparse

from delan.cli._checks import check_json_and_plots, finite, numbers, positive_integer, run_files
from delan.errors import OptionError
from delan.evaluation import DEFAULT_THRESHOLD


def add_parser(subparsers) -> None:
    from delan.integrators import INTEGRATORS

    p = subparsers.add_parser(
        "simulate",
        help="roll out the learned dynamics",
        description="Integrate the learned forward dynamics and compare with a recording (its "
        "torques replayed) or with the true system (free motion). Reports position "
        "and velocity errors, the valid-prediction time (time until the position "
        "error norm first exceeds --threshold) and the energy drift. A rollout whose "
        "state turns non-finite (or whose mass matrix stops being positive definite) "
        "ends there with a note; --json then has diverged, diverged_at, last_q, last_qd.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory made by `delan train`")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--system", default=None, metavar="NAME", help="compare with this true system (zero torque)")
    src.add_argument("--data", default=None, metavar="FILE", help="compare with a recorded trajectory of FILE")
    p.add_argument("--trajectory", default=None, metavar="NAME", help="trajectory of --data to replay")
    p.add_argument(
        "--integrator",
        "--method",
        dest="integrator",
        choices=INTEGRATORS,
        default="rk4",
        help="integration method (default rk4); symplectic = implicit midpoint in (q, p): energy "
        "error bounded over long free-motion rollouts (rk4's drifts), about 10x the cost per step",
    )
    p.add_argument(
        "--dt",
        type=float,
        default=None,
        metavar="S",
        help="step [s] (default: the recording's sampling step, or 0.004 with --system)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="number of steps (default: the whole recording, or 500 with --system)",
    )
    p.add_argument(
        "--q0",
        default=None,
        metavar="VALUES",
        help="--system only: comma-separated initial positions (default 0.5 on every joint; with "
        "--data the rollout starts at the recording's first state)",
    )
    p.add_argument(
        "--qd0", default=None, metavar="VALUES", help="--system only: comma-separated initial velocities (default 0)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="E",
        help=f"position error norm ending the valid prediction (default {DEFAULT_THRESHOLD} rad)",
    )
    p.add_argument(
        "--plots",
        default=None,
        metavar="DIR",
        help="write the rollout figure into DIR (rollout.png; DIR is created if its parent folder "
        "exists; an earlier rollout.png is replaced)",
    )
    p.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="write the results as one JSON object; an existing file is replaced only when it holds "
        "JSON and is none of the inputs (the data file, the run's own files)",
    )
    p.set_defaults(func=run)


def check_outputs(args: argparse.Namespace) -> None:
    """--json and --plots checked before any work (see :mod:`delan.cli._checks`)."""
    inputs = run_files(args.run_dir) + ([(args.data, "data file being replayed")] if args.data else [])
    check_json_and_plots(args.json, args.plots, ["rollout.png"], inputs)


def _short(values) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def run(args: argparse.Namespace) -> int:
    from delan.api import simulate

    if args.data is not None and (args.q0 is not None or args.qd0 is not None):
        raise OptionError(
            f"{'--q0' if args.q0 is not None else '--qd0'} applies to --system only: with --data "
            f"the rollout starts at the recording's first state"
        )
    q0, qd0 = numbers(args.q0, "--q0"), numbers(args.qd0, "--qd0")
    finite(args.dt, "--dt", positive=True)
    finite(args.threshold, "--threshold", positive=True)
    positive_integer(args.steps, "--steps")
    check_outputs(args)
    res = simulate(
        args.run_dir,
        system=args.system,
        data=args.data,
        trajectory=args.trajectory,
        integrator=args.integrator,
        dt=args.dt,
        steps=args.steps,
        q0=q0,
        qd0=qd0,
        threshold=args.threshold,
        plots=args.plots,
        json_path=args.json,
    )
    print(f"rollout of {args.run_dir} against {res['source']}: {res['steps']} {res['method']} steps of {res['dt']:g} s")
    print(
        f"valid-prediction time {res['valid_time']:.3f} s (position error < {res['threshold']:g}); "
        f"position RMSE {res['position_rmse']:.3e}, velocity RMSE {res['velocity_rmse']:.3e}, "
        f"final position error {res['final_position_error']:.3e}"
    )
    drift = f"energy drift of the model {res['energy_drift']:.3e} J (max |E(t) - E(0)|, {res['method']})"
    if "energy_ref_drift" in res:
        drift += f", of the true system {res['energy_ref_drift']:.3e} J"
    print(drift)
    if res.get("diverged"):
        print(
            f"note: the model's rollout diverged at t = {res['diverged_at']:.4g} s (non-finite state or a mass "
            f"matrix that is not positive definite); the results cover the {res['t'][-1]:.4g} s before it, "
            f"last finite state q = {_short(res['last_q'])}, qd = {_short(res['last_qd'])}"
        )
    if args.json:
        print(f"results written to {args.json}")
    if "figure" in res:
        print(f"figure: {res['figure']}")
    return 0
