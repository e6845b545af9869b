"""Shared timing helpers for the benchmarks: interleaved repeats, medians, environment line."""
from __future__ import annotations

import platform
import statistics
import time
from typing import Callable, Dict

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: Dict[str, Callable[[], object]], device: torch.device, repeats: int = 15, warmup: int = 3, min_time: float = 0.0) -> Dict[str, float]:
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


def matmul_rate(rows: int, width: int, dtype: torch.dtype, device: torch.device, repeats: int = 15) -> float:
    """Measured FLOP/s of a (rows, width) @ (width, width) product, the shape the networks use."""
    a = torch.randn(rows, width, dtype=dtype, device=device)
    w = torch.randn(width, width, dtype=dtype, device=device)
    t = time_interleaved({"mm": lambda: a @ w}, device, repeats=repeats, min_time=0.02)["mm"]
    return 2.0 * rows * width * width / t


def environment(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return (
        f"torch {torch.__version__}, device {device} ({name}), threads {torch.get_num_threads()}, "
        f"python {platform.python_version()}"
    )
