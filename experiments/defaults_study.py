"""The defaults study: which training settings carry to robots and data we did not tune on.

Every data set here is made with physical parameters, rates, noise and friction other than the
ones the library is developed on (the two-link arm of ``delan generate two-link``: 2/1 kg,
0.5 m links, exact data at 250 Hz):

* two-link-25hz        letters of 5 s at 25 Hz (like the published character recordings),
                       exact q, qd, qdd; 1.4/0.9 kg, 0.45/0.55 m links
* two-link-200hz-noisy Fourier excitation at 200 Hz, 0.1 % sensor noise on q and tau, qd and qdd
                       estimated from the noisy q (Savitzky-Golay at load); 2.5/1.2 kg, 0.4/0.6 m
* two-link-1khz-friction  Fourier excitation at 1 kHz with viscous + Coulomb friction and
                       rotor inertia, exact; 1.8/0.6 kg
* cartpole             Fourier excitation at 100 Hz; 0.7 kg cart, 0.3 kg pole, com 0.4 m
* furuta               Fourier excitation at 100 Hz; other arm inertia, pendulum mass and com
* panda                7 DoF through Pinocchio: 20 Fourier trajectories x 10 s at 100 Hz
* double-pendulum      a double pendulum with friction and rotor inertia logged like a real
                       robot: 500 Hz with clock jitter (1-1.8 ms late on 2 % of the steps),
                       encoder noise 1e-4 rad, torque noise 0.02 N m, q only (qd, qdd estimated),
                       8 sine-sum excitation runs and one swing-up run that turns the elbow
                       past 2 pi; two excitation runs held out

Each setting trains for the same budget on one CPU thread (``--jobs`` runs in parallel, one
thread each); "new-defaults" is exactly ``delan train DATA -o RUN --time-budget B`` (the file's
joint types apply), "old-defaults" emulates the first release (1000 epochs, lr 1e-3 constant,
a random whole validation trajectory, per-joint forward norm, joint types ignored), the others
change one option of the new defaults ("friction-toggled": friction off where the defaults
decide from the data to learn it, on where they decide not to). For the double pendulum, the true model structure (10
base parameters, see _identification.py) is identified by least squares on the same training
runs: the best a physics model can do on that data.

    python experiments/defaults_study.py [--budget 120] [--jobs 2] [--datasets a,b] [--settings a,b]
                                         [--seeds 0,1,2] [--keep]

The committed table was made with every setting at seed 0, then the new defaults and each data
set's best other setting again at seeds 1 and 2 (``--keep`` merges the runs).

Writes experiments/results/defaults_study.{json,md}; data files are made in
experiments/results/defaults_study/ (seeded, not committed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any, Dict, List

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _runner
from _runner import fmt

# name -> (generator arguments, held-out trajectory names)
DATASETS: Dict[str, Dict[str, Any]] = {
    "two-link-25hz": _runner.LETTERS,
    "two-link-200hz-noisy": _runner.fourier(
        "two-link", rate=200.0, noise=0.001, estimate=True, params=dict(masses=(2.5, 1.2), lengths=(0.4, 0.6))
    ),
    "two-link-1khz-friction": _runner.fourier(
        "two-link",
        n=6,
        duration=4.0,
        rate=1000.0,
        friction=True,
        params=dict(masses=(1.8, 0.6), viscous=(0.3, 0.2), coulomb=(0.2, 0.1), armature=(0.05, 0.03)),
        test=["fourier_002"],
    ),
    "cartpole": _runner.CARTPOLE,
    "furuta": _runner.fourier("furuta", params=dict(arm_inertia=8e-5, pendulum_mass=0.03, com=0.06)),
    "panda": _runner.PANDA,
    "double-pendulum": dict(
        system="two-link",
        kind="real-log",
        n=8,
        duration=10.0,
        rate=500.0,
        friction=True,
        params=dict(
            masses=(1.1, 0.8), lengths=(0.35, 0.4), viscous=(0.05, 0.03), coulomb=(0.08, 0.05), armature=(0.02, 0.01)
        ),
        test=["fourier_002", "fourier_005"],
    ),
}

# the first release: 1000 epochs, lr 1e-3 constant, torque + per-joint forward loss, no friction,
# no output scales, joint types unknown (q as is); its random whole validation trajectory is
# added in run_one
OLD_DEFAULTS = dict(
    epochs=1000,
    lr=1e-3,
    schedule="constant",
    forward_norm="joint",
    joint_types="prismatic",
    friction=False,
    scale_outputs=False,
    loss_weights={"inverse": 1.0, "forward": 1.0, "power": 0.0},
)
SETTINGS: Dict[str, Dict[str, Any]] = {
    "new-defaults": {},
    "old-defaults": OLD_DEFAULTS,
    "lr-3e-3": dict(lr=3e-3),
    "width-128": dict(width=128),
    "friction-toggled": {"friction": "toggle"},
    "no-forward": dict(loss_weights={"forward": 0.0}),
    "no-output-scales": dict(scale_outputs=False),
}
METRICS = ("torque_mse", "torque_nmse", "inertial_nmse", "coriolis_nmse", "gravity_nmse", "forward_mse", "vpt")


# -- data -------------------------------------------------------------------------------------
def _smooth_step(t: np.ndarray, t0: float, t1: float):
    """Quintic 0 -> 1 on [t0, t1] with its first and second time derivatives."""
    T = t1 - t0
    u = np.clip((t - t0) / T, 0.0, 1.0)
    return u**3 * (10 - 15 * u + 6 * u**2), 30 * u**2 * (1 - u) ** 2 / T, 60 * u * (1 - u) * (1 - 2 * u) / T**2


def swing_up(t: np.ndarray):
    """q, qd, qdd (T, 2): from hanging to upright and back; the elbow turns by 2 pi on the way up
    (and back), with a small wiggle so the upright phase is not static."""
    up, upd, updd = _smooth_step(t, 1.0, 4.0)
    down, downd, downdd = _smooth_step(t, 6.0, 9.0)
    s, sd, sdd = up - down, upd - downd, updd - downdd
    w = 2 * math.pi * 0.7
    wig, wigd, wigdd = 0.1 * np.sin(w * t), 0.1 * w * np.cos(w * t), -0.1 * w**2 * np.sin(w * t)
    q = np.stack([math.pi * s + wig, 2 * math.pi * s - wig], -1)
    qd = np.stack([math.pi * sd + wigd, 2 * math.pi * sd - wigd], -1)
    qdd = np.stack([math.pi * sdd + wigdd, 2 * math.pi * sdd - wigdd], -1)
    return q, qd, qdd


def _real_log(spec: dict, seed: int):
    """The double-pendulum 'real log' data set (see the module docstring)."""
    import torch

    from delan.data.schema import Dataset, Trajectory
    from delan.systems import make_system
    from delan.trajectories import make_trajectories

    params = dict(spec["params"])
    system = make_system(spec["system"], friction=True, **params)
    rng = np.random.default_rng(seed)
    refs = make_trajectories(system, "fourier", spec["n"], spec["duration"], rng)
    n_steps = int(round(spec["duration"] * spec["rate"]))
    trs = []
    for ref in refs + [None]:
        t = np.arange(n_steps + 1) / spec["rate"]
        late = rng.random(len(t)) < 0.02
        t = t + late * rng.uniform(1e-3, 1.8e-3, len(t))  # a late time stamp, not a late sample
        t[0] = 0.0
        q, qd, qdd = swing_up(t) if ref is None else ref(t)
        with torch.no_grad():
            terms = system.terms(*(torch.as_tensor(x) for x in (q, qd, qdd)))
        tau = terms.tau.numpy() + rng.normal(scale=0.02, size=q.shape)
        q_meas = q + rng.normal(scale=1e-4, size=q.shape)
        truth = {
            "H": terms.H.numpy(),
            "tau_inertial": terms.inertial.numpy(),
            "tau_coriolis": terms.coriolis.numpy(),
            "tau_gravity": terms.gravity.numpy(),
            "tau_friction": terms.friction.numpy(),
        }
        trs.append(Trajectory("swing_up" if ref is None else ref.name, t, q_meas, qd, qdd, tau, truth))
    ds = Dataset(
        trs,
        2,
        system.joint_names,
        system.name,
        {"generator": {"study": "double-pendulum", "seed": seed, "system_params": system.describe()}},
    )
    ds.joint_types = ["revolute", "revolute"]
    return ds


def make_data(name: str, folder: str, seed: int = 1) -> str:
    """The data file of one study data set (made once; seeded)."""
    path = os.path.join(folder, f"{name}.h5")
    if os.path.exists(path):
        return path
    spec = DATASETS[name]
    if spec["kind"] == "real-log":  # the recording has q and tau only: qd, qdd are estimated at load
        return _runner.save_data(_real_log(spec, seed), path, estimate=True)
    return _runner.save_data(_runner.generate(spec, seed), path, spec.get("estimate", False))


# -- one training run -------------------------------------------------------------------------
def run_one(job: dict) -> dict:
    """Train one setting on one data set and evaluate it on the held-out trajectories."""
    import torch

    from delan.data import load_dataset
    from delan.training import decide_friction

    torch.set_num_threads(1)
    spec = DATASETS[job["dataset"]]
    options = dict(SETTINGS[job["setting"]])
    if options.get("friction") == "toggle":  # the opposite of what the defaults decide for this data
        ds = load_dataset(job["data"])
        options["friction"] = not decide_friction(ds.split(spec["test"])[1])[0]
    if job["setting"] == "old-defaults":
        options["validation"] = old_validation(load_dataset(job["data"]).names, spec["test"])
    options["seed"] = job["seed"]
    run_dir = os.path.join(job["runs"], job["dataset"], f"{job['setting']}-seed{job['seed']}")
    row: Dict[str, Any] = {
        "dataset": job["dataset"],
        "setting": job["setting"],
        "seed": job["seed"],
        "options": SETTINGS[job["setting"]],
    }
    done = _runner.train_and_evaluate(row, job, run_dir, spec["test"], options, METRICS)
    if done:  # a setting that fails is a result of the study (row["error"]), not a crash of it
        row.update(seconds=round(time.perf_counter() - done[1], 1))
    return row


def old_validation(names: List[str], test: List[str]) -> List[str]:
    """The first release's validation: round(10 %) of the training trajectories, whole, at random
    (seed 0), at least one when three or more remain."""
    rest = [x for x in names if x not in test]
    if len(rest) < 3:
        return []
    k = min(len(rest) - 2, max(1, int(round(0.1 * len(rest)))))
    picked = set(np.random.default_rng(0).choice(len(rest), size=k, replace=False).tolist())
    return [x for i, x in enumerate(rest) if i in picked]


def identification(data: str, test: List[str]) -> dict:
    """Least-squares fit of the two-link's true structure on the training runs; held-out errors."""
    import _identification as ident

    from delan.data import load_dataset

    ds = load_dataset(data)
    held, rest = ds.split(test)
    tr, te = rest.concatenate(), held.concatenate()
    theta = ident.fit(tr["q"], tr["qd"], tr["qdd"], tr["tau"])
    pred = ident.predict(theta, te["q"], te["qd"], te["qdd"])
    err = ((pred - te["tau"]) ** 2).sum(-1)
    return {
        "torque_mse": float(err.mean()),
        "torque_nmse": float((((pred - te["tau"]) ** 2) / te["tau"].var(0)).sum(-1).mean()),
        "theta": theta.tolist(),
    }


