"""Deep Hamiltonian networks: the dynamics of a learned Hamiltonian H(q, p), with joint torques.

Hamilton's equations with generalised forces (applied torque tau, friction f(qd))::

    qd   =  dH/dp (q, p)
    pdot = -dH/dq (q, p) + tau - f(qd)

Two models, both :class:`delan.Dynamics` (so evaluation, simulation, plots and the CLI take them
unchanged) and both with exact derivatives from one ddn pass (no autograd inside the forward
pass; parameters train by autograd through the closed-form derivatives):

:class:`DeepHamiltonianNetwork` (structured)
    H(q, p) = 1/2 p^T M(q)^-1 p + V(q), M = L L^T + eps I from the same network (and output
    scales) as the structured DeLaN. M^-1 is never formed: qd = M^-1 p is solved with L itself
    (two triangular solves) when eps = 0, else with the Cholesky factor of M. With qd = M^-1 p,
    dH/dq = -1/2 qd^T (dM/dq) qd + dV/dq, i.e. minus the q-gradient of T = 1/2 qd^T M qd at fixed
    qd, which is the DeLaN's own closed-form pullback. The momentum of a velocity is p = M qd
    (no solve). Its Legendre transform is the Lagrangian 1/2 qd^T M qd - V, so in (q, qd) the
    model is the structured DeLaN with the same M and V: :meth:`terms` and every Dynamics method
    are the DeLaN's (tested against autograd on this model's H(q, p) as well).

:class:`BlackBoxHamiltonianNetwork`
    one scalar network H(q, p), no assumed structure. See its docstring for how p is found from
    qd (Newton's method on dH/dp (q, p) = qd) and for the Dynamics decomposition.

Velocity -> momentum, and the inverse dynamics (both models)
-----------------------------------------------------------
Along a motion, qd(t) = dH/dp (q(t), p(t)). Differentiating in time,
qdd = H_pq qd + H_pp pdot (H_pq = d2H/dp dq, H_pp = d2H/dp2), so with M = H_pp^-1::

    pdot = M (qdd - H_pq qd)              (the momentum rate the motion needs)
    tau  = pdot + dH/dq + f(qd)           (inverse dynamics)
    qdd  = H_pq qd + H_pp (tau - f - dH/dq)   (forward dynamics)

For the structured H, M = L L^T + eps I and M (qdd - H_pq qd) = M qdd + Mdot qd.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence, Tuple, Union, Unpack

import torch
from torch import Tensor

from ddn.jet import Jet
from delan.dynamics import DynamicsTerms
from delan.errors import IndefiniteMassMatrixError
from delan.models.base import (
    LearnedModel,
    NetworkOptions,
    checked_cholesky,
    network_options,
    positive_number,
    scalar_network_of_state,
    scales_per_joint,
    state_options,
)
from delan.models.friction import JointFriction
from delan.models.structured import DeepLagrangianNetwork


class MomentumSolveError(IndefiniteMassMatrixError):
    """The velocity -> momentum map of a black-box Hamiltonian could not be inverted: Newton's
    method on dH/dp (q, p) = qd did not converge (H is not convex enough in p there)."""


class HamiltonianTerms(NamedTuple):
    """What the Hamiltonian losses need at a recorded (q, qd, qdd), each (B, n) unless said.

    p: the model's momentum of qd; pdot: the momentum rate of the recorded motion,
    M (qdd - H_pq qd); dH_dq: dH/dq at (q, p); friction: f(qd); solve_mass(r): M^-1 r (B, n)
    for r (B, n), without forming M^-1; velocity(): dH/dp at (q, p), the model's qd (equal to the
    recorded qd up to rounding for the structured model, up to Newton's tolerance for the black
    box).
    """

    p: Tensor
    pdot: Tensor
    dH_dq: Tensor
    friction: Tensor
    solve_mass: Callable[[Tensor], Tensor]
    velocity: Callable[[], Tensor]


class _HamiltonsEquations:
    """Hamilton's equations from a model's ``hamiltonian_gradients`` (H, dH/dq, dH/dp), the same
    for both Hamiltonian models."""

    def hamiltonian_vector_field(self, q: Tensor, p: Tensor, tau: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Hamilton's equations: (qd = dH/dp, pdot = -dH/dq + tau - f(qd)), each (B, n);
        tau None means no applied torque."""
        _, dH_dq, qd = self.hamiltonian_gradients(q, p)
        pdot = -dH_dq - self._friction(qd) if self.friction_model is not None else -dH_dq
        if tau is not None:
            (tau,) = self._inputs(tau=tau)
            pdot = pdot + tau
        return qd, pdot


