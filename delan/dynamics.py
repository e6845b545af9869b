"""The one interface shared by learned models and true (simulated) systems.

Simulation, evaluation and plotting only ever talk to a :class:`Dynamics`, so they never care
whether they hold a learned network or the closed-form dynamics of a known robot.

Equation of motion (Euler–Lagrange, joint space)::

    tau = H(q) qdd + c(q, qd) + g(q) + f(q, qd)

with H the mass matrix, c the Coriolis/centrifugal force vector, g the gravity torques and f the
friction torques (zero where not modelled).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor


class DynamicsTerms(NamedTuple):
    """All terms of the equation of motion for one batch of states, each batch first.

    H (B, n, n); inertial = H qdd, coriolis, gravity, friction, tau (B, n); T, V (B,).
    ``inertial`` and ``tau`` are None when no acceleration was given.
    """

    H: Tensor
    coriolis: Tensor
    gravity: Tensor
    friction: Tensor
    T: Tensor
    V: Tensor
    inertial: Optional[Tensor] = None
    tau: Optional[Tensor] = None


class Dynamics:
    """Abstract rigid-body dynamics in joint space.

    Subclasses implement :meth:`terms`; every other method is a convenience on top of it, so a
    learned model evaluates its networks once per state. Subclasses may override the
    conveniences with cheaper paths (e.g. :meth:`gravity` needs no velocity).

    Shapes: q, qd, qdd, tau are (B, n); a single (n,) vector is accepted and treated as (1, n).
    """

    n_dof: int

    # -- to implement -------------------------------------------------------------------------
    def terms(self, q: Tensor, qd: Tensor, qdd: Optional[Tensor] = None) -> DynamicsTerms:
        """Every term of the equation of motion at (q, qd) [and qdd]."""
        raise NotImplementedError

    # -- conveniences -------------------------------------------------------------------------
    def mass_matrix(self, q: Tensor) -> Tensor:
        """H(q), (B, n, n), symmetric positive definite."""
        q = as_batch(q, self.n_dof, "q")
        return self.terms(q, torch.zeros_like(q)).H

    def coriolis(self, q: Tensor, qd: Tensor) -> Tensor:
        """c(q, qd) = Hdot qd - 1/2 d(qd^T H qd)/dq as a force vector, (B, n)."""
        return self.terms(q, qd).coriolis

    def gravity(self, q: Tensor) -> Tensor:
        """g(q) = dV/dq, (B, n)."""
        q = as_batch(q, self.n_dof, "q")
        return self.terms(q, torch.zeros_like(q)).gravity

    def friction(self, q: Tensor, qd: Tensor) -> Tensor:
        """Friction torques f(q, qd), (B, n); zeros where not modelled."""
        return self.terms(q, qd).friction

    def inverse_dynamics(self, q: Tensor, qd: Tensor, qdd: Tensor) -> Tensor:
        """tau = H qdd + c + g + f, (B, n)."""
        return self.terms(q, qd, qdd).tau

    def forward_dynamics(self, q: Tensor, qd: Tensor, tau: Tensor) -> Tensor:
        """qdd = H^-1 (tau - c - g - f), (B, n), by Cholesky solve (never an explicit inverse)."""
        t = self.terms(q, qd)
        tau = as_batch(tau, self.n_dof, "tau", like=t.coriolis)
        rhs = tau - t.coriolis - t.gravity - t.friction
        return solve_spd(t.H, rhs)

    def energy(self, q: Tensor, qd: Tensor) -> Tuple[Tensor, Tensor]:
        """Kinetic and potential energy (T, V), each (B,)."""
        t = self.terms(q, qd)
        return t.T, t.V

    def power(self, q: Tensor, qd: Tensor, tau: Tensor) -> Tensor:
        """dE/dt = qd^T (tau - f), (B,): the rate of change of T + V under the applied torque."""
        t = self.terms(q, qd)
        tau = as_batch(tau, self.n_dof, "tau", like=t.coriolis)
        qd = as_batch(qd, self.n_dof, "qd", like=t.coriolis)
        return (qd * (tau - t.friction)).sum(-1)


def solve_spd(H: Tensor, rhs: Tensor) -> Tensor:
    """Solve H x = rhs for a batch of symmetric positive definite H (B, n, n), rhs (B, n)."""
    return _cholesky_solve(torch.linalg.cholesky(H), rhs)


def solve_spd_unchecked(H: Tensor, rhs: Tensor) -> Tensor:
    """:func:`solve_spd` without the positive-definiteness check, whose error needs the host to
    wait for the GPU: the solve a CUDA graph can hold (:mod:`delan.training_graph`). A sample
    whose factorisation fails gets NaN instead of an error; the others the same values as
    :func:`solve_spd`."""
    L, info = torch.linalg.cholesky_ex(H)
    L = torch.where((info != 0)[..., None, None], torch.full_like(L, float("nan")), L)
    return _cholesky_solve(L, rhs)


def _cholesky_solve(L: Tensor, rhs: Tensor) -> Tensor:
    # two triangular solves rather than torch.cholesky_solve: on a GPU these are cuBLAS's batched
    # kernels, which a CUDA graph can record (the batched cholesky_solve may go through MAGMA)
    y = torch.linalg.solve_triangular(L, rhs.unsqueeze(-1), upper=False)
    return torch.linalg.solve_triangular(L.mT, y, upper=True).squeeze(-1)


def as_batch(x: Tensor, n: int, name: str, like: Optional[Tensor] = None) -> Tensor:
    """Check that ``x`` is (B, n) or (n,) and return it as (B, n).

    Raises ValueError naming the argument, the expected shape and what was given; when ``like``
    is given, also its dtype and device must match.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (B, {n}), got {type(x).__name__}")
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2 or x.shape[-1] != n:
        raise ValueError(f"{name} must have shape (B, {n}) or ({n},), got {tuple(x.shape)}")
    if like is not None:
        if x.dtype != like.dtype:
            raise ValueError(f"{name} has dtype {x.dtype}, expected {like.dtype}")
        if x.device != like.device:
            raise ValueError(f"{name} is on device {x.device}, expected {like.device}")
        if x.shape[0] != like.shape[0] and x.shape[0] != 1 and like.shape[0] != 1:
            raise ValueError(f"{name} has batch size {x.shape[0]}, expected {like.shape[0]}")
    return x
