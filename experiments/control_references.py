"""How much the tracking ratios of experiments/control.py depend on which references are tracked.

    python experiments/control_references.py                     # two-link and Panda, 16 fresh references
    python experiments/control_references.py --systems panda --fresh 32

control.py pools the errors over a handful of held-out references (4 for the two-link, 8 for the
Panda). This script takes the same cached trained runs (structured DeLaN and mlp; run control.py
first) and tracks, one reference at a time, those held-out references and ``--fresh`` more drawn
from the same Fourier generator with another seed (``numpy.random.default_rng(1)``: in no data
file, so never trained on), with the same gains, rate and sensor noise as control.py (reference i
gets the noise draw of seed i). It reports each reference's learned-FF / true-FF and mlp-FF /
learned-FF ratios at each PD bandwidth, and the ratios of the errors pooled over each set.

Writes experiments/results/control_references.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import control as C  # noqa: E402  (the experiment whose runs and settings this checks)

COMMAND = "python experiments/control_references.py"
FRESH_SEED = 1  # the held-out references come from default_rng(0): this seed draws others


def track_one(system, ref, models: Dict[str, object], bandwidth: float, rate: float, noise, seconds, seed: int):
    """{model label: RMS error norm} of feed-forward + PD tracking of one reference."""
    from delan.control import FeedForwardPD, simulate_closed_loop, tracking_metrics

    q0, qd0, kp, kd = C.reference_start_and_gains(system, ref, seconds, bandwidth, 1.0)
    out = {}
    for label, model in models.items():
        res = simulate_closed_loop(
            system, FeedForwardPD(model, ref, kp, kd), q0, qd0, duration=seconds, rate=rate, noise=noise, seed=seed
        )
        out[label] = tracking_metrics(res)["rms_error_norm"]
    return out


def study(system_name: str, fresh: int, bandwidths: List[float], rate: float, noise) -> dict:
    from delan.systems import make_system
    from delan.training import load_run
    from delan.trajectories import make_trajectories

    torch.set_num_threads(1)
    recipe = C.TRACKING[system_name]
    system = make_system(system_name)
    models = {
        "true": system,
        "learned": load_run(C.run_path(system_name, "structured"))[1],
        "mlp": load_run(C.run_path(system_name, "mlp"))[1],
    }
    sets = {
        "held-out": C.references(system_name, recipe, C.data_path(system_name)),
        "fresh": make_trajectories(system, "fourier", fresh, recipe["duration"], np.random.default_rng(FRESH_SEED)),
    }
    seconds = recipe.get("track_seconds") or recipe["duration"]
    result = {}
    for w in bandwidths:
        per_set = {}
        for name, refs in sets.items():
            rows = []
            for i, ref in enumerate(refs):
                e = track_one(system, ref, models, w, rate, noise, seconds, seed=i)
                rows.append(dict(reference=ref.name, **e))
                print(
                    f"  {system_name} w={w:g} {name} {ref.name}: learned/true {e['learned'] / e['true']:.2f}, "
                    f"mlp/learned {e['mlp'] / e['learned']:.2f}",
                    flush=True,
                )
            per_set[name] = rows
        result[f"{w:g}"] = per_set
    return dict(
        seconds_per_reference=seconds, references={k: [r.name for r in v] for k, v in sets.items()}, by_bandwidth=result
    )


def pooled(rows: List[dict], label: str) -> float:
    """The RMS error norm over the references as one run (they are of equal length)."""
    return float(np.sqrt(np.mean([r[label] ** 2 for r in rows])))


def section(system: str, res: dict) -> List[str]:
    goals = C.ratio_goals(C.PD_TARGETS[system])
    true_ok, true_text = goals["learned_ff_over_true_ff"]
    mlp_ok, mlp_text = goals["mlp_ff_over_learned_ff"]
    lines = [
        f"## {system}",
        "",
        f"References tracked {res['seconds_per_reference']:g} s each. Held-out: "
        f"{', '.join(res['references']['held-out'])} (control.py's); fresh: {len(res['references']['fresh'])} "
        f"drawn with seed {FRESH_SEED}.",
        "",
        f"| PD bandwidth | references | learned-FF / true-FF: pooled | median [smallest, largest] per reference "
        f"| references {true_text} | mlp-FF / learned-FF: pooled | per reference {mlp_text} |",
        "|---|---|---|---|---|---|---|",
    ]
    for w, per_set in res["by_bandwidth"].items():
        for name, rows in [*per_set.items(), ("all", [r for rs in per_set.values() for r in rs])]:
            lt = [r["learned"] / r["true"] for r in rows]
            ml = [r["mlp"] / r["learned"] for r in rows]
            lines.append(
                f"| {w} rad/s | {name} ({len(rows)}) | {pooled(rows, 'learned') / pooled(rows, 'true'):.2f} | "
                f"{np.median(lt):.2f} [{min(lt):.2f}, {max(lt):.2f}] | {sum(map(true_ok, lt))} / {len(rows)} | "
                f"{pooled(rows, 'mlp') / pooled(rows, 'learned'):.2f} | {sum(map(mlp_ok, ml))} / {len(rows)} |"
            )
    ws = list(res["by_bandwidth"])
    spread = []
    for w in ws:
        true = [r["true"] for rows in res["by_bandwidth"][w].values() for r in rows]
        spread.append(f"{max(true) / min(true):.1f}x at w = {w}")
    lines += ["", f"The true-FF error itself, largest / smallest over all references: {', '.join(spread)}."]
    lines += ["", "Per reference (learned-FF / true-FF):", ""]
    lines += ["| reference | " + " | ".join(f"w = {w}" for w in ws) + " |", "|---|" + "---|" * len(ws)]
    first = res["by_bandwidth"][ws[0]]
    for name, rows in first.items():
        for k, r in enumerate(rows):
            cells = [res["by_bandwidth"][w][name][k] for w in ws]
            lines.append(
                f"| {name} {r['reference']} | " + " | ".join(f"{c['learned'] / c['true']:.2f}" for c in cells) + " |"
            )
    return lines + [""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--systems", default="two-link,panda", help="comma-separated subset of control.py's tracking systems"
    )
    ap.add_argument("--fresh", type=int, default=16, help="references drawn anew per system (default 16)")
    ap.add_argument("--bandwidths", default="10,30", help="PD bandwidths [rad/s] (default 10,30: control.py's)")
    args = ap.parse_args()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in C.TRACKING]
    if unknown:
        raise SystemExit(f"unknown system(s) {', '.join(unknown)}; control.py tracks {', '.join(C.TRACKING)}")
    missing = [p for s in systems for p in (C.run_path(s, "structured"), C.run_path(s, "mlp")) if not os.path.isdir(p)]
    if missing:
        raise SystemExit(f"no trained run {', '.join(missing)}: run `python experiments/control.py` first")
    bandwidths = [float(w) for w in args.bandwidths.split(",")]
    rate, noise = C.RATE, C.NOISE
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = {s: pool.submit(study, s, args.fresh, bandwidths, rate, noise) for s in systems}
        results = {s: f.result() for s, f in futures.items()}
    out = dict(command=COMMAND, rate=rate, noise=list(noise), fresh_seed=FRESH_SEED, systems=results)
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(write_report(out))
    return 0


def write_report(out: dict) -> str:
    """Write control_references.json and .md from the study's results ``out``; returns the report."""
    with open(os.path.join(C.OUT, "control_references.json"), "w") as f:
        json.dump(out, f, indent=2)
    noise = out["noise"]
    lines = [
        "# Tracking ratios per reference (issue 11)",
        "",
        f"Written by `{COMMAND}` from experiments/control.py's cached runs: feed-forward + PD at {out['rate']:g} Hz "
        f"on the TRUE system, sensor noise std {noise[0]:g} / {noise[1]:g} on q / qd, control.py's gains "
        "(kp = w^2 m_i, kd = 2 w m_i). One noise draw per reference.",
        "",
    ]
    for s, res in out["systems"].items():
        lines += section(s, res)
    report = "\n".join(lines)
    with open(os.path.join(C.OUT, "control_references.md"), "w") as f:
        f.write(report)
    return report


if __name__ == "__main__":
    sys.exit(main())
