"""Shared timing helpers for the benchmarks: interleaved repeats, medians, the matrix products of
a call (FLOPs, the same count as torch's FlopCounterMode) replayed alone, environment line."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: Dict[str, Callable[[], object]],
    device: torch.device,
    repeats: int = 15,
    warmup: int = 3,
    min_time: float = 0.0,
) -> Dict[str, float]:
    """Median seconds per call of each function, measured round-robin so that a slow spell of
    a shared machine hits every contender alike. Each sample runs a function enough times to
    last ``min_time`` seconds (for sub-millisecond calls)."""
    inner = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        once = time.perf_counter() - t0
        inner[name] = max(1, int(min_time / max(once, 1e-9)))
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            k = inner[name]
            sync(device)
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            sync(device)
            samples[name].append((time.perf_counter() - t0) / k)
    return {name: statistics.median(v) for name, v in samples.items()}


def time_both(
    fns: Dict[str, Callable[[], object]], repeats: int, min_time: float = 0.2, warmup: int = 3
) -> Tuple[Dict[str, float], Dict[str, float]]:
    """Median seconds per call of each function (CPU), interleaved round-robin, by the wall clock
    and by this process's CPU time (time.process_time: the time it actually ran, which other jobs
    on a shared machine do not inflate the way they inflate the wall clock). ``warmup`` calls of
    each first; each sample runs a function enough times to last ``min_time`` seconds."""
    inner = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        inner[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-9)))
    wall: Dict[str, List[float]] = {name: [] for name in fns}
    cpu: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            k = inner[name]
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(k):
                fn()
            c1, w1 = time.process_time(), time.perf_counter()
            wall[name].append((w1 - w0) / k)
            cpu[name].append((c1 - c0) / k)
    return ({n: statistics.median(v) for n, v in wall.items()}, {n: statistics.median(v) for n, v in cpu.items()})


_PRODUCTS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}


def matrix_products(fn: Callable[[], object]) -> List[Tuple[str, Tuple[tuple, ...]]]:
    """The matrix products one call of ``fn`` runs: (aten op name, input shapes) in call order,
    recorded by the profiler (``torch.nn.functional.linear`` and ``@`` land on these ops)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return [(e.name, tuple(tuple(s) for s in e.input_shapes)) for e in prof.events() if e.name in _PRODUCTS]


def matmul_replay(
    fn: Callable[[], object], dtype: torch.dtype, device: torch.device
) -> Tuple[float, Callable[[], None]]:
    """(FLOPs, replay) for ``fn``'s matrix products: ``replay()`` runs the same products alone, at
    the shapes the call used, on fresh contiguous operands. Time it interleaved with ``fn`` (in
    the same :func:`time_interleaved` call, so a slow spell of a shared machine hits both alike):
    replay time / call time is the share of the achievable matmul rate the call reaches at ITS
    shapes (a rate measured at another shape can put that share above 100 %)."""
    calls = []
    flops = 0
    for name, shapes in matrix_products(fn):
        if name in ("aten::addmm", "aten::baddbmm"):
            shapes = shapes[1:3]  # (bias/input, a, b, ...): the product is a @ b
        a_shape, b_shape = shapes[0], shapes[1]
        a = torch.randn(a_shape, dtype=dtype, device=device)
        b = torch.randn(b_shape, dtype=dtype, device=device)
        calls.append((torch.bmm if len(a_shape) == 3 else torch.mm, a, b))
        batch = a_shape[0] if len(a_shape) == 3 else 1
        flops += 2 * batch * a_shape[-2] * a_shape[-1] * b_shape[-1]

    def replay() -> None:
        for op, a, b in calls:
            op(a, b)

    return float(flops), replay


def load_average() -> str:
    """The 1/5/15-minute load averages and the CPU count, for the report (a loaded machine slows
    absolute rates; interleaving keeps the ratios fairer)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} (1/5/15 min) on {os.cpu_count()} CPUs"


def conditions(repeats: int, peak: float, start: str) -> str:
    """The report's words on how it was measured: the repeats, the CPUs, and the load average at
    its peak (``peak``, sampled while it ran), at the start (``start``: :func:`load_average`) and now."""
    return (
        f"medians of {repeats} interleaved repeats; {os.cpu_count()} CPUs, load average up to {peak:.1f} "
        f"while it ran; at the start {start}, at the end {load_average()}"
    )


def environment(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return (
        f"torch {torch.__version__}, device {device} ({name}), threads {torch.get_num_threads()}, "
        f"python {platform.python_version()}"
    )


def write_report(lines: List[str], output: Optional[str], echo: bool = True) -> str:
    """A benchmark's report from its lines: printed (with ``echo``), written to ``output`` (a
    markdown file; folders created) if given, and returned."""
    text = "\n".join(lines)
    if echo:
        print(text)
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w") as f:
            f.write(text.rstrip("\n") + "\n")
    return text
