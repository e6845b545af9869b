"""``delan generate SYSTEM -o FILE.h5``: simulate trajectories of a known system into a data file."""

from __future__ import annotations

import argparse
import os
import time

from delan.cli._checks import check_output_file, finite, positive_integer
from delan.errors import DataError


def add_parser(subparsers) -> None:
    from delan.systems import SYSTEMS
    from delan.trajectories import KINDS

    p = subparsers.add_parser(
        "generate",
        help="simulate trajectories of a known system",
        description="Generate a trajectory data file (HDF5) with exact torques and ground truth "
        f"from a known system ({', '.join(SYSTEMS)}).",
    )
    p.add_argument("system", metavar="SYSTEM", help=f"one of: {', '.join(SYSTEMS)}")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE.h5",
        help="data file to write (atomically); an existing file is replaced only when it is a DeLaN "
        "data file (any other file is refused)",
    )
    p.add_argument(
        "--trajectories",
        type=int,
        default=None,
        metavar="N",
        help="number of trajectories (characters: first N letters; default all letters, else 10)",
    )
    p.add_argument("--kind", choices=KINDS, default="fourier", help="trajectory kind (default fourier)")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="seconds per trajectory (default 2 for characters, 5 otherwise)",
    )
    p.add_argument("--rate", type=float, default=250.0, metavar="HZ", help="sampling rate (default 250)")
    p.add_argument(
        "--noise",
        type=float,
        default=0.0,
        metavar="STD",
        help="relative sensor noise: std as a fraction of each channel's RMS (default 0)",
    )
    p.add_argument("--friction", action="store_true", help="add viscous + Coulomb joint friction")
    p.add_argument("--n-dof", type=int, default=None, metavar="N", help="number of links (n-link)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed, >= 0 (default 0)")
    p.add_argument(
        "--simulate",
        action="store_true",
        help="record a simulated tracking-controller run instead of the exact reference",
    )
    p.add_argument(
        "--piece-samples",
        type=int,
        default=None,
        metavar="N",
        help="write the file N samples at a time, never holding it whole (for files larger than "
        "memory, e.g. 262144; same contents as a file written whole; not with --simulate)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from delan.data import save_dataset
    from delan.data.generate import generate_dataset

    check_output_file(args.output, "-o", "data")
    finite(args.rate, "--rate", positive=True)
    finite(args.duration, "--duration", positive=True)
    finite(args.noise, "--noise", minimum=0)
    started = time.perf_counter()
    piece = _piece_samples(args)
    # the options of generate_dataset, the same whether the file is written whole or in pieces
    recipe = dict(
        kind=args.kind,
        n_trajectories=args.trajectories,
        duration=args.duration,
        rate=args.rate,
        noise=args.noise,
        friction=args.friction,
        n_dof=args.n_dof,
        seed=args.seed,
    )
    if piece is not None:
        from delan.data.chunked import generate_to_file

        info = generate_to_file(args.output, args.system, piece=piece, **recipe)
        g = info["generator"]
        print(
            f"wrote {args.output} in pieces of {piece} samples: system {info['system']} (n_dof {info['n_dof']}, "
            f"friction {'on' if g['friction'] else 'off'}), {info['trajectories']} {g['kind']} trajectories x "
            f"{g['duration']:g} s at {g['rate']:g} Hz = {info['samples']} samples, exact reference + inverse "
            f"dynamics, noise {g['noise']:g}, seed {g['seed']}; ground truth: {', '.join(info['truth'])}; "
            f"{os.path.getsize(args.output) / 1e6:.2f} MB in {time.perf_counter() - started:.2f} s"
        )
        return 0
    ds = generate_dataset(args.system, simulate=args.simulate, **recipe)
    try:
        save_dataset(ds, args.output)
    except OSError as exc:
        raise DataError(f"{args.output}: cannot write: {exc}") from None
    elapsed = time.perf_counter() - started
    g = ds.attrs["generator"]
    size = os.path.getsize(args.output)
    print(
        f"wrote {args.output}: system {ds.system} (n_dof {ds.n_dof}, friction {'on' if g['friction'] else 'off'}), "
        f"{len(ds)} {g['kind']} trajectories x {g['duration']:g} s at {g['rate']:g} Hz = {ds.n_samples} samples, "
        f"{'simulated tracking run' if g['simulate'] else 'exact reference + inverse dynamics'}, "
        f"noise {g['noise']:g}, seed {g['seed']}; ground truth: {', '.join(ds.truth_fields)}; "
        f"{size / 1e6:.2f} MB in {elapsed:.2f} s"
    )
    return 0


def _piece_samples(args: argparse.Namespace):
    """Samples per piece when the file is to be written in pieces (--piece-samples), else None."""
    # DataError, as delan.data.chunked.generate_to_file refuses such a piece size
    positive_integer(args.piece_samples, "--piece-samples", error=DataError)
    if args.piece_samples is None:
        return None
    if args.simulate:
        raise DataError(
            "--piece-samples: a --simulate run integrates all trajectories together and is "
            "written whole; drop --simulate or --piece-samples"
        )
    return args.piece_samples
