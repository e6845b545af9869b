"""``delan train DATA.h5 -o RUN_DIR``: train a model; progress bar, logs, checkpoints, resume."""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any, Dict, List

from delan.cli._checks import finite, positive_integer
from delan.errors import OptionError, RunError
from delan.training import DEFAULT_TIME_BUDGET, MODEL_KINDS, OPTIMIZERS, SCHEDULES, STEP_MODES, TrainConfig

# (option, type, metavar, help); every default comes from TrainConfig, so that --resume can tell
# an option given on the command line (not None) from one left alone (None).
_OPTIONS = [
    ("width", int, "N", "hidden units per layer"),
    ("depth", int, "N", "hidden layers"),
    ("activation", str, "NAME", "activation (softplus, tanh, cos, ...)"),
    ("epochs", int, "N", "stop after N epochs"),
    ("time_budget", float, "S", "train for S seconds"),
    ("batch_size", int, "N", "samples per minibatch"),
    ("lr", float, "RATE", "(initial) learning rate"),
    ("lr_final", float, "FACTOR", "final learning rate as a fraction of --lr (cosine/exponential)"),
    ("weight_decay", float, "W", "weight decay (L2 for adam, decoupled for adamw)"),
    ("grad_clip", float, "NORM", "clip the gradient norm (default: no clipping)"),
    ("patience", int, "N", "early stopping: epochs without validation improvement (default: off)"),
    ("seed", int, "N", "random seed (weights, minibatch order, validation choice)"),
    ("checkpoint_every", int, "N", "write a checkpoint every N epochs (and at the end)"),
    ("threads", int, "N", "CPU threads for torch (0 = torch's default; small models run fastest on 1)"),
    (
        "rollout_horizon",
        int,
        "K",
        "trajectory training: add a loss on K-interval RK4 rollouts of the learned "
        "dynamics from the recorded states (default off; not for the mlp)",
    ),
    ("rollout_weight", float, "W", "weight of the rollout loss beside the one-step losses"),
    ("rollout_substeps", int, "S", "RK4 steps per sample interval in the rollout loss"),
    ("rollout_every", int, "N", "compute the rollout loss on every N-th minibatch"),
    ("rollout_windows", int, "M", "at most M rollout windows per minibatch (default: all its samples)"),
    ("rollout_start", float, "FRACTION", "train the rollout loss once this fraction of the run is done"),
    (
        "max_memory",
        float,
        "GB",
        "memory budget for the data: a file that would not fit is streamed from disk in "
        "chunks, shuffled within a window of chunks (default: half of this machine's memory)",
    ),
]


def add_parser(subparsers) -> None:
    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train a model on a data file",
        description="Train a Deep Lagrangian Network (or a baseline) on a trajectory data file. "
        "The run directory receives config.json, log.csv, log.jsonl, checkpoint.pt, "
        "model.pt and summary.json.",
    )
    p.add_argument("data", metavar="DATA.h5", help="trajectory data file")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run directory to create")
    p.add_argument(
        "--test",
        default=None,
        metavar="NAMES",
        help="comma-separated names of trajectories held out for testing (never trained on)",
    )
    p.add_argument(
        "--validation",
        default=None,
        metavar="FRACTION|NAMES",
        help=f"validation: a fraction of every training trajectory, taken as one block of time "
        f"(default {d.validation}), or comma-separated names of whole trajectories; 0 = none",
    )
    p.add_argument(
        "--model",
        choices=MODEL_KINDS,
        default=None,
        help=f"model kind (default {d.model}): structured = DeLaN, H = L L^T + eps I and V from "
        f"networks; black-box = one network for the Lagrangian; mlp = feed-forward torque "
        f"baseline; hamiltonian = structured Hamiltonian 1/2 p^T M^-1 p + V; "
        f"black-box-hamiltonian = one network for H(q, p)",
    )
    defaults = {"epochs": "no limit", "time_budget": f"{DEFAULT_TIME_BUDGET:g} s when --epochs is not given"}
    for name, typ, metavar, text in _OPTIONS:
        default = defaults.get(name, getattr(d, name))
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=typ,
            default=None,
            metavar=metavar,
            help=text if "(default" in text else f"{text} (default {default})",
        )
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help=f"optimizer (default {d.optimizer})")
    p.add_argument("--amsgrad", action="store_true", default=None, help="use the AMSGrad variant")
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=None,
        help=f"learning-rate schedule over the run (default {d.schedule})",
    )
    p.add_argument(
        "--joint-types",
        default=None,
        metavar="TYPES",
        help="revolute | prismatic | one per joint, e.g. R,P (revolute joints enter the networks as "
        "sin q, cos q); default: the data file's joint types, else none",
    )
    p.add_argument(
        "--friction",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="learn viscous + Coulomb joint friction (structured and black-box models; the mlp has "
        "none). Default: decided from the data - on when the torque steps at velocity "
        "reversals (the decision is printed and recorded in data.json)",
    )
    p.add_argument(
        "--model-option",
        dest="model_option",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="a keyword of the model's constructor, repeatable, e.g. --model-option epsilon=1e-3 "
        "(H = L L^T + eps I) or --model-option diagonal_shift=0.01; VALUE is read as JSON "
        "(numbers, true/false, lists) and else taken as text",
    )
    # deprecated spelling of --model-option epsilon=E, kept working but no longer listed
    p.add_argument("--eps", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--forward-norm",
        choices=["mass", "joint"],
        default=None,
        help=f"norm of the forward-dynamics loss: mass = r^T H^-1 r (robust for many joints), "
        f"joint = per-joint acceleration errors (default {d.forward_norm})",
    )
    p.add_argument(
        "--loss-weights",
        default=None,
        metavar="PART=W,...",
        help="weights of the loss parts inverse, forward, power, e.g. forward=0,power=1 "
        "(parts not named keep the model's defaults); hamiltonian models: pdot, qd, power, "
        "forward",
    )
    p.add_argument(
        "--output-scales",
        dest="scale_outputs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="structured and hamiltonian models: scale H's rows and V (the black-box hamiltonian: its "
        "momenta and energy) to the data's torques and accelerations "
        "(default on)",
    )
    p.add_argument("--device", default=None, metavar="cpu|cuda", help=f"device to train on (default {d.device})")
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default=None,
        help=f"floating-point precision of the model and data (default {d.dtype})",
    )
    p.add_argument(
        "--step",
        choices=STEP_MODES,
        default=None,
        help="how training steps run: cuda-graph replays each step from a CUDA graph (Lagrangian models "
        "and the mlp on a GPU, one-step losses, data in memory, one process); eager steps from Python; "
        f"auto takes cuda-graph where it applies (default {d.step}; the run prints which)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--force", action="store_true", help="start afresh in an existing RUN_DIR (replaces its run files)")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="N",
        help="stop (checkpointed, resumable) once N epochs are done",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _names(text: str) -> list:
    return [x.strip() for x in text.split(",") if x.strip()]


