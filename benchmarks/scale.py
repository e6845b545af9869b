"""Training throughput at scale on CPU: world size (torchrun, gloo), batch size, and streaming a
file larger than the memory budget against holding it in memory.

Structured DeLaN (library defaults: width 64, depth 2, float32), 7-DoF n-link data, 1 thread per
process. Every measurement runs in its own process, so that its peak RSS (``ru_maxrss``) is its
own:

* world size and batch size: ``delan train`` (one process, or ``torchrun --nproc-per-node 2``)
  for three epochs of a medium file, validation off; samples/s = training samples / the run's
  training seconds (summary.json);
* streaming vs in memory on the big file (1e7 samples): the trainer's loop body (model, loss,
  Adam step) for a fixed number of global minibatches, fed either by rows of in-memory tensors
  (the training fields of the whole file as float32 tensors, as the trainer holds them) or by the
  trainer's stream (:class:`delan.data.streaming.StreamingSource` sized for ``--max-memory 1``);
  runs alternate (memory, stream, memory, stream) so that a change of the machine's load hits
  both; the setup time (loading, resp. opening) is reported apart;
* ``delan train BIG --max-memory 1 --epochs 1`` itself (stopped by SIGTERM after
  ``--cli-seconds`` if it is still running): the whole trainer within the budget (its peak RSS,
  steps, samples/s from its summary). ``--cli-only`` reruns just this section.

    python benchmarks/scale.py --big /tmp/big7.h5 --medium /tmp/medium7.h5 [--steps 300]

The files are made (in /tmp, not in the repository) when missing:
``delan generate n-link --n-dof 7 --trajectories 1000 --duration 40 --piece-samples 262144 -o BIG`` (10,001,000
samples, about 6.6 GB, written in pieces) and 10 trajectories for the medium file.
Writes benchmarks/results/scale_cpu.md. The machine is shared: the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _make(path: str, trajectories: int) -> None:
    if not os.path.exists(path):
        subprocess.run(
            [
                "delan",
                "generate",
                "n-link",
                "--n-dof",
                "7",
                "--trajectories",
                str(trajectories),
                "--duration",
                "40",
                "--piece-samples",
                "262144",
                "-o",
                path,
            ],
            check=True,
            env=ENV,
        )


def _peak_rss_mb(pid: int):
    """VmHWM of a running process (Linux), MB; None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.0f}"


def train_rate(data: str, world: int, batch: int, epochs: int = 1) -> dict:
    """samples/s of `delan train` (``world`` processes) over ``epochs`` epochs, validation off."""
    run = tempfile.mkdtemp(prefix="scale_run_")
    args = [
        "-m",
        "delan",
        "train",
        data,
        "-o",
        os.path.join(run, "r"),
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch),
        "--validation",
        "0",
        "--quiet",
        "--threads",
        "1",
    ]
    if world == 1:
        cmd = [sys.executable] + args
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(world),
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
        ] + args
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    s = json.load(open(os.path.join(run, "r", "summary.json")))
    return {
        "samples_per_s": epochs * s["n_train_samples"] / s["seconds"],
        "train_s": s["seconds"],
        "wall_s": wall,
        "steps": s["steps"],
    }


