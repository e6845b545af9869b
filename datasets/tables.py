"""The measured tables of datasets/README.md, rewritten in place between their markers.

    python datasets/tables.py                 # all tables (the speed table needs a few minutes)
    python datasets/tables.py --only derivatives jitter

* derivatives: Savitzky-Golay derivative accuracy on two-link trajectories at 250 Hz with white
  position noise of 1e-4 rad, per window and order (RMSE over samples and joints relative to
  each trajectory's peak |qd| / |qdd|; mean over trajectories, and the largest for qdd);
* jitter: local polynomial on the actual time stamps vs Savitzky-Golay as if the clock were
  uniform, on sums of sines sampled every 2 ms +- 0.5 ms;
* speed: wall time of ``delan generate`` commands (the Panda rows need pinocchio, ``pip install
  delan[robots]``; without it they are listed as not measured), with the load average.

Each table sits between ``<!-- table: NAME (python datasets/tables.py) -->`` and
``<!-- end table: NAME -->`` in the README; everything else there is left alone.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.signal import savgol_filter

from delan.data import estimate_derivatives
from delan.fileio import atomic_write_bytes
from delan.systems import make_system
from delan.trajectories import character_trajectories, fourier_trajectories

README = Path(__file__).resolve().parent / "README.md"
RATE = 250.0
NOISE = 1e-4
SETTINGS = [(15, 3), (25, 3), (41, 3), (25, 5), (41, 5)]
DEFAULT = (25, 3)


def derivative_rows(name: str, refs, duration: float, rng: np.random.Generator):
    t = np.arange(0.0, duration, 1.0 / RATE)
    truth = [ref(t) for ref in refs]
    noisy = [q + rng.normal(scale=NOISE, size=q.shape) for q, _, _ in truth]
    rows = []
    for window, order in SETTINGS:
        e1, e2 = [], []
        for (_, qd, qdd), qn in zip(truth, noisy):
            est_qd, est_qdd, _ = estimate_derivatives(t, qn, window=window, polyorder=order)
            e1.append(np.sqrt(np.mean((est_qd - qd) ** 2)) / np.abs(qd).max())
            e2.append(np.sqrt(np.mean((est_qdd - qdd) ** 2)) / np.abs(qdd).max())
        label = f"{window} ({1000 * window / RATE:.0f} ms)" + (", default" if (window, order) == DEFAULT else "")
        rows.append(
            f"| {name} | {label} | {order} | {100 * np.mean(e1):.3f} % | "
            f"{100 * np.mean(e2):.2f} % (max {100 * np.max(e2):.2f} %) |"
        )
    return rows


def derivatives_table() -> str:
    system = make_system("two-link")
    rng = np.random.default_rng(0)
    rows = derivative_rows("fourier (5 s, 5 trajectories)", fourier_trajectories(system, 5, 5.0, rng), 5.0, rng)
    letters = character_trajectories(system)
    rows += derivative_rows(f"characters (2 s, {len(letters)} letters)", letters, 2.0, rng)
    head = ["| trajectories | window | order | q̇ RMSE / peak | q̈ RMSE / peak |", "|---|---|---|---|---|"]
    return "\n".join(head + rows)


def _sines(t: np.ndarray, seed: int = 1):
    """Sums of sines (T, 2) and their exact first and second derivatives."""
    rng = np.random.default_rng(seed)
    amp = np.array([[1.0, 0.4, 0.2], [0.8, 0.5, 0.3]])
    freq = np.array([[1.3, 3.1, 5.7], [2.1, 4.3, 6.1]])  # rad/s
    phase = freq * t[:, None, None] + rng.uniform(0, 2 * np.pi, (2, 3))
    return (
        (amp * np.sin(phase)).sum(-1),
        (amp * freq * np.cos(phase)).sum(-1),
        (-amp * freq**2 * np.sin(phase)).sum(-1),
    )


def jitter_table() -> str:
    rng = np.random.default_rng(0)
    t = np.arange(5000) * 2e-3 + rng.uniform(-0.5e-3, 0.5e-3, 5000)
    q, qd, qdd = _sines(t)
    qn = q + rng.normal(scale=1e-5, size=q.shape)

    def rel(a, b):
        return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))

    e_qd, e_qdd, info = estimate_derivatives(t, qn)
    dt = float(np.median(np.diff(t)))
    w, k = info["window"], info["polyorder"]
    u_qd = savgol_filter(qn, w, k, deriv=1, delta=dt, axis=0, mode="interp")
    u_qdd = savgol_filter(qn, w, k, deriv=2, delta=dt, axis=0, mode="interp")
    return "\n".join(
        [
            "| estimator | q̇ relative RMSE | q̈ relative RMSE |",
            "|---|---|---|",
            f"| local polynomial on the actual time stamps (used; window {w}, order {k}) | {rel(e_qd, qd):.1e} | "
            f"{100 * rel(e_qdd, qdd):.2f} % |",
            f"| Savitzky–Golay as if the clock were uniform ({1000 * dt:.0f} ms median step) | {rel(u_qd, qd):.1e} | "
            f"{100 * rel(u_qdd, qdd):.2f} % |",
        ]
    )


SPEED_COMMANDS = [
    ("two-link", "--kind characters --rate 200 --seed 0", "8,421 (21 letters)"),
    ("two-link", "--kind characters --rate 200 --simulate", "8,421"),
    ("panda", "--trajectories 40 --duration 10 --rate 250", "100,040"),
    ("panda", "--trajectories 40 --duration 10 --rate 250 --simulate --friction", "100,040"),
]


def speed_table() -> str:
    rows = []
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for system, options, samples in SPEED_COMMANDS:
            shown = f"delan generate {system} -o OUT.h5 {options}"
            out = os.path.join(tmp, "out.h5")
            cmd = [sys.executable, "-m", "delan", "generate", system, "-o", out, *options.split()]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - start
            loads.append(os.getloadavg()[0])
            if proc.returncode != 0:
                why = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                rows.append(f"| `{shown}` | {samples} | not measured: {why} | |")
                continue
            found = re.search(r"in ([0-9.]+) s", proc.stdout)
            reported = f"{float(found.group(1)):.2f} s" if found else "?"
            rows.append(f"| `{shown}` | {samples} | {reported} | {wall:.1f} s |")
            os.remove(out)
    head = [
        f"{os.cpu_count()} CPUs, load average {min(loads):.1f} to {max(loads):.1f} while it ran "
        f"(wall: the whole command with Python/torch start-up; reported: what the command prints, "
        f"generation and writing).",
        "",
        "| command | samples | reported | wall |",
        "|---|---|---|---|",
    ]
    return "\n".join(head + rows)


TABLES = {"derivatives": derivatives_table, "jitter": jitter_table, "speed": speed_table}


def replace_table(text: str, name: str, table: str) -> str:
    pattern = re.compile(rf"(<!-- table: {name} [^\n]*-->\n).*?(\n<!-- end table: {name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{README}: no markers for table {name!r}")
    return pattern.sub(lambda m: m.group(1) + table + m.group(2), text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=list(TABLES), default=list(TABLES))
    args = p.parse_args(argv)
    text = README.read_text()
    for name in args.only:
        table = TABLES[name]()
        print(table + "\n", flush=True)
        text = replace_table(text, name, table)
    atomic_write_bytes(str(README), text.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
