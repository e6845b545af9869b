"""Training batches streamed from a data file that does not fit in memory.

:class:`StreamingSource` reads the training samples of an HDF5 data file (the schema of
datasets/README.md) in chunks of consecutive samples, never holding more than a few windows of
them. Each epoch:

1. the chunks (pieces of at most ``chunk`` samples of a trajectory's training part: test
   trajectories and validation blocks never enter) are put in a seeded random order;
2. consecutive ``window`` chunks of that order are read together and their samples shuffled
   within the window (a sample can only land next to samples of the same window: the price of
   not holding the file, which :func:`delan.training` users choose with ``--max-memory``);
3. minibatches of ``batch_size`` are cut from the resulting stream (they run across window
   boundaries, so every batch but the epoch's last is full) and handed out as the tensors the
   in-memory trainer uses: {"q", "qd", "qdd", "tau"} (B, n).

While the trainer steps on one window, a background thread reads and shuffles the next (h5py
decompresses; torch releases the GIL in its kernels, so both make progress). The order depends
on the epoch's seed alone, so an epoch is reproducible, and a run stopped inside an epoch goes on
from the same sample (``start``). Every training sample comes exactly once per epoch.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from delan.errors import DataError

FIELDS = ("q", "qd", "qdd", "tau")
DEFAULT_CHUNK = 16384  # samples per chunk: big enough that HDF5 reads are sequential and cheap
DEFAULT_WINDOW = 16  # chunks shuffled together
# bytes a training sample takes in memory at float64 per joint and field (file dtype)
_F64 = 8


def keep_heap_flat(threshold: int = 256 * 1024) -> bool:
    """Have glibc serve blocks of ``threshold`` bytes and more from fresh mappings, returned to
    the system when freed. Its default raises that threshold each time such a block is freed, after
    which every window or piece of a large file lands on the heap, which fragments and grows
    (generating a 10^7-sample file peaked at 4.6 GB of RSS, 357 MB for 30 trajectories instead of
    791 MB with this). No-op (False) off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, int(threshold)))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class Segment:
    """Samples [start, stop) of trajectory ``name`` (a contiguous piece of training data)."""

    name: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def training_segments(
    lengths: Dict[str, int], whole_validation: Sequence[str], blocks: Dict[str, Tuple[int, int]]
) -> List[Segment]:
    """The contiguous training parts of the trajectories ``lengths`` ({name: samples}, test
    trajectories already left out) in file order: all of each, but for trajectories validated
    on whole and the validation block [a, b) of the others (same rule as
    :func:`delan.training.split_samples`)."""
    out: List[Segment] = []
    for name, n in lengths.items():
        if name in whole_validation:
            continue
        a, b = blocks.get(name, (0, 0))
        for s, e in ((0, a), (b, n)):
            if e > s:
                out.append(Segment(name, s, e))
    return out


def split_chunks(segments: Sequence[Segment], chunk: int) -> List[Segment]:
    """``segments`` cut into pieces of at most ``chunk`` samples (order kept)."""
    out: List[Segment] = []
    for seg in segments:
        for s in range(seg.start, seg.stop, chunk):
            out.append(Segment(seg.name, s, min(s + chunk, seg.stop)))
    return out