# -- the report -------------------------------------------------------------------------------
def _median(rows: List[dict], key: str) -> Any:
    vals = _runner.known(rows, key)
    return float(np.median(vals)) if vals else None


def summarise(rows: List[dict]) -> Dict[tuple, dict]:
    """(data set, setting) -> the medians over its seeds of every metric, and the seed count."""
    groups = _runner.group_runs(rows, ("dataset", "setting"))
    return {k: {**{m: _median(v, m) for m in METRICS}, "seeds": len(v)} for k, v in groups.items()}


def report(rows: List[dict], ident: Dict[str, dict], budget: float) -> str:
    med = summarise(rows)
    lines = [
        f"# Defaults study ({budget:g} s per run, 1 CPU thread each)",
        "",
        "Made by `python experiments/defaults_study.py` (see its docstring for the data sets and the "
        "command lines). nMSE: per-joint variance-normalised torque error on the held-out trajectories "
        "(mean over samples of sum_j e_j^2 / var(tau_j)); VPT: valid prediction time of the learned "
        "forward model [s]. Each entry of the first table is the median over the seeds run for that "
        "setting (n: how many); a time-budgeted run differs from seed to seed and with the machine's "
        "load, so single runs vary by up to about 2x.",
        "",
        "| data set | old defaults nMSE (n) | new defaults nMSE (n) | best tuned nMSE (setting, n) | "
        "new / best | VPT old | VPT new | VPT best-tuned |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in DATASETS:
        here = {s: m for (d, s), m in med.items() if d == name}
        if not here:
            continue
        old, new = here.get("old-defaults", {}), here.get("new-defaults", {})
        best_setting = min(here, key=lambda s: here[s]["torque_nmse"])
        best = here[best_setting]
        ratio = (new.get("torque_nmse") or math.nan) / best["torque_nmse"]
        lines.append(
            f"| {name} | {fmt(old.get('torque_nmse'))} ({old.get('seeds', 0)}) | "
            f"{fmt(new.get('torque_nmse'))} ({new.get('seeds', 0)}) | {fmt(best['torque_nmse'])} "
            f"({best_setting}, {best['seeds']}) | {ratio:.2f} | {fmt(old.get('vpt'))} | "
            f"{fmt(new.get('vpt'))} | {fmt(best.get('vpt'))} |"
        )
    lines += ["", "All runs (torque MSE in the data's units; epochs; best epoch chosen by validation):", ""]
    lines += _runner.runs_table(
        rows,
        ("dataset", "setting", "seed"),
        ("torque_mse", "torque_nmse", "inertial_nmse", "coriolis_nmse", "gravity_nmse", "vpt"),
        "| data set | setting | seed | torque MSE | torque nMSE | inertial nMSE | Coriolis nMSE | gravity nMSE | "
        "VPT [s] | epochs | best epoch |",
    )
    for name, res in ident.items():
        new = med.get((name, "new-defaults"), {})
        lines += [
            "",
            f"{name}: true model structure identified by least squares on the same training runs: "
            f"held-out torque MSE {res['torque_mse']:.4g} (nMSE {res['torque_nmse']:.3g}); new defaults "
            f"(median over seeds) {fmt(new.get('torque_mse'))}, ratio "
            f"{(new.get('torque_mse') or math.nan) / res['torque_mse']:.2f}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _runner.add_run_arguments(ap)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--seeds", default="0", help="training seeds, comma-separated (each one run per setting)")
    ap.add_argument(
        "--keep", action="store_true", help="keep the rows of other data sets, settings or seeds from an earlier JSON"
    )
    args = ap.parse_args()
    names, settings = args.datasets.split(","), args.settings.split(",")
    seeds = [int(x) for x in args.seeds.split(",")]
    unknown = [x for x in names if x not in DATASETS] + [x for x in settings if x not in SETTINGS]
    if unknown:
        ap.error(f"unknown data sets or settings: {unknown}")
    folder = os.path.join(args.out, "defaults_study")
    os.makedirs(folder, exist_ok=True)
    files = {name: make_data(name, folder) for name in names}
    out_json = os.path.join(args.out, "defaults_study.json")
    rows: List[dict] = []
    if args.keep and os.path.exists(out_json):
        with open(out_json) as f:
            rows = [
                r
                for r in json.load(f)["runs"]
                if not (r["dataset"] in names and r["setting"] in settings and r.get("seed", 0) in seeds)
            ]
    jobs = [
        dict(dataset=n, setting=s, seed=seed, data=files[n], budget=args.budget, runs=os.path.join(folder, "runs"))
        for n in names
        for s in settings
        for seed in seeds
    ]
    rows += _runner.run_jobs(run_one, jobs, args.jobs)
    ident = {n: identification(files[n], DATASETS[n]["test"]) for n in names if n == "double-pendulum"}
    if args.keep and os.path.exists(out_json):
        with open(out_json) as f:
            ident = {**json.load(f).get("identification", {}), **ident}
    order = {n: i for i, n in enumerate(DATASETS)}
    rows.sort(key=lambda r: (order[r["dataset"]], list(SETTINGS).index(r["setting"]), r.get("seed", 0)))
    with open(out_json, "w") as f:
        json.dump({"budget": args.budget, "runs": rows, "identification": ident}, f, indent=1)
    with open(os.path.join(args.out, "defaults_study.md"), "w") as f:
        f.write(report(rows, ident, args.budget))
    print(f"wrote {out_json} and defaults_study.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