# -- the loop body fed two ways (run in a child process: `scale.py --loop MODE BIG STEPS BATCH`) -------
def _loop(mode: str, path: str, steps: int, batch: int) -> dict:
    import numpy as np
    import torch

    from delan.data.streaming import StreamingSource, epoch_seed, index_file, training_segments
    from delan.training import TrainConfig, build_model, make_loss, make_optimizer, output_scales
    from delan.training_streaming import STATS_SAMPLES, window_for

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    index = index_file(path)
    segments = training_segments(index.lengths, [], {})
    cfg = TrainConfig(data=path, batch_size=batch, epochs=1).validate()
    if mode == "memory":
        src = StreamingSource(path, segments, batch, torch.float32, prefetch=False)
        parts = {k: [] for k in ("q", "qd", "qdd", "tau")}
        for seg in segments:  # trajectory by trajectory, straight into float32 tensors
            arrays = src.read([seg])
            for k in parts:
                parts[k].append(torch.as_tensor(arrays[k], dtype=torch.float32))
        train = {k: torch.cat(v) for k, v in parts.items()}
        del parts
        stats = {k: v[:STATS_SAMPLES].double().numpy() for k, v in train.items()}
        n = train["q"].shape[0]
        gen = torch.Generator().manual_seed(0)
        perm = torch.randperm(n, generator=gen)

        def batches():
            for i in range(0, n, batch):
                idx = perm[i : i + batch]
                yield {k: v[idx] for k, v in train.items()}
    else:
        src = StreamingSource(path, segments, batch, torch.float32, window=window_for(1e9, index.n_dof))
        stats, _ = src.stats_arrays(STATS_SAMPLES)

        def batches():
            for _, b in src.batches(epoch_seed(torch.Generator().manual_seed(0))):
                yield b

    torch.manual_seed(0)
    model = build_model(cfg, index.n_dof, [True] * index.n_dof, output_scales(stats))
    loss_fn = make_loss(cfg, {k: torch.as_tensor(np.asarray(v)) for k, v in stats.items()}, model)
    opt = make_optimizer(cfg, model)
    setup = time.perf_counter() - t0
    it = batches()
    warm = 20
    t1 = None
    for k in range(steps + warm):
        if k == warm:
            t1 = time.perf_counter()
        b = next(it)
        total, _ = loss_fn(model, b)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
    dt = time.perf_counter() - t1
    return {
        "mode": mode,
        "samples_per_s": steps * batch / dt,
        "setup_s": setup,
        "steps": steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def loop_rate(mode: str, path: str, steps: int, batch: int) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--loop", mode, path, str(steps), str(batch)],
        check=True,
        env=ENV,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def cli_streaming(path: str, seconds: float) -> dict:
    """`delan train BIG --max-memory 1`, SIGTERM after ``seconds``: peak RSS, steps, samples/s."""
    run = os.path.join(tempfile.mkdtemp(prefix="scale_cli_"), "r")
    # the CLI in a child that reports its own peak RSS when it ends (finished or stopped by the signal)
    code = (
        "import resource, sys\nfrom delan.cli import main\nc = main(sys.argv[1:])\n"
        "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, 'EXIT', c)\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, "train", path, "-o", run, "--max-memory", "1", "--epochs", "1", "--threads", "1"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        p.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=600)
    tail = [x.split() for x in out.splitlines() if x.startswith("PEAK_RSS_KB")]
    rss = int(tail[-1][1]) / 1024.0 if tail else None
    exit_code = int(tail[-1][3]) if tail else None
    s = json.load(open(os.path.join(run, "summary.json"))) if os.path.exists(os.path.join(run, "summary.json")) else {}
    steps = s.get("steps", 0)
    return {
        "exit": exit_code,
        "steps": steps,
        "train_s": s.get("seconds"),
        "samples_per_s": steps * 512 / s["seconds"] if steps and s.get("seconds") else None,
        "peak_rss_mb": rss,
        "mode": (s.get("data_mode") or {}).get("mode"),
        "printed": [x for x in out.splitlines() if x.startswith("data:")][:1],
    }


def _cli_lines(args, r: dict) -> list:
    return [
        "",
        f"## `delan train {args.big} --max-memory 1 --epochs 1` (SIGTERM after {args.cli_seconds:g} s "
        f"if still running)",
        "",
        f"exit {r['exit']}; data mode {r['mode']}; printed: {r['printed']}; steps {r['steps']} (batch 512) in "
        f"{r['train_s']} training s = {_num(r['samples_per_s'])} samples/s; peak RSS {_num(r['peak_rss_mb'])} MB "
        f"(whole process: python, torch, fingerprint pass, statistics sample, validation blocks, stream); "
        f"load {_load()}.",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big", default="/tmp/scale_f/big7.h5")
    ap.add_argument("--medium", default="/tmp/scale_f/medium7.h5")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cli-seconds", type=float, default=240.0)
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--cli-only", action="store_true", help="rerun only the last section, keeping the others")
    ap.add_argument("--loop", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.loop:
        mode, path, steps, batch = args.loop
        print(json.dumps(_loop(mode, path, int(steps), int(batch))))
        return
    import torch

    _make(args.medium, 10)
    _make(args.big, 1000)
    if args.cli_only:
        report = os.path.join(HERE, "results", "scale_cpu.md")
        kept = open(report).read().split("\n## `delan train")[0].rstrip("\n").split("\n")
        r = cli_streaming(args.big, args.cli_seconds)
        with open(report, "w") as f:
            f.write("\n".join(kept + _cli_lines(args, r)) + "\n")
        print("\n".join(_cli_lines(args, r)))
        return
    lines = [
        "# Training throughput at scale (CPU)",
        "",
        f"torch {torch.__version__}, {os.cpu_count()} CPUs (shared with other jobs), 1 thread per process; "
        f"structured DeLaN width 64 depth 2, float32, 7-DoF n-link data. Command: "
        f"`python benchmarks/scale.py --steps {args.steps} --repeats {args.repeats}`.",
        "",
        f"Load average at the start: {_load()}. The machine is shared and loaded: absolute rates move with "
        f"the load; compare rows measured side by side.",
        "",
    ]
    print(lines[2])

    lines += [
        "## World size (`delan train` vs `torchrun --nproc-per-node 2`, gloo), medium file (100,010 samples), 3 epochs",
        "",
        "| processes | batch (global) | samples/s | training s | load |",
        "|---|---|---|---|---|",
    ]
    for world in (1, 2):
        r = train_rate(args.medium, world, 2048, epochs=3)
        lines.append(f"| {world} | 2048 | {r['samples_per_s']:.0f} | {r['train_s']:.1f} | {_load()} |")
        print(lines[-1], flush=True)
    lines += [
        "",
        "## Batch size (one process), medium file, 3 epochs",
        "",
        "| batch | samples/s | training s | load |",
        "|---|---|---|---|",
    ]
    for batch in (256, 1024, 4096):
        r = train_rate(args.medium, 1, batch, epochs=3)
        lines.append(f"| {batch} | {r['samples_per_s']:.0f} | {r['train_s']:.1f} | {_load()} |")
        print(lines[-1], flush=True)

    lines += [
        "",
        f"## Streaming vs in memory, big file ({args.big}: 10,001,000 samples), batch 512, "
        f"{args.steps} steps after 20 warm-up steps",
        "",
        "| run | data | samples/s | setup s | peak RSS MB | load |",
        "|---|---|---|---|---|---|",
    ]
    rates = {"memory": [], "stream": []}
    for rep in range(args.repeats):
        for mode in ("memory", "stream"):
            r = loop_rate(mode, args.big, args.steps, 512)
            rates[mode].append(r["samples_per_s"])
            lines.append(
                f"| {rep + 1} | {'in memory' if mode == 'memory' else 'streamed (budget 1 GB)'} | "
                f"{r['samples_per_s']:.0f} | {r['setup_s']:.1f} | {r['peak_rss_mb']:.0f} | {_load()} |"
            )
            print(lines[-1], flush=True)
    ratio = [s / m for s, m in zip(rates["stream"], rates["memory"])]
    lines += ["", "Streamed / in-memory samples/s per pair: " + ", ".join(f"{x:.2f}" for x in ratio) + "."]
    print(lines[-1])
    if not args.skip_cli:
        r = cli_streaming(args.big, args.cli_seconds)
        lines += _cli_lines(args, r)
        print(lines[-1])
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "scale_cpu.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
