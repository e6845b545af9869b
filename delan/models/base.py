"""Plumbing shared by the learned models: config, dtype/device of parameters, input checks."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

import ddn
from delan.dynamics import Dynamics, as_batch

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_dtype(dtype: Union[None, str, torch.dtype]) -> Optional[torch.dtype]:
    """A torch dtype from a dtype or its name ("float64", "torch.float64"); None stays None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).replace("torch.", "")
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    return DTYPES[key]


def dtype_name(dtype: Optional[torch.dtype]) -> Optional[str]:
    return None if dtype is None else str(dtype).replace("torch.", "")


def revolute_mask(revolute: Optional[Sequence[bool]], n_dof: int) -> Optional[Tuple[bool, ...]]:
    """Validate a per-joint revolute mask; None (or all False) means no angle features."""
    if revolute is None:
        return None
    mask = tuple(bool(r) for r in revolute)
    if len(mask) != n_dof:
        raise ValueError(f"revolute must have one entry per joint ({n_dof}), got {len(mask)}")
    return mask if any(mask) else None


def lagrangian_options(
    n_dof: int, activation: str, revolute: Optional[Sequence[bool]], dtype: Union[None, str, torch.dtype]
) -> Tuple[int, Optional[torch.dtype], Optional[Tuple[bool, ...]]]:
    """Validate the options both Lagrangian models share: (n_dof, torch dtype, revolute mask)."""
    n = int(n_dof)
    if n < 1:
        raise ValueError(f"n_dof must be >= 1, got {n_dof}")
    if not isinstance(activation, str):
        raise ValueError("activation must be a registry name (see ddn.available_activations())")
    return n, resolve_dtype(dtype), revolute_mask(revolute, n)


def scalar_network_of_state(
    n_dof: int, mask: Optional[Tuple[bool, ...]], device: Any = None, **network: Any
) -> Tuple[Optional[ddn.AngleFeatures], ddn.DifferentialNetwork]:
    """(features, network) of a model that is one scalar of the whole state z = (q, s), s the
    velocity (black-box Lagrangian) or the scaled momentum (black-box Hamiltonian), n_dof entries
    each: revolute angles enter as (sin, cos), s as it is. ``network``: DifferentialNetwork options."""
    features = None if mask is None else ddn.AngleFeatures(list(mask) + [False] * n_dof).to(device)
    n_in = 2 * n_dof if features is None else features.n_features
    return features, ddn.DifferentialNetwork(n_in, 1, device=device, **network)


class LearnedModel(nn.Module, Dynamics):
    """Base of the learned models: an ``nn.Module`` implementing :class:`delan.Dynamics`.

    Subclasses store their constructor arguments in ``self._config`` (JSON-friendly values), which
    :func:`delan.save_model` writes next to the weights.
    """

    n_dof: int
    _config: Dict[str, Any]

    @property
    def config(self) -> Dict[str, Any]:
        """Every constructor argument, as plain Python values (enough to rebuild the model)."""
        return dict(self._config)

    def _param(self) -> Tensor:
        """A tensor with the model's dtype and device (subclasses return a buffer, cheaply)."""
        return next(self.parameters())

    def single_sample_inverse_dynamics(self):
        """An explicit fast callable for one state (NumPy (n,) in and out); only the structured
        DeLaN has one. Raises NoFastPathError here."""
        from delan.errors import NoFastPathError

        raise NoFastPathError(
            f"{type(self).__name__} has no single-sample fast path (only the structured "
            f"DeLaN, model kind 'structured', has one); use model.inverse_dynamics"
        )

    def _check(self, x: Tensor, name: str) -> Tensor:
        """(B, n) or (n,) -> (B, n) with the model's dtype and device, else ValueError."""
        n = self.n_dof
        x = as_batch(x, n, name)
        p = self._param()
        if x.dtype != p.dtype:
            raise ValueError(f"{name} must be a (B, {n}) tensor of dtype {p.dtype} (the model's), got {x.dtype}")
        if x.device != p.device:
            raise ValueError(f"{name} must be a (B, {n}) tensor on {p.device} (the model's device), got {x.device}")
        return x

    def _inputs(self, **named: Optional[Tensor]) -> Tuple[Optional[Tensor], ...]:
        """Check each named (B, n) input and broadcast batch sizes of 1 to the common batch."""
        xs = {k: None if v is None else self._check(v, k) for k, v in named.items()}
        # a list, not a set: under torch.export a dynamic batch size is a SymInt, which is unhashable
        sizes = [v.shape[0] for v in xs.values() if v is not None]
        if all(s == sizes[0] for s in sizes[1:]):
            return tuple(xs.values())
        batch = max(sizes)
        for k, v in xs.items():
            if v is not None and v.shape[0] != batch:
                if v.shape[0] != 1:
                    others = ", ".join(f"{a}: {b.shape[0]}" for a, b in xs.items() if b is not None)
                    raise ValueError(
                        f"{k} must have shape ({batch}, {self.n_dof}) to match the other inputs (batch sizes {others})"
                    )
                xs[k] = v.expand(batch, -1)
        return tuple(xs.values())
