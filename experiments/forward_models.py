"""Forward models that hold: every model kind with and without trajectory training.

Model kinds: structured and black-box Lagrangian (DeLaN), structured and black-box Hamiltonian
(when the library has them), and the feed-forward mlp (inverse model only: no VPT, no rollout
loss). Each kind trains with the library's defaults ("one-step") and with the rollout loss added
("rollout": ``--rollout-horizon`` etc. as in ROLLOUT below), for the same wall-clock budget on one
CPU thread, over several seeds.

Data, made like the published 2-DoF character recordings (Lutter & Peters): the two-link arm with
parameters other than ours (1.4 / 0.9 kg, 0.45 / 0.55 m links), one trajectory per letter, 5 s at
25 Hz, sensor noise 1e-4 rad on q and 0.1 % of each joint's torque RMS on tau, qd and qdd NOT recorded but
estimated from the noisy q when the file is loaded (as ``delan data import`` does); letters
a, e, m, s held out. Optionally cart-pole and Panda (Fourier excitation at 100 Hz, exact data;
fewer seeds).

Metrics on the held-out trajectories: torque nMSE (per joint over the variance of the truth),
inertial / Coriolis / gravity nMSE, and the valid prediction time (VPT: RK4 rollout of the learned
forward dynamics under the recorded torque, zero-order hold, until sum_j (q^ - q)_j^2 / var(q_j)
exceeds 1e-2; see delan.evaluation), median over the held-out trajectories; then median and range
over seeds. Figures: one held-out letter rolled out by each kind (seed 0).

    python experiments/forward_models.py [--budget 120] [--jobs 2] [--datasets two-link-25hz]
                                         [--kinds structured,...] [--variants one-step,rollout]
                                         [--seeds 0,1,2] [--keep]

``--keep`` reuses finished runs (their evaluation is cached in the run directory) and merges rows
of an earlier JSON, so the table can be rebuilt without retraining. Writes
experiments/results/forward_models.{json,md} and experiments/results/forward_models/*.png; data and
runs are made in experiments/results/forward_models/ (seeded; runs not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results")
sys.path.insert(0, HERE)

import _runner
from _runner import fmt

# the data sets (see _runner), each with the held-out trajectory its figure rolls out
DATASETS: Dict[str, Dict[str, Any]] = {
    "two-link-25hz": dict(_runner.LETTERS, q_noise=1e-4, tau_noise=1e-3, estimate=True, figure="e"),
    "cartpole": dict(_runner.CARTPOLE, figure="fourier_003"),
    "panda": dict(_runner.PANDA, figure="fourier_003"),
}
# the library's model kinds, in table order (those the installed delan lacks are skipped)
KINDS = ["structured", "black-box", "hamiltonian", "black-box-hamiltonian", "mlp"]
# the trajectory-training options of the "rollout" variant
ROLLOUT = dict(rollout_horizon=8, rollout_weight=1.0, rollout_start=0.5, rollout_windows=64)
# diagnostics of the rollout loss: its weight and horizon (structured DeLaN, see the report)
VARIANTS = {
    "one-step": {},
    "rollout": ROLLOUT,
    "rollout-w10": dict(ROLLOUT, rollout_weight=10.0),
    "rollout-k4": dict(ROLLOUT, rollout_horizon=4),
}
METRICS = ("torque_nmse", "inertial_nmse", "coriolis_nmse", "gravity_nmse", "vpt_median", "vpt_mean")

# Lutter & Peters, "Combining physics and deep learning to learn continuous-time dynamics models"
# (journal version of DeLaN): 2-DoF character recordings of a real arm, median over 10 seeds,
# thousands of epochs. THEIR figures on THEIR data, quoted for orientation only.
QUOTED = {
    "structured Lagrangian": {"torque_nmse": 3.5e-5, "vpt": 2.3},
    "structured Hamiltonian": {"torque_nmse": 7.9e-6, "vpt": 2.9},
    "black-box Lagrangian": {"vpt": 2.8},
    "feed-forward network": {"torque_nmse": 9.1e-4, "vpt": 1.8},
}


def available_kinds() -> List[str]:
    from delan.training import MODEL_KINDS

    return [k for k in KINDS if k in MODEL_KINDS]


# -- data -------------------------------------------------------------------------------------
def make_data(name: str, folder: str, seed: int = 3) -> str:
    """The data file of one data set (made once; seeded). With ``estimate`` the file holds q and
    tau only, so qd and qdd are estimated from the noisy q when it is loaded."""
    path = os.path.join(folder, f"{name}.h5")
    if os.path.exists(path):
        return path
    spec = DATASETS[name]
    ds = _runner.generate(spec, seed)
    rng = np.random.default_rng(seed)
    for tr in ds:  # sensor noise: encoder-like on q [rad], relative to each joint's torque RMS on tau
        tr.q = tr.q + rng.normal(scale=spec.get("q_noise", 0.0), size=tr.q.shape)
        tr.tau = tr.tau + rng.normal(size=tr.tau.shape) * spec.get("tau_noise", 0.0) * np.sqrt((tr.tau**2).mean(0))
    return _runner.save_data(ds, path, spec.get("estimate", False))


# -- one run ----------------------------------------------------------------------------------
def run_one(job: dict) -> dict:
    """Train one (data set, kind, variant, seed) and evaluate it on the held-out trajectories; a
    finished run with a cached evaluation is reused when ``job["keep"]``."""
    import torch

    torch.set_num_threads(1)
    spec = DATASETS[job["dataset"]]
    run_dir = os.path.join(job["runs"], job["dataset"], f"{job['kind']}-{job['variant']}-seed{job['seed']}")
    cached = os.path.join(run_dir, "forward_models_eval.json")
    row: Dict[str, Any] = {
        "dataset": job["dataset"],
        "kind": job["kind"],
        "variant": job["variant"],
        "seed": job["seed"],
        "options": VARIANTS[job["variant"]],
    }
    if job["keep"] and os.path.exists(cached):
        with open(cached) as f:
            return json.load(f)
    done = _runner.train_and_evaluate(
        row,
        job,
        run_dir,
        spec["test"],
        dict(model=job["kind"], seed=job["seed"], **VARIANTS[job["variant"]]),
        METRICS,
        evaluate_options=dict(rollouts=job["kind"] != "mlp"),
        extra=lambda m: (
            dict(vpt_stats(m), vpt_per_trajectory=m["vpt_per_trajectory"]) if "vpt_per_trajectory" in m else {}
        ),
    )
    if done is None:  # a run that fails is a result (row["error"]), not a crash of the experiment
        return row
    run, started = done
    row.update(
        train_seconds=run.summary["seconds"],
        seconds_per_epoch=round(run.summary["seconds"] / max(run.summary["epochs"], 1), 4),
        wall_seconds=round(time.perf_counter() - started, 1),
        run_dir=os.path.relpath(run_dir, HERE),
    )
    with open(cached, "w") as f:
        json.dump(row, f, indent=1)
    return row


def vpt_stats(m: dict) -> Dict[str, float]:
    """Median and mean over the held-out trajectories of an evaluation's VPT."""
    v = list(m["vpt_per_trajectory"].values())
    return {"vpt_median": float(statistics.median(v)), "vpt_mean": float(np.mean(v))}


