"""Training on a data file larger than memory: whether to stream it, and what a streamed run holds.

The trainer loads the whole file unless that would exceed the run's memory budget
(``max_memory`` GB; default :func:`delan.data.sizes.memory_limit`, half of the machine's memory):
then it streams the training samples from the file (:class:`delan.data.streaming.StreamingSource`).
What stays exactly as in memory: the held-out test trajectories, the validation blocks (or whole
validation trajectories) and their samples, which are read into memory (validation is a small
fraction of the data; its tensors count against the budget). What differs: the minibatch order
(chunks in a seeded random order, shuffled within a window of chunks), and the statistics taken
from the training data (loss scales, output scales, friction evidence), which come from a fixed
sample of at most :data:`STATS_SAMPLES` training samples in whole chunks - all of them, in file
order, for smaller data, so those equal the in-memory ones.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from delan.data.sizes import format_bytes, memory_limit
from delan.data.splits import (
    choose_validation,
    describe_validation,
    resolve_joint_types,
    to_tensors,
    validation_blocks,
)
from delan.data.streaming import (
    DEFAULT_CHUNK,
    DEFAULT_WINDOW,
    FIELDS,
    FileIndex,
    Segment,
    StreamingSource,
    index_file,
    training_segments,
)
from delan.errors import RunError

STATS_SAMPLES = 2**18


def budget_bytes(max_memory: Optional[float]) -> float:
    """The run's memory budget in bytes: ``max_memory`` GB, else :func:`memory_limit`."""
    return float(max_memory) * 1e9 if max_memory is not None else memory_limit()


def in_memory_estimate(path: str, index: FileIndex) -> float:
    """Bytes that loading ``path`` whole takes at the peak, as the loader estimates it
    (:func:`delan.data.load_dataset` refuses a file above the memory limit by the same rule):
    three times the stored arrays."""
    import h5py

    with h5py.File(path, "r") as f:
        stored = sum(
            d.size * d.dtype.itemsize
            for g in f["trajectories"].values()
            for d in g.values()
            if isinstance(d, h5py.Dataset)
        )
    return 3.0 * stored


def decide(config, index: FileIndex) -> Dict[str, Any]:
    """{"mode": "in memory" | "streaming", "budget": bytes, "estimate": bytes, ...} for a new run."""
    budget = budget_bytes(getattr(config, "max_memory", None))
    estimate = in_memory_estimate(config.data, index)
    mode = "streaming" if estimate > budget else "in memory"
    return {
        "mode": mode,
        "budget": budget,
        "in_memory_estimate": estimate,
        "why": (
            f"loading it whole would take about {format_bytes(estimate)}, more than the budget of "
            f"{format_bytes(budget)}"
            if mode == "streaming"
            else f"about {format_bytes(estimate)} fits the budget of {format_bytes(budget)}"
        ),
    }


def window_for(budget: float, n_dof: int, chunk: int = DEFAULT_CHUNK) -> int:
    """Chunks per window so that the source's two windows (each read and shuffled: x2) take at
    most a quarter of ``budget`` (the rest: validation, statistics, model, torch itself)."""
    per_window = 2 * 2 * chunk * len(FIELDS) * n_dof * 8
    return int(max(1, min(DEFAULT_WINDOW, (budget / 4) // per_window)))


class _Piece:
    """A contiguous piece of training data, as :func:`delan.training.decide_friction` reads it."""

    def __init__(self, arrays: Dict[str, np.ndarray]) -> None:
        self.qd, self.tau = arrays["qd"], arrays["tau"]


def load_streaming(config, index: FileIndex, mode: Dict[str, Any], dtype, device: str) -> Dict[str, Any]:
    """The data of a streamed run: the fields of :class:`delan.training._Data` (``train`` holds
    the statistics sample's tensors, ``source`` the stream, ``rest`` the pieces for friction
    evidence, ``mode`` :func:`describe`). ``mode``: :func:`decide`'s, or a resumed run's record
    (its chunk and window sizes, which fix the order, are kept)."""
    if config.rollout_horizon:
        raise RunError(
            "--rollout-horizon: trajectory training needs the data in memory; it is streamed here "
            "(larger than --max-memory): raise --max-memory or train without the rollout loss"
        )
    names = [n for n in index.names if n not in set(config.test)]
    if not names:
        raise RunError(f"{config.data}: every trajectory is held out by `test`; nothing left to train on")
    lengths = {n: index.lengths[n] for n in names}
    joint_types = resolve_joint_types(config, index)
    val_names = choose_validation(names, config.validation, config.seed)
    blocks = {} if val_names else validation_blocks(lengths, float(config.validation), config.seed)
    segments = training_segments(lengths, val_names, blocks)
    budget = float(mode.get("budget") or budget_bytes(getattr(config, "max_memory", None)))
    source = StreamingSource(
        config.data,
        segments,
        config.batch_size,
        dtype,
        device,
        chunk=int(mode.get("chunk_samples") or DEFAULT_CHUNK),
        window=int(mode.get("window_chunks") or window_for(budget, index.n_dof)),
    )
    val_segments = [Segment(n, 0, lengths[n]) for n in val_names] + [Segment(n, a, b) for n, (a, b) in blocks.items()]
    val_segments.sort(key=lambda s: names.index(s.name))  # file order, as split_samples concatenates
    val = to_tensors(index.read(val_segments), dtype, device) if val_segments else None
    stats, pieces = source.stats_arrays(STATS_SAMPLES)
    if sum(lengths.values()) <= STATS_SAMPLES:  # friction evidence on whole trajectories, as in memory
        pieces = [index.read([Segment(n, 0, lengths[n])]) for n in names]
    n_val = 0 if val is None else int(val["q"].shape[0])
    return dict(
        path=config.data,
        n_dof=index.n_dof,
        rest=[_Piece(p) for p in pieces],
        joint_types=joint_types,
        train_names=[n for n in names if n not in val_names],
        val_names=val_names,
        train_arrays=stats,
        train=to_tensors(stats, dtype, device),
        val=val,
        source=source,
        validation=describe_validation(index, val_names, blocks, n_val),
        mode=describe(mode, source),
    )


def describe(decision: Dict[str, Any], source: Optional[StreamingSource]) -> Dict[str, Any]:
    """What summary.json and data.json say about how the data was held."""
    out = dict(decision)
    if source is not None:
        out.update(
            chunk_samples=source.chunk,
            window_chunks=source.window,
            chunks=len(source.chunks),
            stream_bytes=source.memory_bytes(),
            statistics_samples=min(STATS_SAMPLES, source.n_samples),
            validation="read into memory",
        )
    return out


def line(decision: Dict[str, Any], source: Optional[StreamingSource]) -> str:
    """One printed line: how the data is held and why."""
    if source is None:
        return f"data: in memory ({decision['why']})"
    return (
        f"data: streaming from the file ({decision['why']}): chunks of {source.chunk} samples, "
        f"{source.window} per shuffling window, about {format_bytes(source.memory_bytes())} held; "
        f"validation read into memory"
    )


__all__ = ["decide", "load_streaming", "describe", "line", "budget_bytes", "index_file"]