class StreamingSource:
    """Minibatches of the training samples of ``path``, read in chunks (see the module).

    Args:
        path: the HDF5 data file; every trajectory used must store q, qd, qdd and tau
            (derivatives estimated on loading need the whole trajectory: stream files written by
            ``delan generate`` or ``delan data import``, which store them).
        segments: the training samples (:func:`training_segments`).
        batch_size: samples per global minibatch.
        dtype, device: of the tensors handed out.
        chunk: samples per chunk; window: chunks shuffled together.
        prefetch: read the next window in a background thread.
    """

    def __init__(
        self,
        path: str,
        segments: Sequence[Segment],
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
        chunk: int = DEFAULT_CHUNK,
        window: int = DEFAULT_WINDOW,
        prefetch: bool = True,
    ) -> None:
        if chunk < 1 or window < 1 or batch_size < 1:
            raise DataError(
                f"streaming: chunk ({chunk}), window ({window}) and batch size ({batch_size}) must be positive"
            )
        self.path = path
        self.segments = list(segments)
        self.chunks = split_chunks(self.segments, chunk)
        self.batch_size = int(batch_size)
        self.dtype, self.device = dtype, device
        self.chunk, self.window, self.prefetch = int(chunk), int(window), bool(prefetch)
        self.n_samples = sum(len(c) for c in self.chunks)
        self._file_order: Dict[str, int] = {}
        for seg in self.segments:
            self._file_order.setdefault(seg.name, len(self._file_order))
        if self.n_samples == 0:
            raise DataError(f"{path}: no training samples left to stream")
        self._file = None
        self._lock = threading.Lock()  # h5py objects are not to be used from two threads at once
        self._check_fields()
        keep_heap_flat()

    # -- the file ----------------------------------------------------------------------------
    def _open(self):
        if self._file is None:
            import h5py

            try:
                # a chunk cache big enough for one chunk of every field of the gzip-compressed datasets
                self._file = h5py.File(self.path, "r", rdcc_nbytes=64 * 2**20)
            except OSError as exc:
                raise DataError(f"{self.path}: not a readable HDF5 file: {exc}") from None
        return self._file

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def _check_fields(self) -> None:
        f = self._open()
        self.n_dof = int(f.attrs["n_dof"])
        for name in sorted({c.name for c in self.chunks}):
            g = f["trajectories"][name]
            for k in FIELDS:
                if k not in g:
                    raise DataError(
                        f"{self.path}: trajectory {name!r}: field {k!r} is not stored; streaming needs "
                        f"q, qd, qdd and tau in the file (estimating derivatives needs the whole "
                        f"trajectory in memory); write the file with `delan data import`"
                    )

    def read(self, chunks: Sequence[Segment]) -> Dict[str, np.ndarray]:
        """The samples of ``chunks`` concatenated: {"q", "qd", "qdd", "tau"} float64 (N, n).
        DataError naming the trajectory and field for values that are not finite."""
        out = {k: [] for k in FIELDS}
        with self._lock:
            f = self._open()
            for c in chunks:
                g = f["trajectories"][c.name]
                for k in FIELDS:
                    x = np.asarray(g[k][c.start : c.stop], dtype=np.float64)
                    if not np.isfinite(x).all():
                        bad = c.start + int(np.argwhere(~np.isfinite(x))[0][0])
                        raise DataError(f"{self.path}: trajectory {c.name!r}: field {k!r}: sample {bad} is not finite")
                    out[k].append(x)
        return {k: np.concatenate(v) for k, v in out.items()}

    # -- the order of an epoch ---------------------------------------------------------------
    def _windows(self, seed: int) -> List[List[int]]:
        order = np.random.default_rng([int(seed), 0]).permutation(len(self.chunks))
        return [list(order[i : i + self.window]) for i in range(0, len(order), self.window)]

    def _window_tensors(self, seed: int, w: int, members: List[int]) -> Dict[str, Tensor]:
        arrays = self.read([self.chunks[i] for i in members])
        n = len(arrays["q"])
        perm = np.random.default_rng([int(seed), 1, w]).permutation(n)
        return {k: torch.as_tensor(v[perm], dtype=self.dtype).to(self.device) for k, v in arrays.items()}

    def order(self, seed: int) -> List[Tuple[str, int]]:
        """(trajectory, sample) of every training sample in the order epoch ``seed`` hands them out
        (for tests and inspection; reads nothing)."""
        out: List[Tuple[str, int]] = []
        for w, members in enumerate(self._windows(seed)):
            ids = [(self.chunks[i].name, s) for i in members for s in range(self.chunks[i].start, self.chunks[i].stop)]
            perm = np.random.default_rng([int(seed), 1, w]).permutation(len(ids))
            out.extend(ids[j] for j in perm)
        return out

    def batches(self, seed: int, start: int = 0) -> Iterator[Tuple[int, Dict[str, Tensor]]]:
        """(position of the batch's first sample in the epoch, batch) for the epoch of ``seed``,
        from sample ``start`` on (a multiple of the batch size: where a stopped epoch goes on).
        Windows wholly before ``start`` are not read."""
        windows = self._windows(seed)
        sizes = [sum(len(self.chunks[i]) for i in m) for m in windows]
        begin = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        first = int(np.searchsorted(begin, start, side="right") - 1) if start < self.n_samples else len(windows)
        todo = list(range(first, len(windows)))
        pending: List[Dict[str, Tensor]] = []  # pieces of the stream not yet handed out
        pos = start
        skip = start - int(begin[first]) if todo else 0
        for _w, data in self._produce(seed, windows, todo):
            if skip:
                data = {k: v[skip:] for k, v in data.items()}
                skip = 0
            pending.append(data)
            have = sum(p["q"].shape[0] for p in pending)
            if have < self.batch_size:
                continue
            buf = {k: torch.cat([p[k] for p in pending]) if len(pending) > 1 else pending[0][k] for k in FIELDS}
            full = (have // self.batch_size) * self.batch_size
            for i in range(0, full, self.batch_size):
                yield pos, {k: v[i : i + self.batch_size] for k, v in buf.items()}
                pos += self.batch_size
            pending = [{k: v[full:] for k, v in buf.items()}] if have > full else []
        if pending:
            yield pos, {k: torch.cat([p[k] for p in pending]) for k in FIELDS}

    def _produce(self, seed: int, windows: List[List[int]], todo: List[int]) -> Iterator[Tuple[int, Dict[str, Tensor]]]:
        """The windows ``todo`` in order, each read and shuffled; with prefetch, one ahead in a thread."""
        if not self.prefetch or len(todo) <= 1:
            for w in todo:
                yield w, self._window_tensors(seed, w, windows[w])
            return
        q: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()

        def work() -> None:
            for w in todo:
                if stop.is_set():
                    return
                try:
                    item = (w, self._window_tensors(seed, w, windows[w]), None)
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                    item = (w, None, exc)
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if item[2] is not None:
                    return

        thread = threading.Thread(target=work, name="delan-prefetch", daemon=True)
        thread.start()
        try:
            for _ in todo:
                w, data, exc = q.get()
                if exc is not None:
                    raise exc
                yield w, data
        finally:
            stop.set()
            thread.join()

    def stats_arrays(self, max_samples: int = 2**18) -> Tuple[Dict[str, np.ndarray], List[Dict[str, np.ndarray]]]:
        """Training data for the statistics the trainer takes from it (loss scales, output scales,
        friction evidence): all of it when it has at most ``max_samples`` samples (then the same
        arrays, in the same order, as in memory), else whole chunks in a fixed random choice up to
        about that many. Returns (concatenated arrays, per contiguous piece arrays)."""
        if self.n_samples <= max_samples:
            pieces = list(self.segments)
        else:
            order = np.random.default_rng(12345).permutation(len(self.chunks))
            pieces, total = [], 0
            for i in order:
                if total >= max_samples:
                    break
                pieces.append(self.chunks[i])
                total += len(self.chunks[i])
            pieces.sort(key=lambda c: (self._file_order[c.name], c.start))
        per = [self.read([p]) for p in pieces]
        cat = {k: np.concatenate([p[k] for p in per]) for k in FIELDS}
        return cat, per

    def memory_bytes(self) -> float:
        """Peak bytes of samples this source holds: two windows (one in use, one read ahead; at
        most the whole training data), each as float64 read and its shuffled copy."""
        held = min(self.n_samples, 2 * self.window * self.chunk)
        return 2.0 * held * len(FIELDS) * self.n_dof * _F64


def shard(batch: Dict[str, Tensor], rank: int, world: int) -> Dict[str, Tensor]:
    """Rank ``rank``'s part of a global minibatch: its ``rank``-th of ``world`` contiguous slices
    (sizes differ by at most one; a rank may get none of a tiny last batch)."""
    if world == 1:
        return batch
    n = next(iter(batch.values())).shape[0]
    a, b = rank * n // world, (rank + 1) * n // world
    return {k: (v[a:b] if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n else v) for k, v in batch.items()}


def epoch_seed(generator: torch.Generator) -> int:
    """A seed for an epoch's streaming order, drawn from the trainer's shuffling generator (so
    it is checkpointed and resumed with it)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def in_memory_bytes(n_samples: float, n_dof: int, dtype_bytes: int = 4) -> float:
    """Memory to train in memory on ``n_samples``: the float64 arrays read from the file (about two
    copies at the peak: per-trajectory arrays and the concatenation) and the training tensors."""
    return n_samples * len(FIELDS) * n_dof * (2 * _F64 + dtype_bytes)


@dataclass
class FileIndex:
    """What the trainer needs to know of a data file before streaming it, read without loading
    its arrays: n_dof, joint types, and the trajectories' names and lengths in file order."""

    path: str
    n_dof: int
    joint_types: Optional[List[str]]
    lengths: Dict[str, int]

    @property
    def names(self) -> List[str]:
        return list(self.lengths)

    @property
    def n_samples(self) -> int:
        return sum(self.lengths.values())

    def __getitem__(self, name: str) -> _LazyTrajectory:
        """``index[name].t[i]``: one time stamp, read when asked for (as a Dataset answers it)."""
        if name not in self.lengths:
            raise KeyError(name)
        return _LazyTrajectory(self.path, name)

    def read(self, segments: Sequence[Segment]) -> Dict[str, np.ndarray]:
        """The samples of ``segments`` concatenated, {"q", "qd", "qdd", "tau"} float64 (N, n)."""
        src = StreamingSource.__new__(StreamingSource)
        src.path, src._file, src._lock = self.path, None, threading.Lock()
        try:
            return src.read(segments)
        finally:
            src.close()


class _LazyTrajectory:
    def __init__(self, path: str, name: str) -> None:
        self.path, self.name = path, name

    @property
    def t(self) -> _LazyTrajectory:
        return self

    def __getitem__(self, i: int) -> float:
        import h5py

        with h5py.File(self.path, "r") as f:
            return float(f["trajectories"][self.name]["t"][int(i)])


def index_file(path: str) -> FileIndex:
    """The :class:`FileIndex` of a data file, after the checks of the schema that need no arrays
    (format, version, n_dof, joint types, every trajectory a group with t, q, tau of matching
    length). DataError (one line, naming the file) otherwise."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {exc}") from None
    try:
        with f:
            n, jt, lengths = _index_open_file(f, path)
    except DataError:
        raise
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        # libhdf5 reports damaged metadata (bad checksums, broken links) as these while reading
        raise DataError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {exc}") from None
    return FileIndex(path, n, jt, lengths)


def _index_open_file(f, path: str):
    """(n_dof, joint types, {trajectory: samples}) of an open data file; DataError on a schema
    violation that needs no arrays to see."""
    import h5py

    from delan.data.schema import FORMAT, VERSION, _attr_str, check_joint_types

    if _attr_str(f.attrs.get("format", b"")) != FORMAT or int(f.attrs.get("version", -1)) != VERSION:
        raise DataError(f"{path}: not a DeLaN data file of version {VERSION}")
    n = int(f.attrs["n_dof"])
    jt = f.attrs.get("joint_types")
    jt = None if jt is None else check_joint_types([_attr_str(x) for x in np.atleast_1d(jt)], n, path)
    lengths: Dict[str, int] = {}
    group = f.get("trajectories")
    if not isinstance(group, h5py.Group) or len(group) == 0:
        raise DataError(f"{path}: group '/trajectories' is missing or empty")
    for name, g in group.items():
        if not isinstance(g, h5py.Group):
            raise DataError(f"{path}: trajectory {name!r}: expected a group, got an array")
        for k in ("t", "q", "tau"):
            if k not in g:
                raise DataError(f"{path}: trajectory {name!r}: field {k!r}: required field is missing")
        for k in ("t",) + tuple(FIELDS):
            if k in g and not isinstance(g[k], h5py.Dataset):
                raise DataError(f"{path}: trajectory {name!r}: field {k!r}: expected an array, got a group")
        T = g["t"].shape[0] if g["t"].ndim else 0
        for k in FIELDS:
            if k in g and tuple(g[k].shape) != (T, n):
                raise DataError(
                    f"{path}: trajectory {name!r}: field {k!r}: expected shape (T, n_dof) = "
                    f"({T}, {n}), got {tuple(g[k].shape)}"
                )
        lengths[name] = int(T)
    return n, jt, lengths
