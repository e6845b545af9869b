"""Black-box Lagrangian network: one scalar network L(q, qd), no assumed energy structure.

The equation of motion comes from its exact first and second derivatives (``net(x, order=2)``,
forward-over-reverse, one network evaluation)::

    tau = (d2L/dqd2) qdd + (d2L/dqd dq) qd - dL/dq (+ f)

Since L need not be T - V with T quadratic in qd, the decomposition is a definition:

* H = d2L/dqd2 at (q, qd) (``mass_matrix(q)`` evaluates it at qd = 0);
* gravity g(q) = -dL/dq at qd = 0 (a second, first-order evaluation);
* coriolis c = (d2L/dqd dq) qd - dL/dq - g, the rest of the velocity-dependent torque;
* energies from the Hamiltonian E = qd^T dL/dqd - L (conserved without applied torques),
  V(q) = -L(q, 0) and T = E - V.

Forward dynamics solves with H (+ a small regularisation), which is only possible where the
learned L is strictly convex in qd; elsewhere :class:`IndefiniteMassMatrixError` is raised.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union, Unpack

import torch
from torch import Tensor

from ddn.jet import Jet
from delan.dynamics import DynamicsTerms
from delan.models.base import (
    LearnedModel,
    NetworkOptions,
    checked_cholesky,
    network_options,
    scalar_network_of_state,
    state_options,
)
from delan.models.friction import JointFriction


class BlackBoxLagrangianNetwork(LearnedModel):
    """A Lagrangian L(q, qd) given by one ``ddn.DifferentialNetwork`` with a scalar output.

    Args:
        n_dof: number of joints n.
        revolute: per-joint mask; revolute angles enter as (sin q, cos q).
        friction: add learnable viscous + Coulomb joint friction.
        regularisation: r >= 0 added to the diagonal of H before the forward-dynamics solve.
        dtype, device: of the parameters; inputs must match them.
        **network: the network's options (:class:`delan.models.base.NetworkOptions`); the
            activation needs a non-zero second derivative.
    """

    # the loss parts training uses unless told (read by delan.losses.resolve_weights)
    default_loss_weights = {"inverse": 1.0, "forward": 0.0, "power": 0.0}

    def __init__(
        self,
        n_dof: int,
        revolute: Optional[Sequence[bool]] = None,
        friction: bool = False,
        regularisation: float = 1e-6,
        dtype: Union[None, str, torch.dtype] = None,
        device=None,
        **network: Unpack[NetworkOptions],
    ):
        super().__init__()
        n, dtype, mask = state_options(n_dof, revolute, dtype)
        net = network_options(type(self).__name__, network)
        if not regularisation >= 0:
            raise ValueError(f"regularisation must be >= 0, got {regularisation}")
        self.n_dof = n
        self.regularisation = float(regularisation)
        self._record_config(locals(), net, n_dof=n, regularisation=self.regularisation, dtype=dtype)
        # features of z = (q, qd): angles of revolute joints as (sin, cos), velocities as they are
        self.features, self.net = scalar_network_of_state(n, mask, dtype=dtype, device=device, **net)
        self.friction_model = JointFriction(n, dtype=dtype, device=device) if friction else None
        self.register_buffer("_eye", torch.eye(n, dtype=dtype, device=device), persistent=False)

    def _param(self) -> Tensor:
        return self._buffers["_eye"]

    # ------------------------------------------------------------------ the network
    def _derivatives(self, q: Tensor, qd: Tensor, order: int):
        """L (B,) and, up to ``order``, its gradient (B, 2n) and Hessian (B, 2n, 2n) in z = (q, qd)."""
        z = torch.cat([q, qd], -1)
        x = z if self.features is None else self.features(Jet.input(z, order))
        out = self.net(x, order=order)
        if order == 0:
            return out[:, 0]
        return (out[0][:, 0], out[1][:, 0]) + ((out[2][:, 0],) if order == 2 else ())

    def _friction(self, qd: Tensor) -> Tensor:
        return torch.zeros_like(qd) if self.friction_model is None else self.friction_model(qd)

    def lagrangian(self, q: Tensor, qd: Tensor) -> Tensor:
        """L(q, qd), (B,)."""
        q, qd = self._inputs(q=q, qd=qd)
        return self._derivatives(q, qd, 0)

    # ------------------------------------------------------------------ Dynamics
    def _el(self, q: Tensor, qd: Tensor):
        n = self.n_dof
        Lv, J, Hz = self._derivatives(q, qd, 2)
        dL_dq, dL_dqd = J[:, :n], J[:, n:]
        H = Hz[:, n:, n:].contiguous()
        mixed_qd = (Hz[:, n:, :n] @ qd.unsqueeze(-1)).squeeze(-1)  # (d2L/dqd dq) qd
        return Lv, dL_dq, dL_dqd, H, mixed_qd

    def terms(self, q: Tensor, qd: Tensor, qdd: Optional[Tensor] = None) -> DynamicsTerms:
        """All terms (see the module docstring for their definitions); shapes as DynamicsTerms."""
        q, qd, qdd = self._inputs(q=q, qd=qd, qdd=qdd)
        Lv, dL_dq, dL_dqd, H, mixed_qd = self._el(q, qd)
        L0, J0 = self._derivatives(q, torch.zeros_like(qd), 1)
        g = -J0[:, : self.n_dof]
        c = mixed_qd - dL_dq - g
        V = -L0
        T = (qd * dL_dqd).sum(-1) - Lv - V
        f = self._friction(qd)
        if qdd is None:
            return DynamicsTerms(H, c, g, f, T, V)
        inertial = (H @ qdd.unsqueeze(-1)).squeeze(-1)
        return DynamicsTerms(H, c, g, f, T, V, inertial, inertial + c + g + f)

    def inverse_dynamics(self, q: Tensor, qd: Tensor, qdd: Tensor) -> Tensor:
        """tau (B, n) from one second-order network evaluation."""
        q, qd, qdd = self._inputs(q=q, qd=qd, qdd=qdd)
        _, dL_dq, _, H, mixed_qd = self._el(q, qd)
        tau = (H @ qdd.unsqueeze(-1)).squeeze(-1) + mixed_qd - dL_dq
        return tau if self.friction_model is None else tau + self.friction_model(qd)

    def mass_matrix(self, q: Tensor) -> Tensor:
        """d2L/dqd2 at (q, qd = 0), (B, n, n); for a general L it depends on qd (see terms)."""
        (q,) = self._inputs(q=q)
        return self._el(q, torch.zeros_like(q))[3]

    def gravity(self, q: Tensor) -> Tensor:
        """g(q) = -dL/dq at qd = 0, (B, n)."""
        (q,) = self._inputs(q=q)
        return -self._derivatives(q, torch.zeros_like(q), 1)[1][:, : self.n_dof]

    def potential(self, q: Tensor) -> Tensor:
        """V(q) = -L(q, 0), (B,)."""
        (q,) = self._inputs(q=q)
        return -self._derivatives(q, torch.zeros_like(q), 0)

    def energy(self, q: Tensor, qd: Tensor) -> Tuple[Tensor, Tensor]:
        """(T, V), each (B,): E = qd^T dL/dqd - L, V = -L(q, 0), T = E - V."""
        q, qd = self._inputs(q=q, qd=qd)
        Lv, J = self._derivatives(q, qd, 1)
        V = -self._derivatives(q, torch.zeros_like(qd), 0)
        return (qd * J[:, self.n_dof :]).sum(-1) - Lv - V, V

    def friction(self, q: Tensor, qd: Tensor) -> Tensor:
        """Learned friction torques (B, n); zeros when the model has none."""
        q, qd = self._inputs(q=q, qd=qd)
        return self._friction(qd)

    def solve_mass_matrix(self, H: Tensor, rhs: Tensor) -> Tensor:
        """Solve (H + r I) x = rhs by Cholesky; IndefiniteMassMatrixError where it fails."""
        Hr = H + self.regularisation * self._buffers["_eye"] if self.regularisation else H
        chol = checked_cholesky(
            Hr,
            "d2L/dqd2 of the black-box Lagrangian is not positive definite at {bad} of {total} states (the "
            "learned L is not convex in qd there), so its forward dynamics is undefined; train longer, raise "
            "`regularisation`, or use the structured DeepLagrangianNetwork",
        )
        return torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)

    def forward_dynamics(self, q: Tensor, qd: Tensor, tau: Tensor) -> Tensor:
        """qdd = (H + r I)^-1 (tau - c - g - f), (B, n); raises IndefiniteMassMatrixError."""
        q, qd, tau = self._inputs(q=q, qd=qd, tau=tau)
        _, dL_dq, _, H, mixed_qd = self._el(q, qd)
        return self.solve_mass_matrix(H, tau - mixed_qd + dL_dq - self._friction(qd))

    def extra_repr(self) -> str:
        return f"n_dof={self.n_dof}, regularisation={self.regularisation:g}"