def exact_reference(name: str, data: str) -> Dict[str, float]:
    """The exact dynamics (the generating system with its parameters) scored like the models on
    the held-out trajectories: what the data's estimated derivatives and the 25 Hz zero-order
    hold leave for a perfect model."""
    from delan.data import load_dataset
    from delan.evaluation import evaluate_model
    from delan.systems import make_system

    spec = DATASETS[name]
    system = make_system(spec["system"], **spec.get("params", {}))
    held, _ = load_dataset(data).split(spec["test"])
    m = evaluate_model(system, held)
    return {
        k: float(m["metrics"][k])
        for k in ("torque_nmse", "inertial_nmse", "coriolis_nmse", "gravity_nmse")
        if k in m["metrics"]
    } | vpt_stats(m)


# -- report -----------------------------------------------------------------------------------
def summarise(rows: List[dict]) -> Dict[tuple, dict]:
    """(data set, kind, variant) -> median, min, max over seeds of every metric, and seed count."""
    groups = _runner.group_runs(rows, ("dataset", "kind", "variant"))
    out = {}
    for key, rs in groups.items():
        s: Dict[str, Any] = {
            "seeds": len(rs),
            "epochs": float(np.median([r["epochs"] for r in rs])),
            "seconds_per_epoch": float(np.median([r["seconds_per_epoch"] for r in rs])),
        }
        for m in METRICS:
            vals = _runner.known(rs, m)
            if vals:
                s[m] = (float(np.median(vals)), float(np.min(vals)), float(np.max(vals)))
        out[key] = s
    return out


