"""Franka-Emika-Panda-like 7-DoF arm, and any URDF robot, evaluated through Pinocchio.

The model (``robots/panda.urdf``) is our own file built from the Panda's published kinematic
(modified DH) and identified inertial parameters (Gaz et al., RA-L 2019); see its header.
Pinocchio works in numpy float64 on one state at a time, so a batch is looped over; results
come back as tensors with the dtype/device of the input. These systems are not differentiable
through torch (they provide data and ground truth, not training graphs).

Needs the optional dependency: ``pip install "delan[robots]"`` (Pinocchio, package ``pin``).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import torch

from delan.systems.base import TrueSystem

PANDA_URDF = os.path.join(os.path.dirname(__file__), "robots", "panda.urdf")


def import_pinocchio():
    """Import pinocchio, or raise ImportError saying how to install it."""
    try:
        import pinocchio
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('this system needs Pinocchio: pip install "delan[robots]"') from exc
    return pinocchio


def _joint_type(joint) -> str:
    """ "prismatic" for Pinocchio's prismatic joint models (JointModelPX/PY/PZ, PrismaticUnaligned),
    else "revolute" (RX/RY/RZ, RevoluteUnaligned; nq == nv rules out the others)."""
    kind = joint.shortname()
    return "prismatic" if kind.startswith("JointModelP") else "revolute"


class PinocchioSystem(TrueSystem):
    """Rigid-body dynamics of a URDF model (revolute/prismatic joints, fixed base).

    Args:
        urdf: path to a URDF file, or the URDF XML text itself.
        gravity: gravity vector in the base frame (default (0, 0, -9.81)).
        name: system name stored in data files.
    """

    def __init__(self, urdf: str, gravity: Optional[Sequence[float]] = None, name: str = "urdf", **friction):
        pin = import_pinocchio()
        self._pin = pin
        if urdf.lstrip().startswith("<"):
            self.model = pin.buildModelFromXML(urdf)
        else:
            self.model = pin.buildModelFromUrdf(urdf)
        if gravity is not None:
            self.model.gravity.linear = np.asarray(gravity, float)
        self.data = self.model.createData()
        self.name = name
        self.n_dof = int(self.model.nv)
        if self.model.nq != self.model.nv:
            raise ValueError("only revolute/prismatic joints are supported (nq must equal nv)")
        self.joint_names = [str(n) for n in list(self.model.names)[1:]]
        self.joint_types = [_joint_type(j) for j in list(self.model.joints)[1:]]
        self.q_min = np.array(self.model.lowerPositionLimit, float)
        self.q_max = np.array(self.model.upperPositionLimit, float)
        self.qd_max = np.array(self.model.velocityLimit, float)
        super().__init__(**friction)

    def _rigid_terms(self, q, qd):
        pin, model, data = self._pin, self.model, self.data
        qn = q.detach().cpu().numpy().astype(np.float64)
        vn = qd.detach().cpu().numpy().astype(np.float64)
        B, n = qn.shape
        H = np.empty((B, n, n))
        nle = np.empty((B, n))
        g = np.empty((B, n))
        V = np.empty(B)
        iu = np.triu_indices(n, 1)
        for b in range(B):
            qb = qn[b]
            M = pin.crba(model, data, qb)
            M[iu[1], iu[0]] = M[iu]  # crba fills the upper triangle only
            H[b] = M
            nle[b] = pin.nonLinearEffects(model, data, qb, vn[b])
            g[b] = pin.computeGeneralizedGravity(model, data, qb)
            V[b] = pin.computePotentialEnergy(model, data, qb)
        T = 0.5 * np.einsum("bi,bij,bj->b", vn, H, vn)
        out = [torch.as_tensor(x, dtype=q.dtype, device=q.device) for x in (H, nle - g, g, T, V)]
        return tuple(out)

    # Simulation calls only these two, so give them Pinocchio's O(n) recursive algorithms
    # (RNEA, ABA) instead of assembling every term.
    # The model's own armature stays 0 (Pinocchio versions differ in which algorithms read it);
    # TrueSystem.armature is added here and in terms() instead.
    def inverse_dynamics(self, q, qd, qdd):
        """tau = H qdd + c + g + f (B, n) by RNEA (+ armature qdd)."""
        q, qd, qdd = self._batch(q, qd, qdd)
        qn, vn, an = (x.detach().cpu().numpy().astype(np.float64) for x in (q, qd, qdd))
        tau = np.stack([self._pin.rnea(self.model, self.data, qn[b], vn[b], an[b]) for b in range(len(qn))])
        tau = tau + self.armature * an
        return torch.as_tensor(tau, dtype=q.dtype, device=q.device) + self._friction(qd)

    def forward_dynamics(self, q, qd, tau):
        """qdd = H^-1 (tau - c - g - f) (B, n) by ABA (with armature: Cholesky solve of the terms)."""
        if np.any(self.armature):
            return super().forward_dynamics(q, qd, tau)
        q, qd, tau = self._batch(q, qd, tau)
        tau = tau - self._friction(qd)
        qn, vn, tn = (x.detach().cpu().numpy().astype(np.float64) for x in (q, qd, tau))
        qdd = np.stack([self._pin.aba(self.model, self.data, qn[b], vn[b], tn[b]) for b in range(len(qn))])
        return torch.as_tensor(qdd, dtype=q.dtype, device=q.device)

    def _batch(self, q, qd, x):
        from delan.dynamics import as_batch

        q = as_batch(q, self.n_dof, "q")
        qd = as_batch(qd, self.n_dof, "qd", like=q)
        x = as_batch(x, self.n_dof, "qdd/tau", like=q)
        B = max(q.shape[0], qd.shape[0], x.shape[0])
        return q.expand(B, -1), qd.expand(B, -1), x.expand(B, -1)


class Panda(PinocchioSystem):
    """The 7-DoF Panda-like arm of ``robots/panda.urdf``."""

    def __init__(self, urdf: str = PANDA_URDF, **friction):
        friction.setdefault("viscous", 0.5)
        friction.setdefault("coulomb", 0.5)
        super().__init__(urdf, name="panda", **friction)
