"""``delan data import|info``: bring recorded logs into the data format, and inspect data files."""

from __future__ import annotations

import argparse
import os

import numpy as np

from delan.cli._checks import check_output_file, finite, positive_integer
from delan.errors import DataError, OptionError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "data",
        help="import robot logs; inspect and validate data files",
        description="Import recorded logs and inspect DeLaN data files.",
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    imp = sub.add_parser(
        "import",
        help="convert a CSV or .npz log into a data file",
        description="Import a log with q and tau (columns t, q0..q{n-1} or q_<joint>, "
        "tau0.. or tau_<joint>, optional qd*, qdd*, trajectory). Measured "
        "qd, qdd are kept; missing ones are estimated from q: Savitzky-Golay "
        "filter on a uniform clock, local polynomial fits on the actual time "
        "stamps on a jittered one.",
    )
    imp.add_argument("log", metavar="LOG", help="LOG.csv (cells separated by commas, semicolons or tabs) or LOG.npz")
    imp.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE.h5",
        help="data file to write (atomically); never the log itself; an existing file is replaced "
        "only when it is a DeLaN data file (any other file is refused)",
    )
    imp.add_argument("--rate", type=float, default=None, metavar="HZ", help="sampling rate when the log has no t")
    imp.add_argument(
        "--window",
        type=int,
        default=None,
        metavar="N",
        help="samples per polynomial fit when estimating qd, qdd, odd (default: about 0.1 s); "
        "Savitzky-Golay on a uniform clock, local fits on the time stamps on a jittered one",
    )
    imp.add_argument("--polyorder", type=int, default=3, metavar="K", help="order of those polynomials (default 3)")
    imp.add_argument("--n-dof", type=int, default=None, metavar="N", help="expected number of joints (checked)")
    imp.add_argument("--system", default=None, help="system name to record in the file (optional)")
    imp.add_argument(
        "--joint-types",
        default=None,
        metavar="TYPES",
        help="joint types to record: revolute or prismatic for all joints, or one per joint "
        "comma-separated, R/P abbreviations (e.g. R,R or R,P)",
    )
    imp.add_argument(
        "--despike",
        action="store_true",
        help="replace torque spikes: Hampel filter on tau per joint (moving median of 11 "
        "samples, outliers beyond 5 scaled MADs replaced by the median)",
    )
    imp.add_argument(
        "--allow-large-values",
        action="store_true",
        help="accept values beyond the plausible range (|q| > 1e4, |qd| > 1e5, |qdd| > 1e7, "
        "|tau| > 1e6; refused otherwise as wrong units or corrupt data); the file records it, "
        "so training accepts them too",
    )
    imp.set_defaults(func=run_import)
    info = sub.add_parser(
        "info",
        help="validate a data file and summarise it",
        description="Check a data file against the schema (shapes, real finite values, "
        "increasing time, matching n_dof) and summarise it: system, joints and "
        "their types, trajectories, samples, sampling rates, durations, ground "
        "truth, how qd and qdd were obtained, and the range of every field per "
        "joint. Values beyond the plausible range (wrong units or corrupt data) "
        "are flagged. Exits with 2 and one line naming the file, trajectory and "
        "field when the file is not valid.",
    )
    info.add_argument("file", metavar="FILE.h5", help="data file (HDF5) to check")
    info.set_defaults(func=run_info)


def run_import(args: argparse.Namespace) -> int:
    from delan.data import load_log, parse_joint_types, save_dataset
    from delan.data.derivatives import clock_info, describe, describe_clock

    check_output_file(args.output, "-o", "data", inputs=[(args.log, "log being imported")])
    finite(args.rate, "--rate", positive=True)
    if args.window is not None and (args.window < 1 or args.window % 2 == 0):
        raise OptionError(f"--window must be a positive odd number of samples, got {args.window}")
    if args.polyorder < 2:
        raise OptionError(f"--polyorder must be >= 2 to estimate accelerations, got {args.polyorder}")
    if args.window is not None and args.window <= args.polyorder:
        raise OptionError(f"--window {args.window} must be larger than --polyorder {args.polyorder}")
    positive_integer(args.n_dof, "--n-dof", "a positive number of joints")
    ds = load_log(
        args.log,
        rate=args.rate,
        window=args.window,
        polyorder=args.polyorder,
        n_dof=args.n_dof,
        despike=args.despike,
        allow_large_values=args.allow_large_values,
    )
    if args.joint_types is not None:
        ds.joint_types = parse_joint_types(args.joint_types, ds.n_dof, source=f"{args.log}: --joint-types")
    if args.system:
        ds.system = args.system
    try:
        save_dataset(ds, args.output)
    except OSError as exc:
        raise DataError(f"{args.output}: cannot write: {exc}") from None
    types = ", ".join(ds.joint_types) if ds.joint_types else "not recorded (pass --joint-types)"
    print(
        f"wrote {args.output}: {len(ds)} trajectories, {ds.n_samples} samples, n_dof {ds.n_dof} "
        f"(joints {', '.join(ds.joint_names)}; joint types: {types})"
    )
    for tr in ds:
        print(f"  {tr.name}: {len(tr)} samples; {describe_clock(clock_info(tr.t))}")
        print(f"  {tr.name}: {describe(tr.meta.get('derivatives'))}")
        sp = tr.meta.get("despike")
        if sp:
            print(
                f"  {tr.name}: tau despiked (Hampel: window {sp['window']} samples, {sp['threshold']:g} scaled "
                f"MADs): replaced {', '.join(map(str, sp['replaced']))} of {sp['samples']} samples per joint "
                f"({', '.join(ds.joint_names)})"
            )
    return 0


