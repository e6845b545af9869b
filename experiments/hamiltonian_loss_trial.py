"""A short trial of the Hamiltonian models' loss weights (the defaults of `delan train --model
hamiltonian|black-box-hamiltonian`, :data:`delan.training.DEFAULT_LOSS_WEIGHTS`).

Data, made like the published 2-DoF character recordings but with arm parameters of its own, so
that the weights are not tuned on the data experiments/forward_models.py reports on (that one
uses 1.4 / 0.9 kg and 0.45 / 0.55 m links; this trial 2.2 / 0.7 kg and 0.55 / 0.40 m, and a
different seed): the two-link arm, one trajectory per letter, 5 s at 25 Hz, sensor noise 1e-4 rad
on q and 0.1 % of each joint's torque RMS on tau, qd and qdd not stored but estimated from the
noisy q when loaded; letters a, e, m, s held out.

Settings (parts of :mod:`delan.hamiltonian_losses`): every combination in SETTINGS, each kind for
the same number of epochs (so the choice does not hang on the load of the shared machine), over
SEEDS. Metrics on the held-out letters: torque nMSE and the median VPT (delan.evaluation).

    python experiments/hamiltonian_loss_trial.py [--kinds hamiltonian,black-box-hamiltonian] [--jobs 2]
    python experiments/hamiltonian_loss_trial.py --report-only   # the table again from the JSON

Writes experiments/results/hamiltonian_loss_trial.{json,md}; data and runs in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results")
PARAMS = dict(masses=(2.2, 0.7), lengths=(0.55, 0.40))
TEST = ["a", "e", "m", "s"]
SETTINGS = {
    "pdot+power+forward": {"pdot": 1, "qd": 0, "power": 1, "forward": 1},
    "pdot+power": {"pdot": 1, "qd": 0, "power": 1, "forward": 0},
    "pdot+forward": {"pdot": 1, "qd": 0, "power": 0, "forward": 1},
    "pdot": {"pdot": 1, "qd": 0, "power": 0, "forward": 0},
    "pdot+qd+power+forward": {"pdot": 1, "qd": 1, "power": 1, "forward": 1},
}
EPOCHS = {"hamiltonian": 400, "black-box-hamiltonian": 150}
SEEDS = (0, 1)


def make_data(folder: str, seed: int = 11) -> str:
    import h5py

    from delan.data import save_dataset
    from delan.data.generate import generate_dataset

    path = os.path.join(folder, "two-link-25hz-trial.h5")
    ds = generate_dataset("two-link", kind="characters", duration=5.0, rate=25.0, seed=seed, **PARAMS)
    rng = np.random.default_rng(seed)
    for tr in ds:
        tr.q = tr.q + rng.normal(scale=1e-4, size=tr.q.shape)
        tr.tau = tr.tau + rng.normal(size=tr.tau.shape) * 1e-3 * np.sqrt((tr.tau**2).mean(0))
    save_dataset(ds, path)
    with h5py.File(path, "a") as f:  # qd, qdd estimated from q when loaded
        for g in f["trajectories"].values():
            del g["qd"], g["qdd"]
    return path


def run_one(job: dict) -> dict:
    import torch

    from delan.api import evaluate, train

    torch.set_num_threads(1)
    run_dir = os.path.join(job["runs"], f"{job['kind']}-{job['setting']}-seed{job['seed']}")
    row = dict(kind=job["kind"], setting=job["setting"], seed=job["seed"], weights=SETTINGS[job["setting"]])
    t0 = time.perf_counter()
    try:
        run = train(
            job["data"],
            run_dir,
            test=TEST,
            model=job["kind"],
            epochs=EPOCHS[job["kind"]],
            quiet=True,
            seed=job["seed"],
            loss_weights=SETTINGS[job["setting"]],
        )
        m = evaluate(run, job["data"], test=TEST)
    except Exception as exc:  # a failed run is a result
        row.update(error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return row
    row.update(
        torque_nmse=m["torque_nmse"],
        vpt_median=float(statistics.median(m["vpt_per_trajectory"].values())),
        seconds=round(time.perf_counter() - t0, 1),
    )
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kinds", default="hamiltonian,black-box-hamiltonian")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--report-only", action="store_true", help="rewrite the table from the JSON, train nothing")
    args = p.parse_args()
    kinds = [] if args.report_only else args.kinds.split(",")
    out_json = os.path.join(OUT, "hamiltonian_loss_trial.json")
    old = json.load(open(out_json)) if os.path.exists(out_json) else []
    rows = [r for r in old if r["kind"] not in kinds]
    if kinds:
        run_trial(kinds, args.jobs, rows)
        os.makedirs(OUT, exist_ok=True)
        with open(out_json, "w") as f:
            json.dump(rows, f, indent=1)
    write_report(rows)


def run_trial(kinds, jobs_n: int, rows: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(tmp)
        jobs = [
            dict(kind=k, setting=s, seed=seed, data=data, runs=tmp) for k in kinds for s in SETTINGS for seed in SEEDS
        ]
        with ProcessPoolExecutor(jobs_n) as pool:
            for row in pool.map(run_one, jobs):
                print(row, flush=True)
                rows.append(row)


def write_report(rows: list) -> None:
    from delan.training import DEFAULT_LOSS_WEIGHTS

    lines = [
        "# Hamiltonian loss weights: a short trial",
        "",
        f"Two-link characters at 25 Hz, masses {PARAMS['masses']} kg, lengths {PARAMS['lengths']} m (not the "
        f"forward_models.py arm), noisy q with estimated derivatives, test letters {', '.join(TEST)}; epochs "
        f"{EPOCHS}; seeds {list(SEEDS)}; median over seeds (min - max).",
        "",
        "Command: `python experiments/hamiltonian_loss_trial.py`",
        "",
        "| kind | setting | torque nMSE | VPT median [s] |",
        "|---|---|---|---|",
    ]
    for k in [k for k in EPOCHS if any(r["kind"] == k for r in rows)]:
        for s in SETTINGS:
            rs = [r for r in rows if r["kind"] == k and r["setting"] == s]
            ok = [r for r in rs if "torque_nmse" in r]
            if not ok:
                lines.append(f"| {k} | {s} | failed: {rs[0].get('error') if rs else 'not run'} | |")
                continue
            t = [r["torque_nmse"] for r in ok]
            v = [r["vpt_median"] for r in ok]
            fail = f" ({len(rs) - len(ok)} failed)" if len(ok) < len(rs) else ""
            lines.append(
                f"| {k} | {s} | {np.median(t):.3g} ({min(t):.3g} - {max(t):.3g}){fail} | "
                f"{np.median(v):.2f} ({min(v):.2f} - {max(v):.2f}) |"
            )
    lines += [
        "",
        "Defaults of `delan train` (delan.training.DEFAULT_LOSS_WEIGHTS): "
        + "; ".join(f"{k}: {DEFAULT_LOSS_WEIGHTS[k]}" for k in EPOCHS),
    ]
    with open(os.path.join(OUT, "hamiltonian_loss_trial.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