def _loss_weights(text: str) -> dict:
    weights = {}
    for item in _names(text):
        key, sep, value = item.partition("=")
        try:
            weights[key.strip()] = float(value)
        except ValueError:
            raise RunError(f"--loss-weights: expected PART=WEIGHT items like forward=0.5, got {item!r}") from None
        if not sep:
            raise RunError(f"--loss-weights: expected PART=WEIGHT items like forward=0.5, got {item!r}")
    return weights


def _model_options(items: List[str]) -> Dict[str, Any]:
    """{key: value} from --model-option KEY=VALUE items (VALUE as JSON where it parses, else text)."""
    options: Dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise OptionError(f"--model-option: expected KEY=VALUE like epsilon=1e-3, got {item!r}")
        if key in options:
            raise OptionError(f"--model-option: {key} given twice")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value.strip()
        if isinstance(options[key], float) and not math.isfinite(options[key]):
            raise OptionError(f"--model-option: {key} must be finite, got {value!r}")
    return options


def config_from_args(args: argparse.Namespace) -> dict:
    """The options given on the command line, as TrainConfig fields (absent = not given)."""
    given = {}
    for name, _, _, _ in _OPTIONS:
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    for name in (
        "model",
        "optimizer",
        "amsgrad",
        "schedule",
        "friction",
        "joint_types",
        "forward_norm",
        "scale_outputs",
        "device",
        "dtype",
        "step",
    ):
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    if args.test is not None:
        given["test"] = _names(args.test)
    if args.validation is not None:
        try:
            given["validation"] = float(args.validation)
        except ValueError:
            given["validation"] = _names(args.validation)
    if args.loss_weights is not None:
        given["loss_weights"] = _loss_weights(args.loss_weights)
    options = _model_options(args.model_option or [])
    if args.eps is not None:
        if "epsilon" in options:
            raise OptionError("--eps and --model-option epsilon=... both given; use --model-option only")
        options["epsilon"] = args.eps
    if options:
        given["model_options"] = options
    if args.quiet:
        given["quiet"] = True
    return given


def _peek(data: str):
    """(n_dof, number of samples) of a data file from its attributes and array shapes, without
    reading the arrays; None when it cannot be told (the loader then says what is wrong)."""
    try:
        import h5py

        with h5py.File(data, "r") as f:
            n = int(f.attrs["n_dof"])
            samples = sum(int(g["t"].shape[0]) for g in f["trajectories"].values())
        return (n, samples) if n >= 1 else None
    except Exception:  # noqa: BLE001 - any problem is the loader's to report
        return None


