"""``delan data import|info``: bring recorded logs into the data format, and inspect data files."""
from __future__ import annotations

import argparse
import os

import numpy as np

from delan.errors import DataError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="import robot logs; inspect and validate data files",
                              description="Import recorded logs and inspect DeLaN data files.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    imp = sub.add_parser("import", help="convert a CSV or .npz log into a data file",
                         description="Import a log with q and tau (columns t, q0..q{n-1} or q_<joint>, "
                                     "tau0.. or tau_<joint>, optional qd*, qdd*, trajectory). Missing "
                                     "qd, qdd are estimated with a Savitzky-Golay filter.")
    imp.add_argument("log", metavar="LOG", help="LOG.csv or LOG.npz")
    imp.add_argument("-o", "--output", required=True, metavar="FILE.h5", help="data file to write (atomically)")
    imp.add_argument("--rate", type=float, default=None, metavar="HZ", help="sampling rate when the log has no t")
    imp.add_argument("--window", type=int, default=None, metavar="N",
                     help="Savitzky-Golay window in samples, odd (default: about 0.1 s)")
    imp.add_argument("--polyorder", type=int, default=3, metavar="K", help="Savitzky-Golay polynomial order (default 3)")
    imp.add_argument("--n-dof", type=int, default=None, metavar="N", help="expected number of joints (checked)")
    imp.add_argument("--system", default=None, help="system name to record in the file (optional)")
    imp.set_defaults(func=run_import)
    info = sub.add_parser("info", help="validate a data file and summarise it")
    info.add_argument("file", metavar="FILE.h5")
    info.set_defaults(func=run_info)


def run_import(args: argparse.Namespace) -> int:
    from delan.data import load_log, save_dataset
    from delan.data.derivatives import describe

    ds = load_log(args.log, rate=args.rate, window=args.window, polyorder=args.polyorder, n_dof=args.n_dof)
    if args.system:
        ds.system = args.system
    try:
        save_dataset(ds, args.output)
    except OSError as exc:
        raise DataError(f"{args.output}: cannot write: {exc}") from None
    print(f"wrote {args.output}: {len(ds)} trajectories, {ds.n_samples} samples, n_dof {ds.n_dof} "
          f"(joints {', '.join(ds.joint_names)})")
    for tr in ds:
        d = tr.meta.get("derivatives")
        how = describe(d) if d else "qd, qdd taken from the log"
        print(f"  {tr.name}: {len(tr)} samples at {tr.rate:.6g} Hz; {how}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from delan.data import load_dataset

    ds = load_dataset(args.file)
    c = ds.concatenate()
    rates = sorted({round(tr.rate, 6) for tr in ds})
    print(f"{args.file}: valid DeLaN data file ({os.path.getsize(args.file) / 1e6:.2f} MB)")
    print(f"  system: {ds.system or '(not recorded)'}; n_dof {ds.n_dof}; joints: {', '.join(ds.joint_names)}")
    print(f"  trajectories: {len(ds)} ({', '.join(ds.names[:30])}{', ...' if len(ds) > 30 else ''})")
    dur = [tr.t[-1] - tr.t[0] for tr in ds]
    print(f"  samples: {ds.n_samples}; rate: {', '.join(f'{r:g}' for r in rates)} Hz; "
          f"duration per trajectory {min(dur):.3g}-{max(dur):.3g} s")
    print(f"  ground truth: {', '.join(ds.truth_fields) or 'none'}")
    est = [tr.name for tr in ds if "derivatives" in tr.meta]
    if est:
        print(f"  qd/qdd estimated (Savitzky-Golay) in {len(est)} trajectories")
    if "generator" in ds.attrs:
        g = ds.attrs["generator"]
        if isinstance(g, dict):
            print(f"  generated: kind {g.get('kind')}, noise {g.get('noise')}, friction {g.get('friction')}, "
                  f"simulate {g.get('simulate')}, seed {g.get('seed')}")
    print(f"  {'field':<14}{'joint':<16}{'min':>12}{'max':>12}")
    for f in ("q", "qd", "qdd", "tau"):
        for j, name in enumerate(ds.joint_names):
            x = c[f][:, j]
            print(f"  {f:<14}{name:<16}{np.min(x):>12.4g}{np.max(x):>12.4g}")
    return 0
