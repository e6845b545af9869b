"""Run the CUDA tests and write their report (benchmarks/results/cuda_tests.md) from what was run.

Needs a CUDA device (on a machine without one the tests skip and the report says so):

    python benchmarks/cuda_tests.py --output benchmarks/results/cuda_tests.md

The report holds the device (nvidia-smi), torch's version, the exact pytest command and its
summary line; nothing in it is typed by hand. ``benchmarks/gpu_check.sh`` calls this.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/test_cuda.py",
    "tests/test_training_graph.py",
    "tests/test_compiled.py",
    "tests/test_ddn_network.py",
    "tests/test_losses.py",
]


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, **kw)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default=None, help="write the report to this markdown file")
    args = p.parse_args(argv)
    try:
        smi = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"]).stdout.strip()
    except FileNotFoundError:
        smi = "nvidia-smi: not found (no NVIDIA driver on this machine)"
    torch_line = _run([sys.executable, "-c", "import torch; print(torch.__version__, torch.cuda.is_available())"])
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *TESTS]
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    proc = _run(cmd, env=env)
    lines = [x for x in proc.stdout.strip().splitlines() if x.strip()]
    summary = lines[-1] if lines else "(no output)"
    skipped_for_cuda = [x for x in lines if x.startswith("SKIPPED") and "CUDA" in x]
    report = [
        "# CUDA tests",
        "",
        "Written by `python benchmarks/cuda_tests.py --output benchmarks/results/cuda_tests.md` "
        "(run on the GPU machine by `bash benchmarks/gpu_check.sh`; needs a CUDA device).",
        "",
        "```",
        smi,
        f"torch {torch_line.stdout.strip()}  (version, CUDA available)",
        "",
        "$ python -m pytest -q " + " ".join(TESTS),
        summary,
        "```",
        "",
    ]
    if skipped_for_cuda:
        report += [
            f"{len(skipped_for_cuda)} skip lines name a missing CUDA device: this run did not exercise the "
            "GPU, rerun on a machine with one.",
            "",
        ]
    text = "\n".join(report)
    if proc.returncode != 0:  # the failures' own lines, for whoever reads the run's output
        print("\n".join(lines[-80:]), proc.stderr[-3000:], sep="\n")
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
