"""`delan control RUN_DIR --system NAME`: close the loop around the TRUE system with a model.

Two tasks:

* `--task track`: follow a reference (`--trajectory FILE:NAME` from a data file, or
  `generated`: a Fourier trajectory inside the system's limits, from `--seed`) with
  `--controller pd` (the model is not used), `feedforward` (the model's inverse dynamics of
  the reference + PD) or `computed-torque` (the model's inverse dynamics at the measured
  state); reports the RMS and max tracking error per joint and the torque effort.
* `--task swing-up` (cartpole, furuta): energy-based swing-up from the model's energies and
  LQR from its linearisation, from rest hanging down; reports success (within 0.1 rad of upright,
  held 2 s) and the time it took.

The controller runs at `--rate` Hz with its torque held in between, sees the state through
Gaussian sensor noise `--noise`, and acts on the TRUE system (delan.systems), integrated by RK4.
RUN_DIR may be an mlp run (tracking with pd or feedforward only) or the word `true` (the true
system's own dynamics as the model: the ideal baseline).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any, Dict, List, Optional

TASKS = ["track", "swing-up"]
CONTROLLERS = ["pd", "feedforward", "computed-torque"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "control",
        help="close the loop: the model as feed-forward, or swing-up, on the true system",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory made by `delan train`, or `true`")
    p.add_argument("--system", required=True, metavar="NAME", help="the true system to control")
    p.add_argument(
        "--task",
        choices=TASKS,
        default="track",
        help="track a trajectory, or swing up (cart-pole, Furuta) (default track)",
    )
    p.add_argument(
        "--trajectory",
        default="generated",
        metavar="FILE:NAME",
        help="track: trajectory NAME of data file FILE, or `generated` (default)",
    )
    p.add_argument(
        "--controller", choices=CONTROLLERS, default=None, help="track: pd, feedforward (default) or computed-torque"
    )
    p.add_argument("--rate", type=float, default=500.0, metavar="HZ", help="control rate (default 500 Hz)")
    p.add_argument(
        "--noise",
        default="0",
        metavar="STD[,STD_QD]",
        help="sensor noise standard deviation on q (and qd; a second number sets qd's), default 0",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="seconds (default: the trajectory's length, 5 s generated, 10 s swing-up)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and of a generated trajectory (default 0)")
    p.add_argument(
        "--bandwidth",
        type=float,
        default=10.0,
        metavar="W",
        help="track: PD gains for about this closed-loop frequency [rad/s] with each joint's "
        "effective inertia m_i = 1 / (H^-1)_ii of the true mass matrix (median along the "
        "reference; kp = W^2 m_i, kd = 2 Z W m_i; computed torque: W^2, 2 Z W), default 10",
    )
    p.add_argument("--damping", type=float, default=1.0, metavar="Z", help="track: damping ratio (default 1)")
    p.add_argument(
        "--torque-limit",
        default=None,
        metavar="VALUES",
        help="bound on |tau|, one number or one per joint (default: none for tracking, the "
        "system's default for swing-up)",
    )
    p.add_argument(
        "--plots",
        default=None,
        metavar="DIR",
        help="write the figure into DIR (tracking.png or swing_up.png; DIR is created if its parent folder exists)",
    )
    p.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="write the results as one JSON object; an existing file is replaced only when it holds "
        "JSON and is none of the inputs",
    )
    p.set_defaults(func=run)


def _numbers(text: Optional[str], option: str, count: Optional[List[int]] = None) -> Optional[List[float]]:
    from delan.control import ControlError

    if text is None:
        return None
    try:
        values = [float(x) for x in str(text).split(",")]
    except ValueError:
        raise ControlError(f"{option} must be comma-separated numbers, got {text!r}") from None
    if count is not None and len(values) not in count:
        raise ControlError(f"{option} takes {' or '.join(map(str, count))} numbers, got {len(values)} ({text!r})")
    if not all(math.isfinite(v) for v in values):
        raise ControlError(f"{option} must be finite numbers, got {text!r}")
    return values


def _check_options(args) -> None:
    from delan.control import ControlError

    if not (math.isfinite(args.rate) and args.rate > 0):
        raise ControlError(f"--rate must be a positive number of Hz, got {args.rate:g}")
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        raise ControlError(f"--duration must be a positive number of seconds, got {args.duration:g}")
    if args.duration is not None and args.duration * args.rate > 2_000_000:
        raise ControlError(
            f"--duration {args.duration:g} s at --rate {args.rate:g} Hz is more than 2,000,000 control steps"
        )
    if not (math.isfinite(args.bandwidth) and args.bandwidth > 0):
        raise ControlError(f"--bandwidth must be positive, got {args.bandwidth:g}")
    if not (math.isfinite(args.damping) and args.damping >= 0):
        raise ControlError(f"--damping must be >= 0, got {args.damping:g}")
    if args.task == "swing-up":
        if args.controller is not None:
            raise ControlError("--controller applies to --task track; swing-up uses the energy controller")
        if args.trajectory != "generated":
            raise ControlError("--trajectory applies to --task track, not swing-up")


def _load_model(run_dir: str, system):
    """(model, kind) of RUN_DIR, or the true system for the word ``true``."""
    from delan.errors import RunError
    from delan.evaluation import model_kind
    from delan.training import load_run

    if run_dir == "true":
        return system, "true"
    if not os.path.exists(run_dir):
        raise RunError(f"{run_dir}: no such run directory")
    _, model = load_run(run_dir)
    if model.n_dof != system.n_dof:
        raise RunError(
            f"{run_dir}: the model has n_dof = {model.n_dof}, but system {system.name!r} has {system.n_dof} joints"
        )
    return model, model_kind(model)


def _reference(args, system):
    """(reference callable, description, duration, (q0, qd0)) for --task track."""
    import numpy as np

    from delan.control import ControlError, SampledReference
    from delan.errors import DataError

    if args.trajectory == "generated":
        from delan.trajectories import fourier_trajectories

        duration = 5.0 if args.duration is None else args.duration
        ref = fourier_trajectories(system, 1, duration, np.random.default_rng(args.seed))[0]
        q0, qd0, _ = (np.asarray(x, dtype=np.float64).reshape(-1) for x in ref(0.0))
        return ref, f"generated (Fourier, seed {args.seed}, {duration:g} s)", duration, (q0, qd0)
    path, sep, name = args.trajectory.rpartition(":")
    if not sep or not path or not name:
        raise ControlError(
            f"--trajectory must be FILE:NAME (a data file and a trajectory in it) or `generated`, "
            f"got {args.trajectory!r}"
        )
    from delan.data import load_dataset

    ds = load_dataset(path)
    if name not in ds.names:
        raise DataError(f"{path}: no trajectory {name!r}; it has {', '.join(ds.names)}")
    if ds.n_dof != system.n_dof:
        raise DataError(f"{path}: has n_dof = {ds.n_dof}, but system {system.name!r} has {system.n_dof} joints")
    tr = ds[name]
    ref = SampledReference(tr.t, tr.q, tr.qd, tr.qdd, name=name)
    duration = ref.duration if args.duration is None else args.duration
    if duration > ref.duration + 1e-9:
        raise ControlError(
            f"--duration {duration:g} s is longer than trajectory {name!r} of {path} ({ref.duration:g} s)"
        )
    return ref, f"{path}:{name}", duration, (tr.q[0], tr.qd[0])


def _track(args, system, model, kind: str, noise):
    import numpy as np

    from delan.control import (
        PD,
        ComputedTorque,
        ControlError,
        FeedForwardPD,
        pd_gains,
        simulate_closed_loop,
        tracking_metrics,
    )

    controller_name = args.controller or "feedforward"
    if kind == "mlp" and controller_name == "computed-torque":
        raise ControlError(
            f"{args.run_dir} is an mlp run: it predicts torques from (q, qd, qdd) only, so it "
            f"drives --controller feedforward (or pd), not computed-torque"
        )
    ref, source, duration, (q0, qd0) = _reference(args, system)
    limit = _numbers(args.torque_limit, "--torque-limit", [1, system.n_dof])
    if limit is not None and not all(v > 0 for v in limit):
        raise ControlError(f"--torque-limit must be positive, got {args.torque_limit!r}")
    w, z = args.bandwidth, args.damping
    if controller_name == "computed-torque":
        kp, kd = np.full(system.n_dof, w * w), np.full(system.n_dof, 2 * z * w)
        controller = ComputedTorque(model, ref, kp, kd, torque_limit=limit)
    else:
        # the TRUE inertia over the reference (the same gains for every model)
        along = np.stack([np.asarray(ref(t)[0], dtype=np.float64).reshape(-1) for t in np.linspace(0, duration, 50)])
        kp, kd = pd_gains(system, along, bandwidth=w, damping=z)
        controller = (
            PD(ref, kp, kd, system.n_dof, torque_limit=limit)
            if controller_name == "pd"
            else FeedForwardPD(model, ref, kp, kd, torque_limit=limit)
        )
    result = simulate_closed_loop(
        system, controller, q0, qd0, duration=duration, rate=args.rate, noise=noise, seed=args.seed
    )
    out = dict(
        task="track",
        controller=controller_name,
        trajectory=source,
        kp=list(map(float, kp)),
        kd=list(map(float, kd)),
        torque_limit=limit,
    )
    out.update(tracking_metrics(result))
    return out, result


def _swing_up(args, system, model, kind: str, noise):
    import torch

    from delan.control import (
        SWING_UP_DEFAULTS,
        ControlError,
        simulate_closed_loop,
        swing_up_controller,
        swing_up_metrics,
    )

    if system.name not in SWING_UP_DEFAULTS:
        raise ControlError(
            f"--task swing-up needs an under-actuated system with a swing-up "
            f"({', '.join(SWING_UP_DEFAULTS)}), got {args.system!r}"
        )
    if kind == "mlp":
        raise ControlError(
            f"{args.run_dir} is an mlp run: it has no energies to swing up with (use a structured "
            f"or black-box run, or `true`)"
        )
    overrides: Dict[str, Any] = dict(rate=args.rate)
    limit = _numbers(args.torque_limit, "--torque-limit", [1])
    if limit is not None:
        if not limit[0] > 0:
            raise ControlError(f"--torque-limit must be positive, got {args.torque_limit!r}")
        overrides["torque_limit"] = limit[0]
    controller = swing_up_controller(system.name, model, **overrides)
    duration = 10.0 if args.duration is None else args.duration
    q0 = torch.zeros(system.n_dof, dtype=torch.float64)  # at rest, hanging down
    result = simulate_closed_loop(
        system, controller, q0, duration=duration, rate=args.rate, noise=noise, seed=args.seed
    )
    out = dict(
        task="swing-up",
        controller="energy swing-up + LQR",
        tolerance=0.1,
        hold=2.0,
        torque_limit=controller.torque_limit[0].item(),
    )
    out.update(swing_up_metrics(result, tolerance=0.1, hold=2.0))
    return out, result


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"


def run(args: argparse.Namespace) -> int:
    import torch

    # one state per step: intra-op threads only add overhead (10x on a busy 2-core machine)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _check_outputs(args: argparse.Namespace) -> None:
    """--json and --plots checked before any work (see :mod:`delan.cli._checks`)."""
    from delan.cli._checks import check_json_and_plots, run_files

    inputs = [] if args.run_dir == "true" else run_files(args.run_dir)
    if args.trajectory and args.trajectory != "generated" and ":" in args.trajectory:
        inputs.append((args.trajectory.rsplit(":", 1)[0], "data file of --trajectory"))
    figure = "tracking.png" if args.task == "track" else "swing_up.png"
    check_json_and_plots(args.json, args.plots, [figure], inputs)


def _run(args: argparse.Namespace) -> int:
    from delan.control import ControlError
    from delan.systems import make_system

    _check_options(args)
    _check_outputs(args)
    noise = _numbers(args.noise, "--noise", [1, 2])
    if any(v < 0 for v in noise):
        raise ControlError(f"--noise must be >= 0, got {args.noise!r}")
    noise = (noise[0], noise[-1])
    system = make_system(args.system)
    model, kind = _load_model(args.run_dir, system)
    task = _track if args.task == "track" else _swing_up
    res, result = task(args, system, model, kind, noise)
    res = dict(
        system=system.name,
        run=args.run_dir,
        model=kind,
        rate=args.rate,
        noise=list(noise),
        duration=float(result.t[-1]),
        seed=args.seed,
        **res,
    )
    if args.plots is not None:
        from delan import control_plots

        if os.path.exists(args.plots) and not os.path.isdir(args.plots):
            raise ControlError(f"--plots {args.plots}: exists and is not a folder")
        title = f"{system.name}: {res['controller']} ({kind} model), {args.rate:g} Hz, noise {_fmt(noise)}"
        if args.task == "track":
            fig = control_plots.plot_tracking(
                result, os.path.join(args.plots, "tracking.png"), joint_names=system.joint_names, title=title
            )
        else:
            fig = control_plots.plot_swing_up(
                result, os.path.join(args.plots, "swing_up.png"), joint_names=system.joint_names, title=title
            )
        res["figures"] = [fig]

    print(
        f"{res['task']} on the true {system.name} with {res['controller']} ({kind} model): "
        f"{res['duration']:g} s at {args.rate:g} Hz, sensor noise {_fmt(noise)} (q, qd)"
    )
    if args.task == "track":
        print(f"reference: {res['trajectory']}")
        print(
            f"tracking error RMS per joint {_fmt(res['rms_error'])}, max {_fmt(res['max_error'])}, "
            f"RMS of the error norm {res['rms_error_norm']:.3g}"
        )
        print(
            f"torque RMS per joint {_fmt(res['rms_torque'])}, max {_fmt(res['max_torque'])}, "
            f"effort (mean |tau|^2) {res['effort']:.4g}"
        )
    else:
        if res["success"]:
            print(
                f"swing-up succeeded: within {res['tolerance']:g} rad of upright from t = {res['time']:.3f} s, "
                f"held {res['hold']:g} s"
            )
        else:
            print(
                f"swing-up failed: never within {res['tolerance']:g} rad of upright for {res['hold']:g} s "
                f"(final distance {res['final_error']:.3g} rad)"
            )
        print(f"torque RMS per joint {_fmt(res['rms_torque'])} (limit {res['torque_limit']:g})")
    if args.json:
        from delan.fileio import atomic_write_bytes

        try:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            atomic_write_bytes(args.json, (json.dumps(res, indent=2) + "\n").encode())
        except OSError as exc:
            raise ControlError(f"--json {args.json}: cannot write it ({exc.strerror or exc})") from None
        print(f"results written to {args.json}")
    for fig in res.get("figures", []):
        print(f"figure: {fig}")
    return 0
