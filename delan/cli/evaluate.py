"""``delan evaluate RUN_DIR DATA.h5``: metrics of a trained model on (held-out) trajectories."""

from __future__ import annotations

import argparse

from delan.cli._checks import check_json_and_plots, run_files


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="metrics of a trained model on a data file",
        description="Evaluate a trained run on trajectories of a data file: torque, inertial, "
        "Coriolis, gravity, power and forward-dynamics MSE (mean over samples of the "
        "squared error norm), their variance-normalised NMSE, and the valid prediction "
        "time (vpt) of rollouts under the recorded torques. Prints a table; --json "
        "writes one JSON object.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory made by `delan train`")
    p.add_argument(
        "data",
        metavar="DATA.h5",
        nargs="?",
        default=None,
        help="trajectory data file (default: the one the run was trained on)",
    )
    p.add_argument(
        "--test",
        default=None,
        metavar="NAMES",
        help="comma-separated trajectory names (default: the run's held-out ones when DATA "
        "holds its training data, whatever its path; else all)",
    )
    p.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="write the metrics as one JSON object; an existing file is replaced only when it holds "
        "JSON and is none of the inputs (the data file, the run's own files)",
    )
    p.add_argument(
        "--plots",
        default=None,
        metavar="DIR",
        help="write figures into DIR (decomposition.png, training.png; created if its parent "
        "folder exists; earlier figures of these names are replaced)",
    )
    p.add_argument(
        "--no-rollouts",
        dest="rollouts",
        action="store_false",
        help="skip the valid-prediction-time rollouts (vpt), the slow part",
    )
    p.set_defaults(func=run)


FIGURES = ["decomposition.png", "training.png"]


def check_outputs(args: argparse.Namespace) -> None:
    """--json and --plots checked before any work (see :mod:`delan.cli._checks`)."""
    inputs = run_files(args.run_dir) + ([(args.data, "data file being evaluated")] if args.data else [])
    check_json_and_plots(args.json, args.plots, FIGURES, inputs)


def run(args: argparse.Namespace) -> int:
    from delan.api import evaluate
    from delan.evaluation import METRICS, format_table

    check_outputs(args)

    test = [x.strip() for x in args.test.split(",") if x.strip()] if args.test is not None else None
    res = evaluate(args.run_dir, args.data, test=test, json_path=args.json, plots=args.plots, rollouts=args.rollouts)
    table = {
        "metrics": {k: res[k] for k in METRICS if k in res},
        "n_samples": res["n_samples"],
        "unavailable": res["unavailable"],
    }
    print(f"{res['model']} model of {args.run_dir} on {res['data']}: {', '.join(res['test'])}")
    print(format_table(table))
    for name, per in res["per_trajectory"].items():
        if "vpt_diverged_at" in per:
            print(
                f"note: the rollout of {name!r} diverged {per['vpt_diverged_at']:.4g} s after its start "
                f"(its vpt is {per['vpt']:.4g} s, the last recorded time it reached)"
            )
    if args.json:
        print(f"metrics written to {args.json}")
    for f in res.get("figures", []):
        print(f"figure: {f}")
    return 0
