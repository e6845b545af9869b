"""``delan demo``: the whole loop on simulated two-link data, in at most about three minutes.

1. data: ``datasets/two_link_characters.h5`` when present and of the right kind, else generated
   (the two-link arm writing one letter per trajectory, exact torques, ground truth);
2. train a structured DeLaN with letters held out, within the time budget;
3. evaluate on the held-out letters (metrics.json, decomposition and training figures);
4. roll the learned forward dynamics out under one held-out letter's torques (rollout figure).
"""

from __future__ import annotations

import argparse
import os
import time

from delan.errors import DataError, RunError

TEST_LETTERS = ["a", "e", "m", "s"]
DATA_NAME = "two_link_characters.h5"
# Settings found to reach the DeLaN paper's accuracy within about two minutes on 2 CPU cores
# (experiments/delan_two_link.py measures them).
DEMO_SETTINGS = dict(
    width=64,
    depth=2,
    activation="softplus",
    batch_size=512,
    lr=3e-3,
    schedule="cosine",
    lr_final=0.01,
    weight_decay=1e-5,
    dtype="float32",
    validation=0.0,
    epochs=100000,
    checkpoint_every=200,
    loss_weights={"inverse": 1.0, "forward": 1.0, "power": 1.0},
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole loop on built-in simulated data",
        description="Generate (or reuse) the two-link character data, train a structured DeLaN "
        f"with the letters {','.join(TEST_LETTERS)} held out, evaluate, roll out and "
        "write figures.",
    )
    p.add_argument("--output", default="delan-demo", metavar="DIR", help="folder for everything (default delan-demo)")
    p.add_argument(
        "--time-budget",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds of training (default 120; the whole demo takes about S + 20 s)",
    )
    p.add_argument("--force", action="store_true", help="replace the results of an earlier demo in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def bundled_data() -> str:
    """The path of the repository's character data set (may not exist)."""
    import delan

    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(delan.__file__))), "datasets", DATA_NAME)


def _usable(path: str) -> bool:
    """True when ``path`` holds two-link character data with ground truth and the test letters."""
    from delan.data import load_dataset

    if not os.path.exists(path):
        return False
    try:
        ds = load_dataset(path)
    except DataError:
        return False
    kind = ds.attrs.get("generator", {}).get("kind") if isinstance(ds.attrs.get("generator"), dict) else None
    return (
        ds.system == "two-link"
        and kind == "characters"
        and all(x in ds for x in TEST_LETTERS)
        and {"tau_inertial", "tau_coriolis", "tau_gravity"} <= set(ds.truth_fields)
    )


def run(args: argparse.Namespace) -> int:
    from delan.api import evaluate, simulate, train
    from delan.cli._checks import finite
    from delan.evaluation import METRICS, format_table

    finite(args.time_budget, "--time-budget")
    if not (args.time_budget > 0):
        raise RunError(f"--time-budget must be a positive number of seconds, got {args.time_budget}")
    out = args.output
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunError(f"{out}: exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out) and not args.force:
        raise RunError(f"{out}: exists and is not empty; use --force to replace an earlier demo or --output DIR")
    os.makedirs(out, exist_ok=True)
    started = time.perf_counter()
    import torch

    # small networks, batch-of-one rollouts: one thread is fastest (and fair to shared machines)
    torch.set_num_threads(1)

    # 1. data
    data = bundled_data()
    if _usable(data):
        print(f"data: {data}")
    else:
        from delan.data import save_dataset
        from delan.data.generate import generate_dataset

        data = os.path.join(out, DATA_NAME)
        save_dataset(generate_dataset("two-link", kind="characters", seed=0), data)
        print(f"data: generated {data}")

    # 2. train
    run_dir = os.path.join(out, "run")
    result = train(
        data,
        run_dir,
        test=TEST_LETTERS,
        model="structured",
        time_budget=args.time_budget,
        force=True,
        quiet=args.quiet,
        **DEMO_SETTINGS,
    )
    s = result.summary
    print(f"trained a structured DeLaN: {s['epochs']} epochs in {s['seconds']:.1f} s -> {run_dir}")

    # 3. evaluate on the held-out letters
    plots = os.path.join(out, "figures")
    metrics = evaluate(result, data, test=TEST_LETTERS, json_path=os.path.join(out, "metrics.json"), plots=plots)
    print(f"held-out letters {', '.join(TEST_LETTERS)}:")
    print(
        format_table(
            {
                "metrics": {k: metrics[k] for k in METRICS if k in metrics},
                "n_samples": metrics["n_samples"],
                "unavailable": metrics["unavailable"],
            }
        )
    )

    # 4. roll out under the recorded torques of one held-out letter
    ro = simulate(
        result, data=data, trajectory=TEST_LETTERS[0], plots=plots, json_path=os.path.join(out, "rollout.json")
    )
    print(
        f"rollout of letter {TEST_LETTERS[0]!r} ({ro['steps']} rk4 steps): valid for {ro['valid_time']:.2f} s "
        f"of {ro['t'][-1]:.2f} s, position RMSE {ro['position_rmse']:.2e} rad"
    )

    print(f"done in {time.perf_counter() - started:.0f} s. Results in {out}/:")
    written = [os.path.join(out, "metrics.json"), os.path.join(out, "rollout.json")]
    for f in written + metrics["figures"] + [ro["figure"]]:
        print(f"  {f}")
    return 0