def check_model_size(args: argparse.Namespace, given: dict) -> None:
    """Refuse (one line, before any work) a --width / --depth / --batch-size whose model cannot fit
    in memory: parameters with gradients and optimiser state, and the activations (with their
    Jacobians and Hessians) of one minibatch; see :func:`delan.data.sizes.model_bytes`."""
    from delan.data.sizes import check_memory, model_bytes

    d = TrainConfig()
    width, depth = given.get("width", d.width), given.get("depth", d.depth)
    batch = given.get("batch_size", d.batch_size)
    if not all(isinstance(x, int) and x >= 1 for x in (width, depth, batch)):
        return  # TrainConfig names the option that is not a positive integer
    peek = _peek(args.data)
    n_dof, samples = peek if peek else (2, batch)
    dtype_bytes = 8 if given.get("dtype", d.dtype) == "float64" else 4
    batch = min(batch, max(samples, 1))
    parts = [f"--width {width}", f"--depth {depth}"] + (
        [f"--batch-size {given['batch_size']}"] if "batch_size" in given else []
    )
    check_memory(
        model_bytes(n_dof, width, depth, batch, dtype_bytes),
        f"a model of {', '.join(parts)} ({n_dof} joints)",
        "choose a smaller model",
    )


def check_options(args: argparse.Namespace) -> None:
    """NaN / inf in a numeric option is named as such (TrainConfig checks the ranges)."""
    for name, typ, _, _ in _OPTIONS:
        if typ is float:
            finite(getattr(args, name), "--" + name.replace("_", "-"))
    finite(args.eps, "--eps")
    if args.validation is not None:
        try:
            v = float(args.validation)
        except ValueError:
            return
        finite(v, "--validation")


def run(args: argparse.Namespace) -> int:
    from delan.api import train

    check_options(args)
    if args.resume and args.force:
        raise RunError("--resume and --force contradict each other; give one")
    positive_integer(args.stop_after, "--stop-after", error=RunError)
    given = config_from_args(args)
    if args.resume:
        # what may change is decided in one place (delan.training.resume_config), the data by content
        result = train(args.data, args.output, resume=True, stop_after=args.stop_after, **given)
    else:
        test = given.pop("test", [])
        model = given.pop("model", "structured")
        if not os.path.exists(args.data):
            # check before touching RUN_DIR, so a typo leaves nothing behind
            from delan.errors import DataError

            raise DataError(f"{args.data}: no such file")
        check_model_size(args, given)
        if "epochs" not in given and "time_budget" not in given and _main_rank():
            print(f"training for {DEFAULT_TIME_BUDGET:g} s (the default; set --time-budget S or --epochs N)")
        result = train(
            args.data, args.output, test=test, model=model, force=args.force, stop_after=args.stop_after, **given
        )
    s = result.summary
    if not _main_rank():
        return 0  # under torchrun rank 0 reports for the group
    how = {
        "epochs": "epoch limit",
        "time budget": "time budget",
        "early stopping": "early stopping",
        "stopped": f"--stop-after {args.stop_after} (resume with --resume)",
    }[s["stop_reason"]]
    v = s["validation"]
    if v["scheme"] == "time blocks":
        val = (
            f"{v['n_samples']} samples in one block of time from each of {len(v['blocks'])} trajectories "
            f"(data.json lists them)"
        )
    elif v["scheme"] == "whole trajectories":
        val = f"trajectories {', '.join(v['trajectories'])}"
    else:
        val = "none"
    jt = s.get("joint_types")
    print(
        f"trained {result.config.model} model on {s['n_train_samples']} samples of "
        f"{len(s['train_trajectories'])} trajectories; joints: "
        f"{', '.join(jt) if jt else 'types not given (q used as is)'}"
    )
    fr = s.get("friction") or {}
    if fr.get("decided") == "from the data":
        ev = ", ".join(f"{x:g}" for x in fr["coulomb_evidence"])
        print(
            f"friction: {'learned' if fr['learned'] else 'not learned'}, decided from the data (Coulomb "
            f"evidence per joint {ev}; threshold {fr['threshold']:g}; --friction/--no-friction to choose)"
        )
    print(f"validation: {val}; test held out: {', '.join(s['test_trajectories']) or 'none'}")
    mode = s.get("data_mode") or {}
    if mode.get("mode") == "streaming" or s.get("world_size"):
        print(
            f"data: {mode.get('mode', 'in memory')}"
            + (f"; data-parallel over {s['world_size']} processes (torchrun)" if s.get("world_size") else "")
        )
    print(
        f"{s['epochs']} epochs in {s['seconds']:.1f} s, stopped by {how}; best epoch {s['best_epoch']} of "
        f"{s['epochs']} ({s['selected_by']} {s['best_loss']:.3e})"
    )
    model_file = f" (model: {os.path.join(args.output, 'model.pt')})" if s["finished"] else ""
    print(f"run directory: {args.output}{model_file}")
    return 0


def _main_rank() -> bool:
    """Not a torchrun worker other than rank 0 (those train silently)."""
    return os.environ.get("RANK", "0") in ("", "0")
