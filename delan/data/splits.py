"""How training splits a data set: validation blocks or whole trajectories, held-out samples,
joint types, tensors. Shared by the in-memory trainer (:mod:`delan.training`) and the streamed one
(:mod:`delan.training_streaming`), so both validate on exactly the same samples."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from delan.errors import DataError


def resolve_joint_types(config: Any, ds) -> Optional[List[str]]:
    """The joint types training uses: ``config.joint_types`` if given, else the data file's
    (None when neither says). Raises DataError for a malformed or wrong-length description."""
    if config.joint_types is not None:
        from delan.data import parse_joint_types

        return parse_joint_types(config.joint_types, ds.n_dof)
    return getattr(ds, "joint_types", None)


def choose_validation(names: Sequence[str], validation: Any, seed: int) -> List[str]:
    """Names of the whole trajectories validated on, when ``validation`` is a list of names
    (checked against the training trajectories ``names``); [] for a fraction (see
    :func:`validation_blocks`)."""
    names = list(names)
    if not isinstance(validation, (list, tuple)):
        return []
    unknown = [x for x in validation if x not in names]
    if unknown:
        raise DataError(
            f"validation trajectories {unknown} are not training trajectories; choose among: {', '.join(names)}"
        )
    if len(validation) >= len(names):
        raise DataError("validation would leave no trajectory to train on")
    return list(validation)


def validation_blocks(lengths: Dict[str, int], fraction: float, seed: int) -> Dict[str, Tuple[int, int]]:
    """One contiguous block of samples [start, stop) per trajectory, for validation.

    Each trajectory of ``lengths`` ({name: samples}) gives round(fraction * samples) consecutive
    samples at a seeded random place, so every trajectory - excitation runs and the odd swing-up
    alike - weighs in model selection by its length, and a block's neighbours in time stay out
    of it (consecutive samples are nearly copies of each other; a random sample subset would
    validate on the training data). Trajectories too short to give a block and keep 2 training
    samples give none.
    """
    rng = np.random.default_rng(seed)
    blocks: Dict[str, Tuple[int, int]] = {}
    if fraction <= 0:
        return blocks
    for name, n in lengths.items():
        k = int(round(fraction * n))
        if k < 1 or n - k < 2:
            continue
        start = int(rng.integers(0, n - k + 1))
        blocks[name] = (start, start + k)
    return blocks


def split_samples(
    ds, whole: Sequence[str], blocks: Dict[str, Tuple[int, int]]
) -> Tuple[Dict[str, np.ndarray], Optional[Dict[str, np.ndarray]]]:
    """(training, validation) arrays {"q", "qd", "qdd", "tau"} (N, n) of a Dataset: the
    trajectories named in ``whole`` and the ``blocks`` go to validation, the rest to training."""
    train: Dict[str, list] = {k: [] for k in ("q", "qd", "qdd", "tau")}
    val: Dict[str, list] = {k: [] for k in train}
    for tr in ds:
        n = len(tr)
        a, b = (0, n) if tr.name in whole else blocks.get(tr.name, (0, 0))
        for k in train:
            x = getattr(tr, k)
            val[k].append(x[a:b])
            train[k].append(np.concatenate([x[:a], x[b:]]))
    cat = lambda d: {k: np.concatenate(v) for k, v in d.items()}  # noqa: E731
    v = cat(val)
    return cat(train), (v if len(v["q"]) else None)


def to_tensors(arrays: Dict[str, np.ndarray], dtype: torch.dtype, device: str) -> Dict[str, Tensor]:
    """{"q", "qd", "qdd", "tau"} numpy (N, n) arrays (or a Dataset, concatenated) -> tensors."""
    if not isinstance(arrays, dict):
        arrays = arrays.concatenate()
    return {k: torch.as_tensor(arrays[k], dtype=dtype, device=device) for k in ("q", "qd", "qdd", "tau")}


def describe_validation(ds, whole: Sequence[str], blocks: Dict[str, Tuple[int, int]], n_val: int) -> Dict[str, Any]:
    """What validates, for data.json and summary.json: the scheme, and for time blocks each
    trajectory's sample range [start, stop) and time span."""
    if whole:
        return {"scheme": "whole trajectories", "trajectories": list(whole), "n_samples": n_val}
    if not blocks:
        return {"scheme": "none", "n_samples": 0}
    return {
        "scheme": "time blocks",
        "n_samples": n_val,
        "blocks": {
            name: {"samples": [a, b], "t": [float(ds[name].t[a]), float(ds[name].t[b - 1])]}
            for name, (a, b) in blocks.items()
        },
    }
