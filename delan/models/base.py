"""Plumbing shared by the learned models: config, dtype/device of parameters, input checks."""

from __future__ import annotations

import inspect
import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, TypedDict, Union

import torch
from torch import Tensor, nn

import ddn
from delan.dynamics import Dynamics, as_batch
from delan.errors import IndefiniteMassMatrixError

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


class NetworkOptions(TypedDict, total=False):
    """The options of a learned model's ``ddn.DifferentialNetwork`` (s), given to every model's
    constructor as keywords; defaults in :data:`NETWORK_DEFAULTS`."""

    width: int  # units per hidden layer
    depth: int  # hidden layers
    activation: str  # registry name, see ddn.available_activations()
    activation_options: Optional[Dict[str, Any]]  # of a named activation, e.g. {"beta": 2.0}
    init: str  # weight initialisation of the hidden layers (ddn.init_linear)
    gain: float  # its gain
    output_gain: float  # initialisation gain of the output layer(s)


# one place for the defaults of every model's network options, and for the plain (JSON) type each
# is stored as in the model's config
NETWORK_DEFAULTS: NetworkOptions = dict(
    width=64, depth=2, activation="softplus", activation_options=None, init="xavier_normal", gain=1.0, output_gain=1.0
)
_NETWORK_TYPES = dict(
    width=int, depth=int, activation=str, activation_options=dict, init=str, gain=float, output_gain=float
)


def network_options(model: str, given: Mapping[str, Any]) -> Dict[str, Any]:
    """The network options of a ``model`` (class name, for messages) constructed with keywords
    ``given``: defaults filled in, values plain; an unknown keyword is a TypeError as for any
    Python function."""
    unknown = sorted(set(given) - set(NETWORK_DEFAULTS))
    if unknown:
        raise TypeError(f"{model}() got an unexpected keyword argument {unknown[0]!r}")
    if not isinstance(given.get("activation", ""), str):
        raise ValueError("activation must be a registry name (see ddn.available_activations())")
    merged = {**NETWORK_DEFAULTS, **given}
    return {k: None if v is None else _NETWORK_TYPES[k](v) for k, v in merged.items()}


def state_options(
    n_dof: int, revolute: Optional[Sequence[bool]], dtype: Union[None, str, torch.dtype]
) -> Tuple[int, Optional[torch.dtype], Optional[Tuple[bool, ...]]]:
    """Validate the options every model shares: (n_dof, torch dtype, revolute mask)."""
    n = int(n_dof)
    if n < 1:
        raise ValueError(f"n_dof must be >= 1, got {n_dof}")
    return n, resolve_dtype(dtype), revolute_mask(revolute, n)


def positive_number(name: str, value: float) -> float:
    """``value`` as a float, or ValueError naming the option ``name`` when it is not finite and > 0."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value}")
    return float(value)


def scales_per_joint(name: str, values: Optional[Sequence[float]], n_dof: int) -> Optional[list]:
    """``values`` as n_dof positive floats (None stays None), or ValueError naming ``name``."""
    if values is None:
        return None
    values = [float(x) for x in values]
    if len(values) != n_dof or not all(math.isfinite(x) and x > 0 for x in values):
        raise ValueError(f"{name} must be {n_dof} positive numbers, got {values}")
    return values


def checked_cholesky(M: Tensor, problem: str) -> Tensor:
    """The Cholesky factor of the batch M (B, n, n), or IndefiniteMassMatrixError with the message
    ``problem`` (a format string: ``{bad}`` of ``{total}`` states are not positive definite)."""
    chol, info = torch.linalg.cholesky_ex(M)
    bad = int((info > 0).sum())
    if bad:
        raise IndefiniteMassMatrixError(problem.format(bad=bad, total=M.shape[0]))
    return chol


def _plain(value: Any) -> Any:
    """A constructor argument as a JSON-friendly value (config.json)."""
    if isinstance(value, torch.dtype):
        return dtype_name(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value.item() if hasattr(value, "item") else value


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

    def _record_config(self, arguments: Mapping[str, Any], network: Mapping[str, Any], **validated: Any) -> None:
        """``self._config``: the constructor's named arguments taken from ``arguments`` (its
        ``locals()``), then the network options, then the ``validated`` values that replace the
        arguments as given (n_dof as an int, the dtype's name, ...); device is not recorded."""
        names = [
            name
            for name, p in inspect.signature(type(self).__init__).parameters.items()
            if p.kind is p.POSITIONAL_OR_KEYWORD and name not in ("self", "device")
        ]
        self._config = {name: _plain(arguments[name]) for name in names}
        self._config.update(network, **{k: _plain(v) for k, v in validated.items()})

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