def report(rows: List[dict], budget: float, exact: Optional[Dict[str, dict]] = None) -> str:
    med = summarise(rows)
    lines = [
        f"# Forward models ({budget:g} s per run, 1 CPU thread each)",
        "",
        "Made by `python experiments/forward_models.py` (docstring: data, metrics, options). Each cell: "
        "median over seeds [min - max]; VPT is each run's median over the held-out trajectories [s]. "
        f'"rollout" adds the trajectory loss ({", ".join(f"{k}={v}" for k, v in ROLLOUT.items())}) to '
        'the library defaults ("one-step"). Time-budgeted runs on a shared machine: epochs differ with '
        "load.",
        "",
    ]
    for name in DATASETS:
        here = {(k, v): s for (d, k, v), s in med.items() if d == name}
        if not here:
            continue
        spec = DATASETS[name]
        lines += [
            f"## {name}",
            "",
            f"held out: {', '.join(spec['test'])}",
            "",
            "| model | variant | seeds | torque nMSE | inertial nMSE | Coriolis nMSE | gravity nMSE | "
            "VPT median [s] | epochs | s / epoch |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for kind in KINDS:
            for variant in VARIANTS:
                s = here.get((kind, variant))
                if s is None:
                    continue
                cell = lambda m, s=s: (
                    f"{fmt(s[m][0])} [{fmt(s[m][1], 2)} - {fmt(s[m][2], 2)}]"  # noqa: E731
                    if m in s
                    else "n/a"
                )
                lines.append(
                    f"| {kind} | {variant} | {s['seeds']} | {cell('torque_nmse')} | {cell('inertial_nmse')} | "
                    f"{cell('coriolis_nmse')} | {cell('gravity_nmse')} | {cell('vpt_median')} | "
                    f"{s['epochs']:.0f} | {s['seconds_per_epoch']:.3g} |"
                )
        ex = (exact or {}).get(name)
        if ex:
            lines.append(
                f"| exact dynamics (the generating system; this data's ceiling) | - | - | "
                f"{fmt(ex.get('torque_nmse'))} | {fmt(ex.get('inertial_nmse'))} | "
                f"{fmt(ex.get('coriolis_nmse'))} | {fmt(ex.get('gravity_nmse'))} | "
                f"{fmt(ex['vpt_median'])} | - | - |"
            )
        base = here.get(("structured", "one-step"))
        if base and "vpt_median" in base:
            # the best of our models (kinds run with >= 3 seeds), each metric on its own
            cands = {kv: s for kv, s in here.items() if s["seeds"] >= 3 and kv != ("structured", "one-step")}
            with_vpt = {kv: s for kv, s in cands.items() if "vpt_median" in s}
            if with_vpt:
                bv = max(with_vpt, key=lambda kv: with_vpt[kv]["vpt_median"][0])
                bn = min(cands, key=lambda kv: cands[kv]["torque_nmse"][0])
                v0, v1 = base["vpt_median"][0], with_vpt[bv]["vpt_median"][0]
                lines += [
                    "",
                    f"Against the structured DeLaN with the defaults (VPT {v0:.3g} s, "
                    f"torque nMSE {base['torque_nmse'][0]:.3g}): best median VPT {v1:.3g} s "
                    f"({bv[0]}, {bv[1]}; {100 * (v1 / v0 - 1):+.0f} %), "
                    f"best torque nMSE {cands[bn]['torque_nmse'][0]:.3g} ({bn[0]}, {bn[1]}; "
                    f"{base['torque_nmse'][0] / cands[bn]['torque_nmse'][0]:.2f}x lower).",
                ]
        if os.path.exists(os.path.join(OUT, "forward_models", f"{name}-rollouts.png")):
            lines += [
                "",
                f"Rollouts of held-out trajectory {spec['figure']!r} (seed 0): forward_models/{name}-rollouts.png",
            ]
        lines.append("")
    lines += [
        "## Quoted: the DeLaN journal paper (THEIR numbers, THEIR data)",
        "",
        'Lutter & Peters, "Combining physics and deep learning to learn continuous-time dynamics models": '
        "the published 2-DoF character recordings of a real arm, thousands of epochs, median over 10 seeds. "
        "Not comparable one to one with the table above (other data, other budget); quoted for orientation.",
        "",
        "| model (theirs) | torque nMSE | VPT [s] |",
        "|---|---|---|",
    ]
    for label, v in QUOTED.items():
        lines.append(f"| {label} | {fmt(v.get('torque_nmse'))} | {fmt(v.get('vpt'))} |")
    lines += ["", "All runs:", ""]
    lines += _runner.runs_table(
        rows,
        ("dataset", "kind", "variant", "seed"),
        ("torque_nmse", "vpt_median"),
        "| data set | model | variant | seed | torque nMSE | VPT median [s] | epochs | best epoch |",
    )
    return "\n".join(lines) + "\n"


def rollout_figure(name: str, data: str, rows: List[dict], folder: str) -> Optional[str]:
    """q of one held-out trajectory: the recording and each kind's rollout (seed 0, RK4, ZOH of
    the recorded torque at the recording's rate, 20 substeps as in the VPT)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from delan.data import load_dataset
    from delan.evaluation import VPT_SUBSTEPS, dtype_device, inference
    from delan.integrators import rollout
    from delan.training import load_run

    tr = load_dataset(data)[DATASETS[name]["figure"]]
    picks = [r for r in rows if r["dataset"] == name and r.get("seed") == 0 and "run_dir" in r and r["kind"] != "mlp"]
    if not picks:
        return None
    n = tr.n_dof
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n), sharex=True, squeeze=False)
    for j in range(n):
        axes[j, 0].plot(tr.t - tr.t[0], tr.q[:, j], "k", lw=2, label="recorded")
    for r in picks:
        _, model = load_run(os.path.join(HERE, r["run_dir"]))
        dtype, device = dtype_device(model)
        q, qd = (torch.as_tensor(x[0], dtype=dtype, device=device) for x in (tr.q, tr.qd))
        qs = [q.numpy().copy()]
        with inference(model):
            for k in range(len(tr.t) - 1):
                span = float(tr.t[k + 1] - tr.t[k])
                tau = torch.as_tensor(tr.tau[k], dtype=dtype, device=device)
                ro = rollout(
                    model,
                    q,
                    qd,
                    lambda t, a, b, tau=tau: tau,
                    span / VPT_SUBSTEPS,
                    VPT_SUBSTEPS,
                    "rk4",
                    stop_on_divergence=True,
                )
                if ro.diverged_at is not None:
                    break
                q, qd = ro.q[-1], ro.qd[-1]
                qs.append(q.numpy().copy())
        qs = np.array(qs)
        for j in range(n):
            axes[j, 0].plot(
                tr.t[: len(qs)] - tr.t[0],
                qs[:, j],
                lw=1,
                label=f"{r['kind']} {r['variant']} (VPT {r.get('vpt_median', float('nan')):.2f} s)",
            )
    for j in range(n):
        axes[j, 0].set_ylabel(f"q{j + 1}")
        lo, hi = tr.q[:, j].min(), tr.q[:, j].max()
        pad = 0.5 * (hi - lo) + 0.1
        axes[j, 0].set_ylim(lo - pad, hi + pad)
    axes[-1, 0].set_xlabel("t [s]")
    axes[0, 0].legend(fontsize=6, ncol=2)
    axes[0, 0].set_title(f"{name}: held-out {DATASETS[name]['figure']!r}, rollouts of the learned models (seed 0)")
    path = os.path.join(folder, f"{name}-rollouts.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _runner.add_run_arguments(ap)
    ap.add_argument("--datasets", default="two-link-25hz")
    ap.add_argument("--kinds", default=None, help="model kinds (default: every kind the library has)")
    ap.add_argument("--variants", default="one-step,rollout")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    ap.add_argument(
        "--keep", action="store_true", help="reuse finished runs and keep the rows of other runs from an earlier JSON"
    )
    ap.add_argument("--report-only", action="store_true", help="rebuild the table and figures from the JSON")
    args = ap.parse_args()
    names = args.datasets.split(",")
    kinds = args.kinds.split(",") if args.kinds else available_kinds()
    variants = args.variants.split(",")
    seeds = [int(x) for x in args.seeds.split(",")]
    unknown = (
        [x for x in names if x not in DATASETS]
        + [x for x in kinds if x not in KINDS]
        + [x for x in variants if x not in VARIANTS]
    )
    if unknown:
        ap.error(f"unknown data sets, kinds or variants: {unknown}")
    folder = os.path.join(OUT, "forward_models")
    os.makedirs(folder, exist_ok=True)
    files = {name: make_data(name, folder) for name in names}
    out_json = os.path.join(OUT, "forward_models.json")
    rows: List[dict] = []
    old_budget = None
    if (args.keep or args.report_only) and os.path.exists(out_json):
        with open(out_json) as f:
            old = json.load(f)
        old_budget = old.get("budget")
        rows = old["runs"]
    if args.report_only:  # every run evaluated so far (each caches its row in its run directory)
        import glob

        cached = {(r["dataset"], r["kind"], r["variant"], r["seed"]): r for r in rows}
        for path in glob.glob(os.path.join(folder, "runs", "*", "*", "forward_models_eval.json")):
            with open(path) as f:
                r = json.load(f)
            cached[(r["dataset"], r["kind"], r["variant"], r["seed"])] = r
        rows = list(cached.values())
    if not args.report_only:
        todo = [
            (n, k, v, s)
            for n in names
            for k in kinds
            for v in variants
            for s in seeds
            if not (k == "mlp" and v == "rollout")
        ]  # the mlp has no forward dynamics to roll out
        rows = [r for r in rows if (r["dataset"], r["kind"], r["variant"], r["seed"]) not in set(todo)]
        jobs = [
            dict(
                dataset=n,
                kind=k,
                variant=v,
                seed=s,
                data=files[n],
                budget=args.budget,
                keep=args.keep,
                runs=os.path.join(folder, "runs"),
            )
            for n, k, v, s in todo
        ]
        rows += _runner.run_jobs(
            run_one, jobs, args.jobs, shown=lambda row: {k: v for k, v in row.items() if k != "vpt_per_trajectory"}
        )
    order = {n: i for i, n in enumerate(DATASETS)}
    rows.sort(
        key=lambda r: (order[r["dataset"]], KINDS.index(r["kind"]), list(VARIANTS).index(r["variant"]), r["seed"])
    )
    budget = args.budget if old_budget is None or not args.report_only else old_budget
    for name in {r["dataset"] for r in rows}:
        try:
            rollout_figure(name, make_data(name, folder), rows, folder)
        except Exception as exc:  # runs not on this machine: the table is still rebuilt
            print(f"no rollout figure for {name}: {type(exc).__name__}: {exc}")
    exact = {name: exact_reference(name, make_data(name, folder)) for name in {r["dataset"] for r in rows}}
    with open(out_json, "w") as f:
        json.dump(
            {
                "budget": budget,
                "rollout_options": ROLLOUT,
                "variants": VARIANTS,
                "quoted": QUOTED,
                "exact_dynamics": exact,
                "runs": rows,
            },
            f,
            indent=1,
        )
    with open(os.path.join(OUT, "forward_models.md"), "w") as f:
        f.write(report(rows, budget, exact))
    print(f"wrote {out_json} and forward_models.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