def _rate_groups(ds) -> list:
    """Distinct sampling rates of a dataset: trajectories whose rates agree within 0.1 % form
    one group. Each group: (rate [Hz], smallest step, largest step [s], jittered?)."""
    from delan.data.derivatives import clock_info

    clocks = [clock_info(tr.t) for tr in ds]
    for c in clocks:  # a jittered clock's rate: from the mean step (its median wanders by ~0.1 %)
        c["nominal"] = c["rate"] if c["uniform"] else c["rate_mean"]
    clocks.sort(key=lambda c: c["nominal"])
    groups = []  # lists of clocks, each within 0.1 % of its group's first (slowest) rate
    for c in clocks:
        if groups and c["nominal"] <= groups[-1][0]["nominal"] * 1.001:
            groups[-1].append(c)
        else:
            groups.append([c])
    return [
        (
            float(np.median([c["nominal"] for c in g])),
            min(c["step_min"] for c in g),
            max(c["step_max"] for c in g),
            not all(c["uniform"] for c in g),
        )
        for g in groups
    ]


def _format_rate(rate, step_min, step_max, jittered) -> str:
    if not jittered:
        return f"{rate:.6g} Hz"
    return f"{rate:.4g} Hz (jittered: steps {1000 * step_min:.3g}–{1000 * step_max:.3g} ms)"


def run_info(args: argparse.Namespace) -> int:
    from delan.data import load_dataset
    from delan.data.schema import ALLOW_LARGE, describe_implausible, implausible

    ds = load_dataset(args.file, check_range=False)
    c = ds.concatenate()
    rates = ", ".join(_format_rate(*g) for g in _rate_groups(ds))
    print(f"{args.file}: valid DeLaN data file ({os.path.getsize(args.file) / 1e6:.2f} MB)")
    print(f"  system: {ds.system or '(not recorded)'}; n_dof {ds.n_dof}; joints: {', '.join(ds.joint_names)}")
    print(f"  joint types: {', '.join(ds.joint_types) if ds.joint_types else 'not recorded'}")
    print(f"  trajectories: {len(ds)} ({', '.join(ds.names[:30])}{', ...' if len(ds) > 30 else ''})")
    dur = [tr.t[-1] - tr.t[0] for tr in ds]
    print(f"  samples: {ds.n_samples}; rate: {rates}; duration per trajectory {min(dur):.3g}-{max(dur):.3g} s")
    print(f"  ground truth: {', '.join(ds.truth_fields) or 'none'}")
    est = {}
    for tr in ds:
        d = tr.meta.get("derivatives")
        if d:
            key = f"{', '.join(d.get('estimated', ['qd', 'qdd']))} estimated ({d.get('method', 'savitzky-golay')})"
            est[key] = est.get(key, 0) + 1
    for key, count in est.items():
        print(f"  {key} in {count} trajectories")
    spikes = [tr.meta["despike"] for tr in ds if isinstance(tr.meta.get("despike"), dict)]
    if spikes:
        per_joint = np.sum([s_["replaced"] for s_ in spikes], axis=0)
        print(
            f"  tau despiked on import in {len(spikes)} trajectories: replaced "
            f"{', '.join(str(int(x)) for x in per_joint)} samples per joint"
        )
    if "generator" in ds.attrs:
        g = ds.attrs["generator"]
        if isinstance(g, dict):
            print(
                f"  generated: kind {g.get('kind')}, noise {g.get('noise')}, friction {g.get('friction')}, "
                f"simulate {g.get('simulate')}, seed {g.get('seed')}"
            )
    print(f"  {'field':<14}{'joint':<16}{'min':>12}{'max':>12}")
    for f in ("q", "qd", "qdd", "tau"):
        for j, name in enumerate(ds.joint_names):
            x = c[f][:, j]
            print(f"  {f:<14}{name:<16}{np.min(x):>12.4g}{np.max(x):>12.4g}")
    allowed = bool(ds.attrs.get(ALLOW_LARGE))
    for tr in ds:
        for bad in implausible(tr.fields()):
            print(
                f"  warning: trajectory {tr.name!r}: field {bad[0]!r}: {describe_implausible(*bad)}; "
                + (
                    "accepted: the file says allow_large_values"
                    if allowed
                    else "wrong units or corrupt data? Training and evaluation refuse this file"
                )
            )
    return 0
