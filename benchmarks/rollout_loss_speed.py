"""What the rollout loss (trajectory training) costs per training epoch.

Structured DeLaN (library defaults: width 64, depth 2, B = 512, float32), two-link, 1 CPU thread,
trained by ``delan.training.train_run`` for a few epochs with and without the rollout loss at
horizon 8 (RK4, one step per sample interval, ``rollout_start=0`` so every epoch pays for it);
the time per epoch is the median of the epoch log's time differences (the first epoch left
out), and includes the validation pass. Settings: the rollout part on every minibatch from all
its samples, from 64 of them (the setting of experiments/forward_models.py), and on every 4th /
8th minibatch. Runs are interleaved (baseline, setting, baseline, ...) so that a change of the
machine's load hits both; the load average is recorded.

    python benchmarks/rollout_loss_speed.py [--epochs 8] [--repeats 2]

Writes benchmarks/results/rollout_loss_speed_cpu.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS = {
    "one-step losses only": {},
    "rollout K=8, every minibatch, all 512 windows": dict(rollout_horizon=8),
    "rollout K=8, every minibatch, 64 windows": dict(rollout_horizon=8, rollout_windows=64),
    "rollout K=8, every 4th minibatch, 64 windows": dict(rollout_horizon=8, rollout_windows=64, rollout_every=4),
    "rollout K=8, every 8th minibatch, 64 windows": dict(rollout_horizon=8, rollout_windows=64, rollout_every=8),
}


def data_sets(folder: str) -> dict:
    from delan.data import save_dataset
    from delan.data.generate import generate_dataset

    out = {}
    for name, kw in {
        "characters 25 Hz (1.9k training samples)": dict(kind="characters", duration=5.0, rate=25.0),
        "Fourier 250 Hz (11k training samples)": dict(kind="fourier", n_trajectories=10, duration=5.0, rate=250.0),
    }.items():
        path = os.path.join(folder, f"{len(out)}.h5")
        save_dataset(generate_dataset("two-link", seed=0, **kw), path)
        out[name] = path
    return out


def seconds_per_epoch(data: str, folder: str, epochs: int, options: dict) -> float:
    from delan.training import TrainConfig, train_run

    run = tempfile.mkdtemp(dir=folder)
    config = TrainConfig(data=data, epochs=epochs, threads=1, quiet=True, rollout_start=0.0, **options)
    result = train_run(config, run, progress=False)
    times = [r["time"] for r in result.history]
    return statistics.median(b - a for a, b in zip(times, times[1:]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "rollout_loss_speed_cpu.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    load = [os.getloadavg()[0]]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, data in data_sets(folder).items():
            base = []
            for setting, options in list(SETTINGS.items())[1:]:
                times = []
                for _ in range(args.repeats):
                    base.append(seconds_per_epoch(data, folder, args.epochs, {}))
                    times.append(seconds_per_epoch(data, folder, args.epochs, options))
                    load.append(os.getloadavg()[0])
                rows.append((name, setting, statistics.median(times)))
                print(json.dumps({"data": name, "setting": setting, "s_per_epoch": rows[-1][2]}), flush=True)
            rows.append((name, "one-step losses only", statistics.median(base)))
    lines = [
        "# Rollout loss: time per epoch (CPU, 1 thread)",
        "",
        f"Made by `python benchmarks/rollout_loss_speed.py --epochs {args.epochs} --repeats {args.repeats}` "
        f"(see its docstring). torch {torch.__version__}; load average during the runs "
        f"{min(load):.1f}-{max(load):.1f} on {os.cpu_count()} CPUs (a shared machine: absolute times vary "
        "with the load, the ratios less so).",
        "",
        "| data | setting | s / epoch | ratio to one-step |",
        "|---|---|---|---|",
    ]
    for name in dict.fromkeys(r[0] for r in rows):
        here = {s: t for n, s, t in rows if n == name}
        b = here["one-step losses only"]
        for setting in SETTINGS:
            lines.append(f"| {name} | {setting} | {here[setting]:.3f} | {here[setting] / b:.1f}x |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
