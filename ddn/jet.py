"""Jets: a value together with its first and second derivatives w.r.t. the network input x.

Layout (derivative rows first, features last, so that each layer is one matrix product over
all rows and stacking or selecting rows copies whole contiguous slabs):

* ``value`` (B, W): h(x).
* ``jac``   (n, B, W): ``jac[i, b, k] = dh_k/dx_i``, or ``None`` for the input itself, whose
  Jacobian is the identity.
* ``hess``  (P, B, W) with P = n(n+1)/2: the symmetric Hessian stored once per pair i <= j in
  the order of ``torch.triu_indices(n, n)``; ``None`` where it is zero.

A batch dimension of 1 in ``jac`` or ``hess`` broadcasts over the batch (the Jacobian of the
first layer, W^T, is the same for every sample and is never copied B times).
"""

from __future__ import annotations

from functools import cache
from typing import Optional, Tuple

import torch
from torch import Tensor


def n_pairs(n: int) -> int:
    """Number of distinct entries of a symmetric n x n matrix."""
    return n * (n + 1) // 2


@cache
def _pair_indices_cpu(n: int) -> Tuple[Tensor, Tensor, Tensor]:
    rows, cols = torch.triu_indices(n, n)
    full = torch.empty(n, n, dtype=torch.long)
    full[rows, cols] = torch.arange(len(rows))
    full[cols, rows] = torch.arange(len(rows))
    return rows, cols, full.reshape(-1)


_DEVICE_CACHE: dict = {}


def pair_indices(n: int, device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
    """(rows, cols, unpack): the pairs i <= j, and for each of the n*n entries its pair index."""
    if torch.compiler.is_compiling():
        # under torch.export / torch.compile the tensors made here are fake: caching them would
        # hand fake tensors to every later eager call of the process
        return tuple(t.to(device) for t in _pair_indices_cpu.__wrapped__(n))
    key = (n, str(device))
    if key not in _DEVICE_CACHE:
        _DEVICE_CACHE[key] = tuple(t.to(device) for t in _pair_indices_cpu(n))
    return _DEVICE_CACHE[key]


def unpack_symmetric(packed: Tensor, n: int) -> Tensor:
    """(P, B, m) packed pairs -> (B, m, n, n) full symmetric matrices."""
    _, _, unpack = pair_indices(n, packed.device)
    full = packed.index_select(0, unpack)  # (n*n, B, m)
    return full.permute(1, 2, 0).unflatten(-1, (n, n))


class Jet:
    """A value and its derivatives w.r.t. the input, up to ``order`` (see module docstring)."""

    __slots__ = ("value", "jac", "hess", "n", "order", "stacked")

    def __init__(
        self,
        value: Tensor,
        jac: Optional[Tensor],
        hess: Optional[Tensor],
        n: int,
        order: int,
        stacked: Optional[Tensor] = None,
    ):
        self.value, self.jac, self.hess, self.n, self.order = value, jac, hess, n, order
        # (n+P, B, W) tensor of which jac and hess are the two row blocks, when they are
        self.stacked = stacked

    @classmethod
    def input(cls, x: Tensor, order: int) -> Jet:
        """The jet of the input x (B, n) itself: identity Jacobian, zero Hessian."""
        return cls(x, None, None, x.shape[-1], order)

    @property
    def is_input(self) -> bool:
        return self.order >= 1 and self.jac is None

    def jacobian(self) -> Tensor:
        """dh/dx in the usual layout (B, W, n)."""
        if self.jac is None:
            eye = torch.eye(self.n, dtype=self.value.dtype, device=self.value.device)
            return eye.expand(self.value.shape[0], self.n, self.n)
        return self.jac.permute(1, 2, 0).expand(self.value.shape[0], -1, -1)

    def hessian(self) -> Tensor:
        """d2h/dx2 in the usual layout (B, W, n, n)."""
        B, W = self.value.shape
        if self.hess is None:
            return self.value.new_zeros(B, W, self.n, self.n)
        return unpack_symmetric(self.hess, self.n).expand(B, -1, -1, -1)
