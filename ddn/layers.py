"""Differential layers: each maps a :class:`~ddn.jet.Jet` (h, dh/dx, d2h/dx2) to the next.

Layers compose freely, so models can chain feature maps in front of a network or put several
heads on one shared trunk. The chain rule per layer (forward mode):

* affine  a = h W^T + b:     da = dh W^T,          d2a = d2h W^T
* elementwise  z = g(a):     dz = g'(a) da,        d2z_ij = g'(a) d2a_ij + g''(a) da_i da_j

The Hessian is kept once per pair i <= j (symmetry halves the work), and derivative rows go
through one matrix product per layer.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ddn.activations import Activation, get_activation
from ddn.init import init_linear
from ddn.jet import Jet, pair_indices


class DifferentialLinear(nn.Module):
    """Affine layer a = h W^T + b acting on jets. weight (out, in), bias (out,)."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        init: str = "xavier_normal",
        gain: float = 1.0,
        bias_init: float = 0.0,
        dtype: Optional[torch.dtype] = None,
        device=None,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.empty(n_out, dtype=dtype, device=device))
        init_linear(self.weight, self.bias, init, gain, bias_init)

    def forward(self, jet: Jet) -> Jet:
        wt = self.weight.t()
        value = torch.addmm(self.bias, jet.value, wt)
        if jet.order == 0:
            return Jet(value, None, None, jet.n, 0)
        if jet.jac is None:  # input layer: da/dx = W^T for every sample, d2a/dx2 = 0
            # contiguous: a transposed view would give every later tensor permuted strides
            return Jet(value, wt.contiguous().unsqueeze(1), None, jet.n, jet.order)
        if jet.stacked is not None:  # one matrix product for all derivative rows
            out = jet.stacked @ wt
            return Jet(value, out[: jet.n], out[jet.n :], jet.n, jet.order, out)
        jac, hess = jet.jac, jet.hess
        return Jet(value, jac @ wt, None if hess is None else hess @ wt, jet.n, jet.order)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}"


def elementwise(jet: Jet, g: Tensor, dg: Optional[Tensor], d2g: Optional[Tensor]) -> Jet:
    """Apply an elementwise map to a jet, given g(a), g'(a), g''(a) at a = jet.value.

    ``dg`` and ``d2g`` are needed only up to the jet's order.
    """
    if jet.order == 0:
        return Jet(g, None, None, jet.n, 0)
    jac_in = jet.jac
    if jac_in is None:  # elementwise map straight on the input: one-hot Jacobian
        jac_in = torch.eye(jet.n, dtype=g.dtype, device=g.device).unsqueeze(1)
    jac = dg * jac_in  # (n, B, W)
    if jet.order == 1:
        return Jet(g, jac, None, jet.n, 1)
    n = jet.n
    if jac_in.shape[1] == 1:  # the same da for every sample (input layer): pair it up once
        rows, cols, _ = pair_indices(n, g.device)
        blocks = [d2g * (jac_in.index_select(0, rows) * jac_in.index_select(0, cols))]
        if jet.hess is not None:
            blocks = [torch.addcmul(blocks[0], dg, jet.hess)]
    else:
        # pairs (i, j >= i) in row blocks per i: g'' da_i da_j (+ g' d2a_ij), no index copies
        curv = d2g * jac_in  # g'' da_i, (n, B, W)
        blocks, start = [], 0
        for i in range(n):
            pair = curv[i] * jac_in[i:]
            if jet.hess is not None:
                pair = torch.addcmul(pair, dg, jet.hess[start : start + n - i])
            blocks.append(pair)
            start += n - i
    both = torch.cat([jac] + blocks)  # stacked so the next affine layer does one product
    return Jet(g, both[: jet.n], both[jet.n :], jet.n, 2, both)


class DifferentialActivation(nn.Module):
    """Elementwise activation acting on jets."""

    def __init__(self, activation: Union[str, Activation] = "softplus", **options):
        super().__init__()
        self.activation = get_activation(activation, **options)

    def forward(self, jet: Jet) -> Jet:
        return elementwise(jet, *_padded(self.activation(jet.value, jet.order)))

    def extra_repr(self) -> str:
        return self.activation.name


def _padded(values):
    return tuple(values) + (None,) * (3 - len(values))


class AngleFeatures(nn.Module):
    """Feature map that makes a function periodic in selected inputs (revolute joints).

    Input x (B, n) -> features (B, F): for each periodic input i the pair (sin x_i, cos x_i),
    for each other input x_i itself; F = n + number of periodic inputs. Exact derivatives.
    """

    def __init__(self, periodic: Sequence[bool]):
        super().__init__()
        periodic = [bool(p) for p in periodic]
        src, kind = [], []  # kind: 0 identity, 1 sin, 2 cos
        for i, p in enumerate(periodic):
            if p:
                src += [i, i]
                kind += [1, 2]
            else:
                src.append(i)
                kind.append(0)
        self.n_input = len(periodic)
        self.n_features = len(src)
        self.register_buffer("src", torch.tensor(src, dtype=torch.long), persistent=False)
        self.register_buffer("kind", torch.tensor(kind, dtype=torch.long), persistent=False)

    def forward(self, jet: Jet) -> Jet:
        a = jet.value.index_select(-1, self.src)
        is_sin, is_cos = self.kind == 1, self.kind == 2
        s, c = torch.sin(a), torch.cos(a)
        g = torch.where(is_sin, s, torch.where(is_cos, c, a))
        if jet.order == 0:
            return Jet(g, None, None, jet.n, 0)
        one, zero = torch.ones_like(a), torch.zeros_like(a)
        dg = torch.where(is_sin, c, torch.where(is_cos, -s, one))
        d2g = torch.where(is_sin, -s, torch.where(is_cos, -c, zero)) if jet.order == 2 else None
        # selecting input columns is linear: its jet is the input jet's columns
        if jet.jac is None:
            eye = torch.eye(jet.n, dtype=a.dtype, device=a.device)
            jac = eye.index_select(1, self.src).unsqueeze(1)
            hess = None
        else:
            jac = jet.jac.index_select(-1, self.src)
            hess = None if jet.hess is None else jet.hess.index_select(-1, self.src)
        return elementwise(Jet(a, jac, hess, jet.n, jet.order), g, dg, d2g)

    def extra_repr(self) -> str:
        return f"{self.n_input} -> {self.n_features}"