class DeepHamiltonianNetwork(_HamiltonsEquations, DeepLagrangianNetwork):
    """Structured Hamiltonian network: H(q, p) = 1/2 p^T M(q)^-1 p + V(q), M = L L^T + eps I.

    Same constructor arguments as :class:`delan.DeepLagrangianNetwork` (width, depth, activation,
    revolute joints as (sin q, cos q), shared trunk, diagonal shift, eps, friction, mass_scale,
    potential_scale, ...). With ``epsilon=0`` L is M's Cholesky factor and every solve is two
    triangular solves with L.

    Inputs q, p, qd, qdd, tau are (B, n); a single (n,) sample is accepted as (1, n).
    """

    # ------------------------------------------------------------------ helpers
    def _solve(self, l: Tensor) -> Callable[[Tensor], Tensor]:
        """r (B, n) -> M^-1 r for the packed entries l (B, m), never forming M^-1."""
        if self.epsilon == 0:
            L = self._L(l)

            def solve(r: Tensor) -> Tensor:
                y = torch.linalg.solve_triangular(L, r.unsqueeze(-1), upper=False)
                return torch.linalg.solve_triangular(L.transpose(-1, -2), y, upper=True).squeeze(-1)
        else:
            chol = torch.linalg.cholesky(self._H(l))

            def solve(r: Tensor) -> Tensor:
                return torch.cholesky_solve(r.unsqueeze(-1), chol).squeeze(-1)

        return solve

    def _mass_times(self, l: Tensor, v: Tensor) -> Tensor:
        """M v = L (L^T v) + eps v, (B, n)."""
        return self._L_times(l, self._Lt_times(l, v)) + self.epsilon * v

    def _dT_dq(self, l: Tensor, dmod: Tensor, pull, qd: Tensor) -> Tensor:
        """d(T - V)/dq at fixed qd (T = 1/2 qd^T M qd), from one cotangent row."""
        a = qd @ self._R  # qd_{r_e}
        wc = (a * l) @ self._CCt  # (L^T qd)_{c_e}
        return pull(a * wc * dmod, False)

    # ------------------------------------------------------------------ Hamiltonian view
    def momentum(self, q: Tensor, qd: Tensor) -> Tensor:
        """p = dL/dqd = M(q) qd, (B, n), from network values only."""
        q, qd = self._inputs(q=q, qd=qd)
        return self._mass_times(self._values(q)[0], qd)

    def velocity(self, q: Tensor, p: Tensor) -> Tensor:
        """qd = dH/dp = M(q)^-1 p, (B, n), by solves with L (or M's Cholesky factor)."""
        q, p = self._inputs(q=q, p=p)
        return self._solve(self._values(q)[0])(p)

    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor:
        """H(q, p) = 1/2 p^T M^-1 p + V(q), (B,)."""
        q, p = self._inputs(q=q, p=p)
        l, V = self._values(q)
        return 0.5 * (p * self._solve(l)(p)).sum(-1) + V

    def hamiltonian_gradients(self, q: Tensor, p: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(H (B,), dH/dq (B, n), dH/dp (B, n)) from one linearised network pass and one solve."""
        q, p = self._inputs(q=q, p=p)
        l, _, dmod, V, _, pull = self._linearise(q, torch.zeros_like(q))
        qd = self._solve(l)(p)
        dH_dq = -self._dT_dq(l, dmod, pull, qd)  # d(1/2 p^T M^-1 p)/dq = -dT/dq at qd = M^-1 p
        return 0.5 * (p * qd).sum(-1) + V, dH_dq, qd

    def hamiltonian_terms(self, q: Tensor, qd: Tensor, qdd: Tensor) -> HamiltonianTerms:
        """The momentum, its rate along the recorded motion and dH/dq there, from one linearised
        pass (see :class:`HamiltonianTerms`): pdot = M qdd + Mdot qd, with Mdot qd = Ldot L^T qd
        + L Ldot^T qd."""
        q, qd, qdd = self._inputs(q=q, qd=qd, qdd=qdd)
        l, ldot, dmod, V, Vdot, pull = self._linearise(q, qd)
        a, b = qd @ self._R, qdd @ self._R
        wc = (a * l) @ self._CCt  # (L^T qd)_{c_e}
        zc = torch.addcmul(b * l, a, ldot) @ self._CCt  # (L^T qdd + Ldot^T qd)_{c_e}
        pdot = torch.addcmul(zc * l, wc, ldot) @ self._Rt + self.epsilon * qdd
        p = (wc * l) @ self._Rt + self.epsilon * qd
        dH_dq = -pull(a * wc * dmod, False)
        solve = self._solve(l)
        return HamiltonianTerms(p, pdot, dH_dq, self._friction(qd), solve, lambda: solve(p))


class BlackBoxHamiltonianNetwork(_HamiltonsEquations, LearnedModel):
    """A Hamiltonian H(q, p) given by one ``ddn.DifferentialNetwork`` with a scalar output.

    H(q, p) = energy_scale * h(q, u) + 1/2 sum_j p_j^2 / mass_scale_j, with u_j = p_j /
    sqrt(mass_scale_j * energy_scale) (fixed input and output scaling, exact): the network's
    inputs and output are O(1) whatever the units. The second term (``kinetic_prior``, on by
    default) is a fixed reference kinetic energy, the one of the scales alone (it equals
    energy_scale * 1/2 |u|^2): it makes H convex in p from the start, as the velocity -> momentum
    map needs (a randomly initialised network alone is not convex in p, so no momentum and no
    inverse dynamics would exist to train on); the network learns the difference.

    Velocity -> momentum: p(q, qd) solves dH/dp (q, p) = qd, by Newton's method
    p <- p - H_pp^-1 (dH/dp - qd) from p = diag(mass_scale) qd (H_pp = d2H/dp2 by Cholesky; it must be positive
    definite, else :class:`IndefiniteMassMatrixError`), until the residual is below
    ``newton_tol`` times max(1, |qd|) (raises :class:`MomentumSolveError` after
    ``newton_max_iter`` steps). The iterations run without a graph; the returned p is one more
    Newton step p* - stop(H_pp^-1) (dH/dp (q, p*) - qd) taken with the graph, whose value is p*
    (to the tolerance) and whose derivative is the implicit function's: dp = H_pp^-1 (dqd - H_pq
    dq - d_theta dH/dp). So autograd through p is exact at convergence, for the parameters and
    for (q, qd).

    The Dynamics decomposition (exact for this H; a definition, as H need not be quadratic in p):

    * mass matrix M = H_pp^-1 at the state (``mass_matrix(q)``: at qd = 0, i.e. at the momentum
      p0(q) where dH/dp = 0); inertial = M qdd;
    * V(q) = H(q, p0(q)) (the energy at rest) and g = dV/dq = dH/dq (q, p0) (dH/dp = 0 there);
    * c = -M H_pq qd + dH/dq (q, p) - g; energies T = H(q, p) - V, V.

    Args:
        n_dof, revolute, friction, dtype, device, **network: as for
            :class:`delan.BlackBoxLagrangianNetwork`.
        mass_scale: (n,) typical inertia per joint (None = ones); energy_scale: typical energy.
        newton_tol: relative tolerance of the momentum solve (None: 1e-12 in float64, 1e-5 in
            float32); newton_max_iter: at most that many Newton steps.
        kinetic_prior: add the fixed reference kinetic energy (above).
    """

    def __init__(
        self,
        n_dof: int,
        revolute: Optional[Sequence[bool]] = None,
        friction: bool = False,
        mass_scale: Optional[Sequence[float]] = None,
        energy_scale: float = 1.0,
        newton_tol: Optional[float] = None,
        newton_max_iter: int = 30,
        kinetic_prior: bool = True,
        dtype: Union[None, str, torch.dtype] = None,
        device=None,
        **network: Unpack[NetworkOptions],
    ):
        super().__init__()
        n, dtype, mask = state_options(n_dof, revolute, dtype)
        net = network_options(type(self).__name__, network)
        mass_scale = scales_per_joint("mass_scale", mass_scale, n)
        self.energy_scale = positive_number("energy_scale", energy_scale)
        self.newton_tol = None if newton_tol is None else positive_number("newton_tol", newton_tol)
        if int(newton_max_iter) < 1:
            raise ValueError(f"newton_max_iter must be >= 1, got {newton_max_iter}")
        self.n_dof = n
        self.newton_max_iter = int(newton_max_iter)
        self.kinetic_prior = bool(kinetic_prior)
        self._record_config(
            locals(),
            net,
            n_dof=n,
            mass_scale=mass_scale,
            energy_scale=self.energy_scale,
            newton_tol=self.newton_tol,
            newton_max_iter=self.newton_max_iter,
            dtype=dtype,
        )
        # features of z = (q, u): revolute angles as (sin, cos), scaled momenta as they are
        self.features, self.net = scalar_network_of_state(n, mask, dtype=dtype, device=device, **net)
        if self.net.out_act is not None:  # _second assumes an affine output layer
            raise ValueError("the black-box Hamiltonian's network must have a linear output")
        self.friction_model = JointFriction(n, dtype=dtype, device=device) if friction else None
        kw = dict(dtype=dtype if dtype is not None else torch.get_default_dtype())
        m = torch.ones(n, **kw) if mass_scale is None else torch.tensor(mass_scale, **kw)
        u_scale = 1.0 / (m * self.energy_scale).sqrt()  # du/dp
        # d(z input)/d(q, p): 1 on q, u_scale on p; derivatives of H pick these up by the chain rule
        z_scale = torch.cat([torch.ones(n, **kw), u_scale])
        prior_hess = torch.zeros(2 * n, 2 * n, **kw)
        prior_hess[n:, n:] = torch.diag(1.0 / m)
        for name, t in [
            ("_eye", torch.eye(n, **kw)),
            ("_u_scale", u_scale),
            ("_z_scale", z_scale),
            ("_z_outer", self.energy_scale * torch.outer(z_scale, z_scale)),
            ("_inv_mass", 1.0 / m),
            ("_prior_hess", prior_hess),
            # the scaled momenta u are the network's last n inputs (after any angle features)
            ("_u_dirs", torch.eye(self.net.n_input, **kw)[self.net.n_input - n :].unsqueeze(1)),
        ]:
            self.register_buffer(name, t.to(device), persistent=False)

    def _param(self) -> Tensor:
        return self._buffers["_eye"]

    # ------------------------------------------------------------------ the network
    def _derivatives(self, q: Tensor, p: Tensor, order: int):
        """H (B,) and, for ``order`` 1, its gradient (B, 2n) in (q, p) (second derivatives:
        :meth:`_second`)."""
        z = torch.cat([q, p * self._u_scale], -1)
        x = z if self.features is None else self.features(Jet.input(z, order))
        out = self.net(x, order=order)
        if not self.kinetic_prior:
            prior = None
        else:  # 1/2 sum_j p_j^2 / mass_scale_j, its gradient and (constant diagonal) Hessian
            pm = p * self._inv_mass
            prior = 0.5 * (p * pm).sum(-1), pm
        if order == 0:
            Hv = out[:, 0] * self.energy_scale
            return Hv if prior is None else Hv + prior[0]
        Hv = out[0][:, 0] * self.energy_scale
        grad = out[1][:, 0] * (self.energy_scale * self._z_scale)
        if prior is not None:
            Hv = Hv + prior[0]
            grad = torch.cat([grad[:, : self.n_dof], grad[:, self.n_dof :] + prior[1]], -1)
        return Hv, grad

    def _grad_hvp(self, x: Tensor, dirs: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Network value h (B,), gradient dh/dx (B, F) and Hessian-times-direction (k, B, F) for the
        directions ``dirs`` (k, B|1, F), by forward-over-reverse along those k directions only:
        2 (1 + k) rows through each hidden layer's product, where the full Hessian in the F inputs
        (ddn's order-2 pass) takes 2 (1 + F)."""
        act = self.net.act.activation
        h, t = x, dirs
        saved = []
        for layer in self.net.hidden:
            W = layer.weight
            a = torch.addmm(layer.bias, h, W.t())
            g, dg, d2g = act(a, 2)
            ta = t @ W.t()  # tangents of the pre-activation, (k, B|1, W)
            h, t = g, dg * ta
            saved.append((W, dg, d2g * ta))
        Wo = self.net.output.weight  # (1, W)
        y = torch.addmm(self.net.output.bias, h, Wo.t())[:, 0]
        u = Wo.expand(h.shape[0], -1)  # dy/dh
        du = None  # d(dy/dh) along each direction
        for W, dg, curv in reversed(saved):
            dv = curv * u if du is None else torch.addcmul(curv * u, dg, du)
            u, du = (dg * u) @ W, dv @ W
        if du is None:  # no hidden layer: affine, zero Hessian
            du = x.new_zeros(dirs.shape[0], *x.shape)
        return y, u, du

    def _second(self, q: Tensor, p: Tensor, qd: Optional[Tensor] = None):
        """H (B,), its gradient in (q, p) (B, 2n), H_pp (B, n, n) and, given qd, H_pq qd (B, n),
        from one forward-over-reverse pass along the n momentum directions (and qd's)."""
        n = self.n_dof
        z = torch.cat([q, p * self._u_scale], -1)
        if self.features is None:
            x, jac_q = z, None
            dir_q = None if qd is None else torch.cat([qd, torch.zeros_like(qd)], -1)
        else:
            jet = self.features(Jet.input(z, 1))
            x, jac_q = jet.value, jet.jac[:n]  # d features / d q_i, (n, B|1, F)
            dir_q = None if qd is None else (qd.t().unsqueeze(-1) * jac_q).sum(0)
        dirs = self._u_dirs if dir_q is None else torch.cat([self._u_dirs.expand(n, *x.shape), dir_q.unsqueeze(0)])
        y, gx, hv = self._grad_hvp(x, dirs)
        E, s = self.energy_scale, self._u_scale
        gq = gx[:, :n] if jac_q is None else (jac_q * gx).sum(-1).t()
        gp = gx[:, -n:] * (E * s)
        Hv = y * E
        H_pp = hv[:n, :, -n:].permute(1, 0, 2)
        H_pp = (0.5 * (H_pp + H_pp.transpose(-1, -2))) * self._z_outer[n:, n:]  # symmetric to the last bit
        if self.kinetic_prior:
            pm = p * self._inv_mass
            Hv, gp, H_pp = Hv + 0.5 * (p * pm).sum(-1), gp + pm, H_pp + self._prior_hess[n:, n:]
        mixed = None if qd is None else hv[n, :, -n:] * (E * s)
        return Hv, torch.cat([gq * E, gp], -1), H_pp, mixed

    def _friction(self, qd: Tensor) -> Tensor:
        return torch.zeros_like(qd) if self.friction_model is None else self.friction_model(qd)

    def _cholesky(self, H_pp: Tensor) -> Tensor:
        return checked_cholesky(
            H_pp,
            "d2H/dp2 of the black-box Hamiltonian is not positive definite at {bad} of {total} states (the "
            "learned H is not convex in p there), so its velocity -> momentum map is not invertible; train "
            "longer or use the structured DeepHamiltonianNetwork",
        )

    def _tolerance(self, dtype: torch.dtype) -> float:
        if self.newton_tol is not None:
            return self.newton_tol
        return 1e-12 if dtype == torch.float64 else 1e-5

    def _momentum(self, q: Tensor, qd: Tensor) -> Tensor:
        """p with dH/dp (q, p) = qd (see the class docstring), differentiable as the implicit function."""
        n = self.n_dof
        with torch.no_grad():
            qs, qds = q.detach(), qd.detach()
            p = qds / self._inv_mass  # the momentum of the reference kinetic energy: one step saved
            tol = self._tolerance(q.dtype) * max(1.0, float(qds.abs().max())) if qds.numel() else 0.0
            err = math.inf
            for _ in range(self.newton_max_iter):
                _, grad, H_pp, _ = self._second(qs, p)
                r = grad[:, n:] - qds
                err = float(r.abs().max()) if r.numel() else 0.0
                if not math.isfinite(err):
                    break
                chol = self._cholesky(H_pp)
                p = p - torch.cholesky_solve(r.unsqueeze(-1), chol).squeeze(-1)
                if err <= tol:
                    break
            else:
                _, grad = self._derivatives(qs, p, 1)
                err = float((grad[:, n:] - qds).abs().max()) if qds.numel() else 0.0
            if not err <= tol:
                raise MomentumSolveError(
                    f"the momentum of the black-box Hamiltonian did not converge (Newton residual {err:.3g} "
                    f"> {tol:.3g} after {self.newton_max_iter} steps): H is not convex enough in p there"
                )
        if not (
            torch.is_grad_enabled()
            and (q.requires_grad or qd.requires_grad or any(t.requires_grad for t in self.parameters()))
        ):
            return p
        # one Newton step with the graph: value p (the step is below tolerance), derivative the
        # implicit function's; H_pp^-1 is held constant since it multiplies a zero residual
        _, grad = self._derivatives(q, p, 1)
        return p - torch.cholesky_solve((grad[:, n:] - qd).unsqueeze(-1), chol.detach()).squeeze(-1)

    def _at_state(self, q: Tensor, qd: Tensor):
        """(p, H, dH/dq, H_pp, H_pq qd, Cholesky of H_pp) at the momentum of (q, qd)."""
        n = self.n_dof
        p = self._momentum(q, qd)
        Hv, grad, H_pp, mixed_qd = self._second(q, p, qd)
        return p, Hv, grad[:, :n], H_pp, mixed_qd, self._cholesky(H_pp)

    # ------------------------------------------------------------------ Hamiltonian view
    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor:
        """H(q, p), (B,), one plain network evaluation."""
        q, p = self._inputs(q=q, p=p)
        return self._derivatives(q, p, 0)

    def hamiltonian_gradients(self, q: Tensor, p: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(H (B,), dH/dq (B, n), dH/dp (B, n)) from one first-order network pass."""
        q, p = self._inputs(q=q, p=p)
        Hv, grad = self._derivatives(q, p, 1)
        return Hv, grad[:, : self.n_dof], grad[:, self.n_dof :]

    def momentum(self, q: Tensor, qd: Tensor) -> Tensor:
        """p (B, n) with dH/dp (q, p) = qd, by Newton's method (class docstring)."""
        q, qd = self._inputs(q=q, qd=qd)
        return self._momentum(q, qd)

    def velocity(self, q: Tensor, p: Tensor) -> Tensor:
        """qd = dH/dp (q, p), (B, n)."""
        return self.hamiltonian_gradients(q, p)[2]

    def hamiltonian_terms(self, q: Tensor, qd: Tensor, qdd: Tensor) -> HamiltonianTerms:
        """Momentum, its rate M (qdd - H_pq qd) along the recorded motion and dH/dq (see
        :class:`HamiltonianTerms`); M^-1 r = H_pp r needs no solve here."""
        q, qd, qdd = self._inputs(q=q, qd=qd, qdd=qdd)
        n = self.n_dof
        p, Hv, dH_dq, H_pp, mixed_qd, chol = self._at_state(q, qd)
        pdot = torch.cholesky_solve((qdd - mixed_qd).unsqueeze(-1), chol).squeeze(-1)

        def solve_mass(r: Tensor) -> Tensor:
            return (H_pp @ r.unsqueeze(-1)).squeeze(-1)

        return HamiltonianTerms(
            p, pdot, dH_dq, self._friction(qd), solve_mass, lambda: self._derivatives(q, p, 1)[1][:, n:]
        )

    # ------------------------------------------------------------------ Dynamics
    def _rest(self, q: Tensor) -> Tuple[Tensor, Tensor]:
        """(V = H(q, p0), g = dH/dq (q, p0)) at the momentum p0 of zero velocity."""
        p0 = self._momentum(q, torch.zeros_like(q))
        V, grad = self._derivatives(q, p0, 1)
        return V, grad[:, : self.n_dof]

    def terms(self, q: Tensor, qd: Tensor, qdd: Optional[Tensor] = None) -> DynamicsTerms:
        """All terms (class docstring for their definitions); shapes as DynamicsTerms."""
        q, qd, qdd = self._inputs(q=q, qd=qd, qdd=qdd)
        p, Hv, dH_dq, H_pp, mixed_qd, chol = self._at_state(q, qd)
        M = torch.cholesky_inverse(chol)
        V, g = self._rest(q)
        c = dH_dq - (M @ mixed_qd.unsqueeze(-1)).squeeze(-1) - g
        f = self._friction(qd)
        if qdd is None:
            return DynamicsTerms(M, c, g, f, Hv - V, V)
        inertial = torch.cholesky_solve(qdd.unsqueeze(-1), chol).squeeze(-1)
        return DynamicsTerms(M, c, g, f, Hv - V, V, inertial, inertial + c + g + f)

    def inverse_dynamics(self, q: Tensor, qd: Tensor, qdd: Tensor) -> Tensor:
        """tau = M (qdd - H_pq qd) + dH/dq + f, (B, n)."""
        t = self.hamiltonian_terms(q, qd, qdd)
        return t.pdot + t.dH_dq + t.friction

    def forward_dynamics(self, q: Tensor, qd: Tensor, tau: Tensor) -> Tensor:
        """qdd = H_pq qd + H_pp (tau - f - dH/dq), (B, n): no solve beyond the momentum's."""
        q, qd, tau = self._inputs(q=q, qd=qd, tau=tau)
        p, Hv, dH_dq, H_pp, mixed_qd, chol = self._at_state(q, qd)
        return mixed_qd + (H_pp @ (tau - self._friction(qd) - dH_dq).unsqueeze(-1)).squeeze(-1)

    def mass_matrix(self, q: Tensor) -> Tensor:
        """M = H_pp^-1 at zero velocity, (B, n, n)."""
        (q,) = self._inputs(q=q)
        return self.terms(q, torch.zeros_like(q)).H

    def gravity(self, q: Tensor) -> Tensor:
        """g(q) = dV/dq = dH/dq at the momentum of zero velocity, (B, n)."""
        (q,) = self._inputs(q=q)
        return self._rest(q)[1]

    def potential(self, q: Tensor) -> Tensor:
        """V(q) = H(q, p0(q)), the energy at rest, (B,)."""
        (q,) = self._inputs(q=q)
        return self._rest(q)[0]

    def energy(self, q: Tensor, qd: Tensor) -> Tuple[Tensor, Tensor]:
        """(T, V), each (B,): T + V = H(q, p(q, qd)), V = H(q, p0(q))."""
        q, qd = self._inputs(q=q, qd=qd)
        E = self._derivatives(q, self._momentum(q, qd), 0)
        V = self._rest(q)[0]
        return E - V, V

    def friction(self, q: Tensor, qd: Tensor) -> Tensor:
        """Learned friction torques (B, n); zeros when the model has none."""
        q, qd = self._inputs(q=q, qd=qd)
        return self._friction(qd)

    def extra_repr(self) -> str:
        return f"n_dof={self.n_dof}, energy_scale={self.energy_scale:g}"
