"""Shared plumbing of the true (simulated) systems: parameters, friction, rotor inertia, joint
limits and joint types."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from delan.dynamics import Dynamics, DynamicsTerms, as_batch
from delan.errors import DataError
from delan.friction import joint_friction

GRAVITY = 9.81  # m/s^2


class TrueSystem(Dynamics):
    """A system with known closed-form dynamics.

    Subclasses set ``n_dof``, ``joint_names``, ``joint_types`` (one "revolute" / "prismatic" per
    joint, stored in generated data files), ``q_min``, ``q_max``, ``qd_max`` (numpy (n,)) and
    implement :meth:`_rigid_terms`, which returns (H, c, g, T, V) for a batch; friction, rotor
    inertia and the inertial/total torques are added here so every system uses the same formulas.

    ``armature`` (per joint, default 0): rotor inertia reflected to the joint (kg m^2, or kg for
    a prismatic joint), added to the diagonal of H and so to T = 1/2 qd^T H qd, the inertial
    torques and forward dynamics. It depends on nothing, so c and g are unchanged.

    dtype and device of every result follow ``q``.
    """

    name: str = "system"
    n_dof: int
    joint_names: List[str]
    joint_types: List[str]
    q_min: np.ndarray
    q_max: np.ndarray
    qd_max: np.ndarray

    def __init__(
        self,
        friction: bool = False,
        viscous: Optional[Sequence[float]] = None,
        coulomb: Optional[Sequence[float]] = None,
        smoothing: float = 0.01,
        armature: Optional[Sequence[float]] = None,
    ):
        self.has_friction = bool(friction)
        n = self.n_dof
        self.viscous = np.broadcast_to(np.asarray(0.1 if viscous is None else viscous, float), (n,)).copy()
        self.coulomb = np.broadcast_to(np.asarray(0.05 if coulomb is None else coulomb, float), (n,)).copy()
        self.smoothing = float(smoothing)
        self.armature = self._per_joint(0.0 if armature is None else armature, "armature")
        if not hasattr(self, "joint_types"):
            self.joint_types = ["revolute"] * n

    def _per_joint(self, value, what: str) -> np.ndarray:
        try:
            arr = np.broadcast_to(np.asarray(value, float), (self.n_dof,)).copy()
        except (ValueError, TypeError):
            raise DataError(
                f"system {self.name!r}: {what} must be one number or one per joint ({self.n_dof}), got {value!r}"
            ) from None
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise DataError(f"system {self.name!r}: {what} must be finite and >= 0, got {arr.tolist()}")
        return arr

    # -- to implement -------------------------------------------------------------------------
    def _rigid_terms(self, q: Tensor, qd: Tensor):
        """(H (B,n,n), c (B,n), g (B,n), T (B,), V (B,)) of the frictionless system."""
        raise NotImplementedError

    # -- Dynamics -----------------------------------------------------------------------------
    def terms(self, q: Tensor, qd: Tensor, qdd: Optional[Tensor] = None) -> DynamicsTerms:
        q = as_batch(q, self.n_dof, "q")
        qd = as_batch(qd, self.n_dof, "qd", like=q)
        H, c, g, T, V = self._rigid_terms(q, qd)
        if np.any(self.armature):
            a = const(self.armature, q)
            H = H + torch.diag_embed(a.expand_as(q))
            T = T + 0.5 * (a * qd**2).sum(-1)
        f = self._friction(qd)
        if qdd is None:
            return DynamicsTerms(H, c, g, f, T, V)
        qdd = as_batch(qdd, self.n_dof, "qdd", like=q)
        inertial = (H @ qdd.unsqueeze(-1)).squeeze(-1)
        return DynamicsTerms(H, c, g, f, T, V, inertial, inertial + c + g + f)

    def _friction(self, qd: Tensor) -> Tensor:
        if not self.has_friction:
            return torch.zeros_like(qd)
        v = torch.as_tensor(self.viscous, dtype=qd.dtype, device=qd.device)
        cf = torch.as_tensor(self.coulomb, dtype=qd.dtype, device=qd.device)
        return joint_friction(qd, v, cf, self.smoothing)

    def describe(self) -> dict:
        """Parameters as a JSON-friendly dict (stored in data files)."""
        d = {
            "name": self.name,
            "n_dof": self.n_dof,
            "friction": self.has_friction,
            "joint_types": list(self.joint_types),
            "armature": self.armature.tolist(),
        }
        if self.has_friction:
            d.update(viscous=self.viscous.tolist(), coulomb=self.coulomb.tolist(), smoothing=self.smoothing)
        return d

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_dof={self.n_dof}, friction={self.has_friction})"


def const(x, like: Tensor) -> Tensor:
    """A parameter as a tensor with the dtype/device of ``like``."""
    return torch.as_tensor(np.asarray(x, dtype=float), dtype=like.dtype, device=like.device)
