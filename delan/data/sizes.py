"""Memory estimates, checked before any work starts, and plain number formatting for messages.

Every command that can be asked for more than a machine holds (a model's width and depth, a
generated data set's rate x duration x trajectories, a rollout's steps) estimates the memory
first and refuses what exceeds :func:`memory_limit` with one line naming the option and the
estimate, instead of failing minutes later in an allocation (or being killed by the system).

The limit is half of this machine's physical memory; the environment variable
``DELAN_MEMORY_LIMIT`` (bytes, or with a unit: ``8G``, ``500M``) sets another.
"""

from __future__ import annotations

import math
import os
from typing import Optional

from delan.errors import OptionError

_UNITS = {
    "": 1,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "TB": 1e12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def format_number(x) -> str:
    """A number as a person writes it: 0.016, 1e+09, NaN, inf (never ``np.float64(0.016)``)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.6g}"


def format_bytes(n: float) -> str:
    """4.0 TB, 37 GB, 512 MB (decimal units)."""
    n = float(n)
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            v = n / size
            return f"{v:.2g} {unit}" if v < 10 else f"{v:.0f} {unit}"
    return f"{n:.0f} bytes"


def physical_memory() -> Optional[int]:
    """Bytes of physical memory of this machine (None where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _parse_bytes(text: str) -> Optional[float]:
    s = text.strip().upper().replace(" ", "")
    num = s.rstrip("KMGTIB")
    unit = s[len(num) :]
    try:
        value = float(num) * _UNITS[unit]
    except (ValueError, KeyError):
        return None
    return value if value > 0 and math.isfinite(value) else None


def memory_limit() -> float:
    """Bytes a single command may plan to use: ``DELAN_MEMORY_LIMIT`` if set (and valid), else
    half of the physical memory (8 GB where the system does not say)."""
    env = os.environ.get("DELAN_MEMORY_LIMIT")
    if env:
        value = _parse_bytes(env)
        if value is None:
            raise OptionError(f"DELAN_MEMORY_LIMIT={env!r}: expected a number of bytes such as 8G or 500M")
        return value
    phys = physical_memory()
    return phys / 2 if phys else 8e9


def _limit_text() -> str:
    if os.environ.get("DELAN_MEMORY_LIMIT"):
        return f"the limit of {format_bytes(memory_limit())} (DELAN_MEMORY_LIMIT)"
    phys = physical_memory()
    where = f"half of this machine's {format_bytes(phys)}" if phys else "the default limit"
    return f"{format_bytes(memory_limit())} ({where})"


def check_memory(estimate: float, what: str, hint: str = "", error=OptionError) -> None:
    """Raise ``error`` (one line) when ``estimate`` bytes exceed :func:`memory_limit`.

    ``what`` names the options and their values, e.g. "--width 1000000 with --depth 2";
    ``hint`` says what to change.
    """
    if not (estimate <= memory_limit()):  # also catches an estimate of inf or NaN
        size = format_bytes(estimate) if math.isfinite(estimate) else "an unbounded amount"
        raise error(
            f"{what} would need about {size} of memory, more than {_limit_text()}" + (f"; {hint}" if hint else "")
        )


# -- estimates -------------------------------------------------------------------------------
def network_parameters(n_in: int, n_out: int, width: int, depth: int) -> float:
    """Weights and biases of a fully connected network (floats, so huge sizes do not overflow)."""
    w, d = float(width), float(depth)
    return n_in * w + w + (d - 1) * (w * w + w) + w * n_out + n_out


def model_bytes(n_dof: int, width: int, depth: int, batch: int, dtype_bytes: int = 4) -> float:
    """Memory to train a model of ``width`` x ``depth`` on ``batch`` samples of ``n_dof`` joints.

    Generous on purpose (it only has to tell what can possibly fit from what cannot): two networks
    (the structured DeLaN's L and V) with inputs sin q, cos q and outputs the n(n+1)/2 entries of L;
    parameters x 4 (weights, gradients, two Adam moments); per sample and layer the value, Jacobian
    and Hessian of every unit (the black-box model's second derivatives), x 3 for what autograd keeps.
    """
    n_in = 2 * n_dof
    params = 2 * network_parameters(n_in, n_dof * (n_dof + 1) // 2, width, depth)
    activations = 3.0 * batch * depth * width * (1 + n_in + n_in * n_in)
    return float(dtype_bytes) * (4 * params + activations)


def dataset_bytes(n_dof: int, samples: float, simulate_substeps: int = 0) -> float:
    """Memory to generate ``samples`` samples (all trajectories together) of ``n_dof`` joints.

    Per sample: t, q, qd, qdd, tau and four torque terms (n each) and H (n x n), float64, about
    three copies at the peak (torch results, numpy copies, the dataset); a simulated run also
    keeps the reference on the half-step grid and per-step tensors of the rollout.
    """
    per = 8.0 * (1 + 8 * n_dof + n_dof * n_dof) * 3
    if simulate_substeps:
        per += simulate_substeps * (2 * 3 * 8.0 * n_dof + ROLLOUT_STEP_BYTES)
    return samples * per


# Peak memory of `delan simulate` per step, measured (two-link model against the true system:
# +5.6 MB for 2000 more steps): python floats and per-step tensors of both integrations, numpy copies.
ROLLOUT_STEP_BYTES = 3000.0


def rollout_bytes(steps: float, n_dof: int, trajectories: int = 1) -> float:
    """Memory of a rollout of ``steps`` steps (model and reference)."""
    return float(steps) * trajectories * (ROLLOUT_STEP_BYTES + 16 * 8.0 * n_dof)
