"""``delan export RUN_DIR -o FILE --format torchscript|onnx|exported``: the learned dynamics as one
file a C++ or ROS 2 controller loads without delan (see :mod:`delan.export`)."""

from __future__ import annotations

import argparse
import os

from delan.cli._checks import check_output_file, run_files
from delan.errors import OptionError

_EXTENSIONS = {
    ".pt": "torchscript",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
    ".onnx": "onnx",
    ".pt2": "exported",
}


def add_parser(subparsers) -> None:
    from delan.export import FORMATS

    p = subparsers.add_parser(
        "export",
        help="write the learned dynamics for a C++ / ROS 2 control loop",
        description="Write a trained model as one file that libtorch (torchscript), ONNX Runtime (onnx) or "
        "torch.export.load (exported) loads without delan. Its entry point forward(q, qd, qdd, tau) "
        "returns (torque, acceleration, mass_matrix, coriolis, gravity, friction): inverse dynamics "
        "of (q, qd, qdd), forward dynamics of (q, qd, tau) and the terms of the equation of motion, "
        "for a batch of B states (B, n); torchscript files also have the methods "
        "inverse_dynamics(q, qd, qdd), forward_dynamics(q, qd, tau) and terms(q, qd). An mlp run "
        "has inverse dynamics only: inputs q, qd, qdd and the one output torque. The written file "
        "is loaded back and compared with the model on random states before it replaces FILE.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory made by `delan train`")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="the file to write; an existing file is replaced only when it is an artefact of delan export "
        "(or empty) and none of the run's own files",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="torchscript (libtorch, torch.jit.load), onnx (ONNX Runtime; needs pip install "
        "'delan[export]') or exported (torch.export.save, a .pt2 archive); default: from FILE's "
        "extension (.pt/.ts, .onnx, .pt2)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="dtype of the artefact's inputs, outputs and weights (default: the model's)",
    )
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="do not load the written file back and compare it with the model",
    )
    p.set_defaults(func=run)


def _format(args: argparse.Namespace) -> str:
    if args.format is not None:
        return args.format
    ext = os.path.splitext(args.output)[1].lower()
    if ext not in _EXTENSIONS:
        raise OptionError(
            f"--format not given and -o {args.output} has no known extension "
            f"(.pt/.ts torchscript, .onnx onnx, .pt2 exported); give --format"
        )
    return _EXTENSIONS[ext]


def run(args: argparse.Namespace) -> int:
    import torch

    from delan.export import export_model
    from delan.training import load_run

    fmt = _format(args)
    check_output_file(args.output, "-o", "export", run_files(args.run_dir))
    _, model = load_run(args.run_dir)
    # tracing and checking call tiny ops one at a time: one thread is fastest and spares the machine
    torch.set_num_threads(1)
    info = export_model(model, args.output, fmt, dtype=args.dtype, verify=args.verify)
    n = info["n_dof"]
    shapes = {"mass_matrix": f"(B, {n}, {n})"}
    outs = ", ".join(f"{k} {shapes.get(k, f'(B, {n})')}" for k in info["outputs"])
    print(
        f"exported the {info['model']} model of {args.run_dir} ({n} joints, {info['dtype']}) as {fmt} to {args.output}"
    )
    print(f"entry point forward({', '.join(info['inputs'])}), each (B, {n}) -> {outs}")
    if "methods" in info:
        print("methods: " + ", ".join(f"{k}({', '.join(v)})" for k, v in info["methods"].items()))
    if info["model"] == "mlp":
        print("note: the mlp has inverse dynamics only (no forward dynamics, mass matrix or terms)")
    errors = info.get("max_relative_error")
    if errors:
        worst = max(errors.values())
        print(
            f"checked against the model on {info['verified_states']} random states "
            f"({', '.join(info['verified_with'])}): largest relative error {worst:.2g} ("
            + ", ".join(f"{k} {v:.2g}" for k, v in errors.items())
            + ")"
        )
    elif args.verify:
        print("not checked: onnxruntime is not installed (pip install 'delan[export]')")
    return 0
