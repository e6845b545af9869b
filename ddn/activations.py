"""The activation registry: every activation with its first and second derivative.

An activation is used through ``act(a, order)``, which returns ``(g(a),)``, ``(g, g')`` or
``(g, g', g'')`` computed together, so that shared work (``tanh``, ``exp``, ...) is done once.
Users add their own with :func:`register_activation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

# softplus is linear beyond beta*a > this: exact to double precision, and e^40 fits float32
SOFTPLUS_THRESHOLD = 40.0

Fn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Activation:
    """A scalar nonlinearity g with its derivatives g' and g''.

    ``fused(a, order)`` may compute g and its derivatives up to ``order`` in one go; when absent,
    ``g``, ``dg`` and ``d2g`` are called separately. ``vjp(u, a, g)``, where given, returns
    u * g'(a) in one pass (torch's backward kernels): reverse-mode Jacobians then never form g'.
    """

    name: str
    g: Fn
    dg: Fn
    d2g: Fn
    fused: Optional[Callable[[Tensor, int], Tuple[Tensor, ...]]] = None
    vjp: Optional[Callable[[Tensor, Tensor, Tensor], Tensor]] = None

    def __call__(self, a: Tensor, order: int = 0) -> Tuple[Tensor, ...]:
        if self.fused is not None:
            return self.fused(a, order)
        out = (self.g(a),)
        if order >= 1:
            out += (self.dg(a),)
        if order >= 2:
            out += (self.d2g(a),)
        return out

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


_REGISTRY: Dict[str, Callable[..., Activation]] = {}


def register_activation(
    name: str,
    g: Optional[Fn] = None,
    dg: Optional[Fn] = None,
    d2g: Optional[Fn] = None,
    *,
    factory: Optional[Callable[..., Activation]] = None,
    overwrite: bool = False,
) -> None:
    """Add an activation to the registry under a lowercase ``name``.

    Either give ``g``, ``dg`` and ``d2g`` (elementwise torch functions), or a ``factory`` taking
    keyword options (like softplus's ``beta``) and returning an :class:`Activation`.
    """
    key = name.lower()
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"activation {key!r} is already registered (pass overwrite=True to replace it)")
    if factory is None:
        if g is None or dg is None or d2g is None:
            raise ValueError("register_activation needs g, dg and d2g, or a factory")
        act = Activation(key, g, dg, d2g)

        def factory() -> Activation:  # noqa: F811 - options-free activation
            return act

    _REGISTRY[key] = factory


def available_activations() -> Tuple[str, ...]:
    """Names of all registered activations, sorted."""
    return tuple(sorted(_REGISTRY))


def get_activation(spec: Union[str, Activation], **options) -> Activation:
    """Look up an activation by name (with options such as ``beta`` for softplus)."""
    if isinstance(spec, Activation):
        if options:
            raise ValueError("options are only accepted together with an activation name")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"activation must be a name or an Activation, got {type(spec).__name__}")
    key = spec.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown activation {spec!r}; valid: {', '.join(available_activations())}")
    try:
        return _REGISTRY[key](**options)
    except TypeError as exc:
        raise ValueError(f"bad options {options} for activation {key!r}: {exc}") from None


# --------------------------------------------------------------------------- built-ins
def _fused(f: Callable[[Tensor, int], Tuple[Tensor, ...]], name: str, vjp=None) -> Activation:
    """An activation defined only through its fused form; g, dg, d2g are derived from it."""
    return Activation(
        name,
        g=lambda a: f(a, 0)[0],
        dg=lambda a: f(a, 1)[1],
        d2g=lambda a: f(a, 2)[2],
        fused=f,
        vjp=vjp,
    )


_VJPS = {
    "tanh": lambda u, a, g: torch.ops.aten.tanh_backward(u, g),
    "sigmoid": lambda u, a, g: torch.ops.aten.sigmoid_backward(u, g),
}


def _upto(order: int, *terms: Callable[[], Tensor]) -> Tuple[Tensor, ...]:
    """Evaluate only the derivatives asked for (each term is a thunk)."""
    return tuple(t() for t in terms[: order + 1])


def _linear(a: Tensor, order: int):
    return _upto(order, lambda: a, lambda: torch.ones_like(a), lambda: torch.zeros_like(a))


def _relu(a: Tensor, order: int):
    # g'' is zero almost everywhere: ReLU networks have zero Hessian, exactly as autograd says.
    if order == 0:
        return (torch.relu(a),)
    step = (a > 0).to(a.dtype)
    return _upto(order, lambda: a * step, lambda: step, lambda: torch.zeros_like(a))


def _tanh(a: Tensor, order: int):
    t = torch.tanh(a)
    if order == 0:
        return (t,)
    d = 1.0 - t * t
    return _upto(order, lambda: t, lambda: d, lambda: -2.0 * t * d)


def _sigmoid(a: Tensor, order: int):
    s = torch.sigmoid(a)
    if order == 0:
        return (s,)
    d = s * (1.0 - s)
    return _upto(order, lambda: s, lambda: d, lambda: d * (1.0 - 2.0 * s))


def _cos(a: Tensor, order: int):
    c = torch.cos(a)
    return _upto(order, lambda: c, lambda: -torch.sin(a), lambda: -c)


def _sin(a: Tensor, order: int):
    s = torch.sin(a)
    return _upto(order, lambda: s, lambda: torch.cos(a), lambda: -s)


def _quad(a: Tensor, order: int):
    r = torch.relu(a)
    return _upto(order, lambda: 0.5 * r * r, lambda: r, lambda: (a > 0).to(a.dtype))


def _cubic(a: Tensor, order: int):
    r = torch.relu(a)
    r2 = r * r
    return _upto(order, lambda: r2 * r / 6.0, lambda: 0.5 * r2, lambda: r)


def _silu(a: Tensor, order: int):
    s = torch.sigmoid(a)
    if order == 0:
        return (a * s,)
    ds = s * (1.0 - s)
    return _upto(order, lambda: a * s, lambda: s + a * ds, lambda: ds * (2.0 + a * (1.0 - 2.0 * s)))


def _softplus_factory(beta: float = 1.0) -> Activation:
    if not beta > 0:
        raise ValueError(f"softplus beta must be positive, got {beta}")
    beta = float(beta)

    def f(a: Tensor, order: int):
        # torch's softplus is linear beyond beta*a > threshold; at 40 that is exact to double
        # precision (log(1 + e^-40) ~ 4e-18) and e^40 still fits float32, so no overflow
        y = F.softplus(a, beta=beta, threshold=SOFTPLUS_THRESHOLD)
        if order == 0:
            return (y,)
        s = torch.sigmoid(a if beta == 1.0 else beta * a)
        if order == 1:
            return (y, s)
        d = s * (1.0 - s)
        return (y, s, d if beta == 1.0 else beta * d)

    def vjp(u: Tensor, a: Tensor, g: Tensor) -> Tensor:
        return torch.ops.aten.softplus_backward(u, a, beta, SOFTPLUS_THRESHOLD)

    return _fused(f, "softplus" if beta == 1.0 else f"softplus(beta={beta:g})", vjp)


def _elu_factory(alpha: float = 1.0) -> Activation:
    alpha = float(alpha)

    def f(a: Tensor, order: int):
        neg = a <= 0
        e = alpha * torch.exp(torch.clamp(a, max=0.0))  # clamp: no overflow in the unused branch
        return _upto(
            order,
            lambda: torch.where(neg, e - alpha, a),
            lambda: torch.where(neg, e, torch.ones_like(a)),
            lambda: torch.where(neg, e, torch.zeros_like(a)),
        )

    return _fused(f, "elu" if alpha == 1.0 else f"elu(alpha={alpha:g})")


for _name, _f in [
    ("linear", _linear),
    ("relu", _relu),
    ("tanh", _tanh),
    ("sigmoid", _sigmoid),
    ("cos", _cos),
    ("sin", _sin),
    ("quad", _quad),
    ("cubic", _cubic),
    ("silu", _silu),
]:
    register_activation(_name, factory=(lambda f=_f, n=_name: _fused(f, n, _VJPS.get(n))))
register_activation("softplus", factory=_softplus_factory)
register_activation("elu", factory=_elu_factory)

# Activations whose second derivative is zero almost everywhere (tests of Hessian-based
# models skip them; they are still exact).
PIECEWISE_LINEAR = frozenset({"linear", "relu"})
del _name, _f, math
