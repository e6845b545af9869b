"""Closing the loop: controllers that use a dynamics model (learned or true), and a closed-loop
simulator against the TRUE system.

Controllers are small objects called as ``tau = controller(t, q, qd)`` with q, qd torch tensors
(B, n) or (n,) (the measured state) and t in seconds; tau comes back (B, n) in q's dtype and
device, clipped to the controller's torque limits. They keep no state except where said
(:class:`EnergySwingUp` remembers which rows it has caught; :meth:`Controller.reset` forgets).

* :class:`PD`             tau = Kp (q_ref - q) + Kd (qd_ref - qd);
* :class:`FeedForwardPD`  tau = ID(q_ref, qd_ref, qdd_ref) + PD: the inverse dynamics of the
                          reference from any model with ``inverse_dynamics`` (a
                          :class:`delan.Dynamics`, learned or true, or the mlp baseline);
* :class:`ComputedTorque` tau = H(q) (qdd_ref + Kp e + Kd de) + c(q, qd) + g(q) (+ f), i.e. the
                          model's inverse dynamics at the MEASURED state with the commanded
                          acceleration; Kp [1/s^2], Kd [1/s] act on accelerations;
* :class:`EnergySwingUp`  under-actuated swing-up (cart-pole, Furuta pendulum) from a model's
                          energies, then LQR stabilisation upright (see its docstring);
                          :func:`swing_up_controller` gives one with per-system defaults.

References are callables ``t -> (q_ref, qd_ref, qdd_ref)`` returning array-likes (n,) or (1, n):
:class:`SampledReference` interpolates recorded arrays; :class:`delan.trajectories.Reference`
objects (generated trajectories) work as they are.

:func:`simulate_closed_loop` integrates the true system (``delan.integrators.rollout``, RK4 by
default) with the controller sampled at a control rate and its torque held constant in between
(zero-order hold), optionally with Gaussian sensor noise on the measured q and qd (seeded).
:func:`tracking_metrics` and :func:`swing_up_metrics` turn its result into numbers.

Conventions of the under-actuated systems (:mod:`delan.systems`): q = (x or arm angle, pendulum
angle from the downward vertical); joint 0 is actuated, joint 1 is not (its torque is zero);
upright is pendulum angle pi (mod 2 pi).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from delan.dynamics import as_batch
from delan.errors import ControlError
from delan.integrators import rollout

Gain = Union[float, Sequence[float], np.ndarray, Tensor]
ReferenceFn = Callable[[float], Tuple]


# ---------------------------------------------------------------------------- helpers
def _vector(x: Optional[Gain], n: int, name: str, like: Tensor) -> Optional[Tensor]:
    """A scalar or (n,) gain/limit as an (n,) tensor like ``like``; None stays None."""
    if x is None:
        return None
    v = torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=like.dtype, device=like.device)
    if v.dim() == 0:
        v = v.expand(n)
    if v.shape != (n,):
        raise ControlError(f"{name} must be one number or {n} numbers (one per joint), got shape {tuple(v.shape)}")
    if torch.isnan(v).any():
        raise ControlError(f"{name} must not be NaN")
    return v


def _model_dtype(model) -> Tuple[Optional[torch.dtype], Optional[torch.device]]:
    """The dtype and device a model computes in: its parameters' (nn.Module) or None (true
    systems follow their inputs)."""
    params = getattr(model, "parameters", None)
    if params is not None:
        try:
            p = next(params())
            return p.dtype, p.device
        except StopIteration:
            pass
    return None, None


def _in_model(model, *xs: Tensor) -> Tuple[Tensor, ...]:
    dtype, device = _model_dtype(model)
    if dtype is None:
        return xs
    return tuple(x.to(dtype=dtype, device=device) for x in xs)


def wrap_angle(x: Tensor) -> Tensor:
    """Angles mapped to [-pi, pi)."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


class SampledReference:
    """A recorded reference: t (T,) increasing; q, qd, qdd (T, n). Linear interpolation in
    time; before t[0] and after t[-1] the first/last sample is held (with qd, qdd of that
    sample). ``ref(t)`` returns (q, qd, qdd), each a NumPy array (n,).

    ``duration`` is t[-1] - t[0]; the reference's own time starts at 0 (t - t[0])."""

    def __init__(self, t, q, qd, qdd, name: str = "reference"):
        self.t = np.asarray(t, dtype=np.float64)
        self.t = self.t - self.t[0]
        self.q, self.qd, self.qdd = (np.asarray(x, dtype=np.float64) for x in (q, qd, qdd))
        self.name = name
        self.n_dof = self.q.shape[1]
        self.duration = float(self.t[-1])

    def __call__(self, t: float):
        t = float(t)
        k = int(np.searchsorted(self.t, t, side="right")) - 1
        if k < 0:
            return self.q[0], self.qd[0], self.qdd[0]
        if k >= len(self.t) - 1:
            return self.q[-1], self.qd[-1], self.qdd[-1]
        w = (t - self.t[k]) / (self.t[k + 1] - self.t[k])
        return tuple(x[k] + w * (x[k + 1] - x[k]) for x in (self.q, self.qd, self.qdd))


def reference_at(reference: ReferenceFn, t: float, n: int, like: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(q_ref, qd_ref, qdd_ref), each (n,) like ``like``, from any reference callable."""
    out = reference(t)
    return tuple(
        torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(n), dtype=like.dtype, device=like.device) for x in out
    )


# ---------------------------------------------------------------------------- controllers
class Controller:
    """Base of the controllers: ``tau = controller(t, q, qd)``.

    Args:
        n_dof: number of joints n.
        torque_limit: scalar or (n,) bound on |tau| per joint (None: no limit).
        reference: the callable t -> (q_ref, qd_ref, qdd_ref) it tracks, if any (the
            closed-loop simulator records it).
    """

    def __init__(self, n_dof: int, torque_limit: Optional[Gain] = None, reference: Optional[ReferenceFn] = None):
        self.n_dof = int(n_dof)
        self.reference = reference
        limit = (
            None
            if torque_limit is None
            else np.broadcast_to(np.asarray(torque_limit, dtype=np.float64), (self.n_dof,)).copy()
        )
        if limit is not None and not (np.all(limit > 0) and not np.any(np.isnan(limit))):
            raise ControlError(f"torque_limit must be positive, got {limit.tolist()}")
        self.torque_limit = limit

    def __call__(self, t: float, q: Tensor, qd: Tensor) -> Tensor:
        """Torques (B, n) for the measured state q, qd (B, n) or (n,) at time t [s]."""
        q = as_batch(q, self.n_dof, "q")
        qd = as_batch(qd, self.n_dof, "qd", like=q)
        return self.limit(self.torque(float(t), q, qd))

    def torque(self, t: float, q: Tensor, qd: Tensor) -> Tensor:
        """The unlimited control law, q, qd (B, n) -> tau (B, n); subclasses implement it."""
        raise NotImplementedError

    def limit(self, tau: Tensor) -> Tensor:
        """tau clipped to +-torque_limit per joint."""
        if self.torque_limit is None:
            return tau
        lim = torch.as_tensor(self.torque_limit, dtype=tau.dtype, device=tau.device)
        return torch.maximum(torch.minimum(tau, lim), -lim)

    def reset(self) -> None:
        """Forget any internal state (before a new closed-loop run)."""

    def _ref(self, t: float, like: Tensor):
        return reference_at(self.reference, t, self.n_dof, like)


class PD(Controller):
    """Joint-space PD tracking: tau = Kp (q_ref - q) + Kd (qd_ref - qd).

    Args:
        reference: callable t -> (q_ref, qd_ref, qdd_ref).
        kp, kd: scalar or (n,) gains [N m / rad, N m s / rad].
        torque_limit: scalar or (n,) (None: no limit).
    """

    def __init__(self, reference: ReferenceFn, kp: Gain, kd: Gain, n_dof: int, torque_limit: Optional[Gain] = None):
        super().__init__(n_dof, torque_limit, reference)
        self.kp, self.kd = kp, kd

    def feedback(self, t: float, q: Tensor, qd: Tensor) -> Tensor:
        q_ref, qd_ref, _ = self._ref(t, q)
        kp, kd = _vector(self.kp, self.n_dof, "kp", q), _vector(self.kd, self.n_dof, "kd", q)
        return kp * (q_ref - q) + kd * (qd_ref - qd)

    def torque(self, t: float, q: Tensor, qd: Tensor) -> Tensor:
        return self.feedback(t, q, qd)


class FeedForwardPD(PD):
    """Inverse-dynamics feed-forward of the reference plus PD feedback:

        tau = model.inverse_dynamics(q_ref, qd_ref, qdd_ref) + Kp (q_ref - q) + Kd (qd_ref - qd)

    The feed-forward term depends only on time (the model never sees the measured, noisy state).

    Args:
        model: anything with ``inverse_dynamics(q, qd, qdd) -> (B, n)``: a :class:`delan.Dynamics`
            (learned or true) or the mlp baseline. Evaluated in its own dtype.
        reference, kp, kd, torque_limit: as in :class:`PD`.
    """

    def __init__(self, model, reference: ReferenceFn, kp: Gain, kd: Gain, torque_limit: Optional[Gain] = None):
        super().__init__(reference, kp, kd, model.n_dof, torque_limit)
        self.model = model

    def feedforward(self, t: float, like: Tensor) -> Tensor:
        """ID(q_ref(t), qd_ref(t), qdd_ref(t)), (1, n) like ``like``."""
        q_ref, qd_ref, qdd_ref = self._ref(t, like)
        args = _in_model(self.model, q_ref[None], qd_ref[None], qdd_ref[None])
        with torch.no_grad():
            tau = self.model.inverse_dynamics(*args)
        return tau.to(dtype=like.dtype, device=like.device)

    def torque(self, t: float, q: Tensor, qd: Tensor) -> Tensor:
        return self.feedforward(t, q) + self.feedback(t, q, qd)


class ComputedTorque(Controller):
    """Computed torque (inverse-dynamics control) at the measured state:

        tau = H(q) (qdd_ref + Kp e + Kd de) + c(q, qd) + g(q) (+ f(q, qd)),  e = q_ref - q

    evaluated as ``model.inverse_dynamics(q, qd, qdd_ref + Kp e + Kd de)``. With the true model
    the error obeys e'' + Kd e' + Kp e = 0 (until torque limits bite).

    Args:
        model: a :class:`delan.Dynamics` (learned or true).
        reference: callable t -> (q_ref, qd_ref, qdd_ref).
        kp, kd: scalar or (n,) gains on accelerations [1/s^2], [1/s] (e.g. w^2 and 2 zeta w).
        torque_limit: scalar or (n,) (None: no limit).
    """

    def __init__(self, model, reference: ReferenceFn, kp: Gain, kd: Gain, torque_limit: Optional[Gain] = None):
        super().__init__(model.n_dof, torque_limit, reference)
        self.model, self.kp, self.kd = model, kp, kd

    def torque(self, t: float, q: Tensor, qd: Tensor) -> Tensor:
        q_ref, qd_ref, qdd_ref = self._ref(t, q)
        kp, kd = _vector(self.kp, self.n_dof, "kp", q), _vector(self.kd, self.n_dof, "kd", q)
        v = qdd_ref + kp * (q_ref - q) + kd * (qd_ref - qd)
        with torch.no_grad():
            tau = self.model.inverse_dynamics(*_in_model(self.model, q, qd, v))
        return tau.to(dtype=q.dtype, device=q.device)


def pd_gains(system, q: Gain, bandwidth: float = 10.0, damping: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """Joint PD gains (kp, kd), each (n,), that give each joint about the natural frequency
    ``bandwidth`` [rad/s] and damping ratio ``damping``, from the mass matrix H of ``system``
    (any Dynamics): kp = w^2 m_i, kd = 2 zeta w m_i with the effective inertia
    m_i = 1 / (H^-1)_ii, the inertia joint i feels while the others move freely.

    ``q`` is one configuration (n,) or several (T, n), e.g. samples of the reference to track;
    with several, m_i is the per-joint median over them.

    Why not H_ii: on a coupled arm (the Panda with joints 0 and 2 nearly aligned, a folded
    n-link) 1 / (H^-1)_ii can be 30x below H_ii, and gains from H_ii put the velocity loop's
    eigenvalues (of H^-1 Kd) above 1000 /s, so a 500 Hz zero-order-hold loop diverges within a few
    dozen steps; at one configuration, every diagonal entry of H^-1 Kd is 2 zeta w with m_i, so its
    eigenvalues (real, positive) are at most n * 2 zeta w. Why a median over the motion: the
    same near-alignment makes m_i at that one configuration far below its usual value, and gains
    from it alone are too soft for the rest of the motion (on the Panda the tracking error then
    grew to a radian within 3 s)."""
    q = torch.as_tensor(np.asarray(q, dtype=np.float64))
    if q.dim() == 1:
        q = q[None]
    (q,) = _in_model(system, q)
    with torch.no_grad():
        H = system.mass_matrix(q).double().cpu()
    m = (1.0 / torch.linalg.inv(H).diagonal(dim1=-2, dim2=-1)).median(0).values.numpy()
    return bandwidth**2 * m, 2.0 * damping * bandwidth * m


# ---------------------------------------------------------------------------- swing-up
def has_energies(model) -> bool:
    """Whether ``model`` is a full :class:`delan.Dynamics` (energies, H, c, g, forward dynamics):
    true systems and Lagrangian models yes, the mlp baseline (torques only) no."""
    from delan.models import FeedForwardModel

    return hasattr(model, "terms") and hasattr(model, "forward_dynamics") and not isinstance(model, FeedForwardModel)


class EnergySwingUp(Controller):
    """Energy-based swing-up of a pendulum on an actuated joint (cart-pole, Furuta pendulum) and
    LQR stabilisation upright, all from one model's dynamics (learned or true).

    Swing-up (Astrom & Furuta's energy pumping, on the model's energies): the pendulum's energy
    is E = 1/2 H_pp(q) qd_p^2 + V(q) (the model's kinetic energy with the actuated joint at rest,
    plus its potential); the target is E* = V at upright. With the pendulum's torque zero,
    dE/dt = -qd_p H_pa(q) a for an actuated acceleration a (c_p = 0 for the cart-pole; for the
    Furuta pendulum up to a centrifugal term), so the commanded acceleration

        a = a_max sat(k_E (E - E*) / E_s * sign(qd_p H_pa)) - k_x x - k_v xd

    pumps energy in (E_s = V(upright) - V(hanging), the energy the swing needs), while -k_x x -
    k_v xd keeps the actuated joint (cart position or arm angle, x) near where it started. a is
    turned into a torque by collocated partial feedback linearisation through the model's H, c,
    g, f: the pendulum row fixes its acceleration, the actuated row gives the torque.

    Stabilisation: once the pendulum is within ``catch_angle`` of upright, the row switches to
    LQR, u = -K (x - x*), with K from the model's linearisation (central differences of its
    forward dynamics) at upright rest and the actuated joint held where it was caught; it switches
    back to swing-up if the pendulum leaves ``release_angle``.

    Args:
        model: a :class:`delan.Dynamics` with ``terms`` and ``forward_dynamics`` (n = 2).
        actuated, pendulum: joint indices (default 0 and 1).
        upright: the pendulum angle of the upright position (pi: angles from hanging).
        k_energy: dimensionless energy gain k_E.
        max_accel: a_max [m/s^2 or rad/s^2] of the energy term.
        k_position, k_velocity: k_x [1/s^2], k_v [1/s] on the actuated joint during swing-up.
        catch_angle, release_angle: [rad] from upright (release >= catch).
        lqr_q: (4,) diagonal state weights of the deviations (q_0, q_1, qd_0, qd_1) from upright rest
            (joint order; the actuated joint's position relative to where it was caught); lqr_r:
            the weight of its torque.
        torque_limit: bound on |tau| of the actuated joint (the pendulum's torque is always 0).
        rate: the control rate [Hz] the controller will run at: the LQR gain is then the
            discrete-time one for that sampling period under zero-order hold (None: continuous
            time, fine when the rate is far above the closed loop's bandwidth).
    """

    def __init__(
        self,
        model,
        actuated: int = 0,
        pendulum: int = 1,
        upright: float = math.pi,
        k_energy: float = 5.0,
        max_accel: float = 5.0,
        k_position: float = 1.0,
        k_velocity: float = 1.0,
        catch_angle: float = 0.3,
        release_angle: float = 0.6,
        lqr_q: Sequence[float] = (1.0, 10.0, 1.0, 1.0),
        lqr_r: float = 1.0,
        torque_limit: Optional[float] = None,
        rate: Optional[float] = None,
    ):
        if not has_energies(model):
            raise ControlError(
                f"energy-based swing-up needs a model with energies and forward dynamics (a "
                f"delan.Dynamics); {type(model).__name__} has none (the mlp baseline predicts "
                f"torques only)"
            )
        n = model.n_dof
        if n != 2 or {actuated, pendulum} != {0, 1}:
            raise ControlError(
                f"EnergySwingUp needs a 2-joint model with one actuated joint and one pendulum, "
                f"got n_dof={n}, actuated={actuated}, pendulum={pendulum}"
            )
        if not 0 < catch_angle <= release_angle:
            raise ControlError(f"need 0 < catch_angle <= release_angle, got {catch_angle}, {release_angle}")
        limit = None
        if torque_limit is not None:
            limit = [math.inf, math.inf]
            limit[actuated] = float(torque_limit)
        super().__init__(n, limit)
        self.model = model
        self.a, self.p = int(actuated), int(pendulum)
        self.upright = float(upright)
        self.k_energy, self.max_accel = float(k_energy), float(max_accel)
        self.k_position, self.k_velocity = float(k_position), float(k_velocity)
        self.catch_angle, self.release_angle = float(catch_angle), float(release_angle)
        self.lqr_q, self.lqr_r = [float(x) for x in lqr_q], float(lqr_r)
        self.rate = None if rate is None else float(rate)
        self.K, self.tau_upright = self._lqr()
        up, down = self._rest(self.upright), self._rest(0.0)
        with torch.no_grad():
            V = model.terms(*_in_model(model, torch.cat([up, down]), torch.zeros(2, 2, dtype=torch.float64))).V
        self.energy_scale = float(V[0] - V[1])
        if not self.energy_scale > 0:
            raise ControlError(
                f"the model's potential is not higher upright than hanging (V(up) - V(down) = "
                f"{self.energy_scale:.3g}): no energy to swing up to"
            )
        self.reset()

    def reset(self) -> None:
        self._caught: Optional[Tensor] = None  # (B,) bool
        self._hold: Optional[Tensor] = None  # (B,) actuated position caught at

    def _rest(self, angle: float) -> Tensor:
        q = torch.zeros(1, 2, dtype=torch.float64)
        q[0, self.p] = angle
        return q

    def _lqr(self) -> Tuple[np.ndarray, float]:
        """LQR gain K (4,) on (q_0, q_1, qd_0, qd_1) from the model's linearised forward dynamics
        at upright rest, and the actuated torque holding that rest (the model's g_a there)."""
        model, a = self.model, self.a
        dtype, _ = _model_dtype(model)
        eps = 1e-6 if dtype in (None, torch.float64) else 1e-3
        q0 = self._rest(self.upright)
        qd0 = torch.zeros_like(q0)
        with torch.no_grad():
            tau0 = model.terms(*_in_model(model, q0, qd0)).gravity.double()
            tau0[0, self.p] = 0.0

            def f(x: np.ndarray, u: float) -> np.ndarray:
                q = q0 + torch.as_tensor(x[:2])[None]
                qd = torch.as_tensor(x[2:])[None]
                tau = tau0.clone()
                tau[0, a] += u
                qdd = model.forward_dynamics(*_in_model(model, q, qd, tau))
                return np.concatenate([x[2:], qdd[0].double().cpu().numpy()])

            A = np.stack([(f(e, 0.0) - f(-e, 0.0)) / (2 * eps) for e in np.eye(4) * eps], axis=1)
            B = ((f(np.zeros(4), eps) - f(np.zeros(4), -eps)) / (2 * eps))[:, None]
        Q, R = np.diag(self.lqr_q), np.array([[self.lqr_r]])
        if not np.all(np.isfinite(A)) or not np.all(np.isfinite(B)):
            raise ControlError("the model's dynamics upright are not finite: no LQR to stabilise with")
        try:
            K = self._lqr_gain(A, B, Q, R)
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise ControlError(
                f"no LQR gain for the model's linearisation upright (not stabilisable from the actuated joint?): {exc}"
            ) from None
        return K, float(tau0[0, a])

    def _lqr_gain(self, A: np.ndarray, B: np.ndarray, Q: np.ndarray, R: np.ndarray) -> np.ndarray:
        from scipy.linalg import expm, solve_continuous_are, solve_discrete_are

        if self.rate is None:
            P = solve_continuous_are(A, B, Q, R)
            K = (B.T @ P / self.lqr_r)[0]
        else:  # zero-order-hold discretisation at the control period
            dt = 1.0 / self.rate
            M = expm(np.block([[A, B], [np.zeros((1, 5))]]) * dt)
            Ad, Bd = M[:4, :4], M[:4, 4:]
            P = solve_discrete_are(Ad, Bd, Q * dt, R * dt)
            K = np.linalg.solve(R * dt + Bd.T @ P @ Bd, Bd.T @ P @ Ad)[0]
        return K

    def _error_from_upright(self, q: Tensor) -> Tensor:
        return wrap_angle(q[:, self.p] - self.upright)

    def torque(self, t: float, q: Tensor, qd: Tensor) -> Tensor:
        a, p = self.a, self.p
        B = q.shape[0]
        if self._caught is None or self._caught.shape[0] != B:
            self._caught = torch.zeros(B, dtype=torch.bool, device=q.device)
            self._hold = torch.zeros(B, dtype=q.dtype, device=q.device)
        err = self._error_from_upright(q)
        near, far = err.abs() < self.catch_angle, err.abs() > self.release_angle
        newly = near & ~self._caught
        self._hold = torch.where(newly, q[:, a], self._hold)
        self._caught = (self._caught | near) & ~far

        # one model evaluation for the state and the upright potential at the same x
        up = q.clone()
        up[:, p] = self.upright
        with torch.no_grad():
            terms = self.model.terms(*_in_model(self.model, torch.cat([q, up]), torch.cat([qd, torch.zeros_like(qd)])))
        H, V = terms.H[:B].to(q.dtype), terms.V.to(q.dtype)
        h = (terms.coriolis + terms.gravity + terms.friction)[:B].to(q.dtype)
        E = 0.5 * H[:, p, p] * qd[:, p] ** 2 + V[:B]
        E_target = V[B:]
        direction = torch.sign(qd[:, p] * H[:, p, a])
        direction = torch.where(direction == 0, torch.ones_like(direction), direction)  # kick from rest
        pump = (self.k_energy * (E - E_target) / self.energy_scale * direction).clamp(-1.0, 1.0)
        accel = self.max_accel * pump - self.k_position * q[:, a] - self.k_velocity * qd[:, a]
        # collocated partial feedback linearisation: the pendulum row (zero torque) gives its qdd
        qdd_p = -(H[:, p, a] * accel + h[:, p]) / H[:, p, p]
        tau_swing = H[:, a, a] * accel + H[:, a, p] * qdd_p + h[:, a]

        K = torch.as_tensor(self.K, dtype=q.dtype, device=q.device)
        e = torch.zeros_like(q)
        e[:, a], e[:, p] = q[:, a] - self._hold, err
        tau_lqr = self.tau_upright - torch.cat([e, qd], -1) @ K
        tau = torch.zeros_like(q)
        tau[:, a] = torch.where(self._caught, tau_lqr, tau_swing)
        return tau

    def mode(self) -> Optional[Tensor]:
        """(B,) bool: which rows are in LQR (caught) mode after the last call."""
        return self._caught


# tuned on the true systems of delan.systems with their default parameters: from rest, with
# 0.01 rad (m) and 0.01 rad/s (m/s) sensor noise, up within ~5 s at 200-1000 Hz
_SWING_UP_OPTIONS = ("k_energy", "max_accel", "k_position", "k_velocity", "torque_limit", "lqr_q", "lqr_r")
SWING_UP_DEFAULTS: Dict[str, Dict[str, object]] = {
    system: dict(zip(_SWING_UP_OPTIONS, values))
    for system, values in {
        # system: (k_energy, max_accel, k_position, k_velocity, torque_limit, lqr_q, lqr_r)
        "cartpole": (30.0, 4.0, 2.0, 2.0, 10.0, (1.0, 20.0, 1.0, 1.0), 0.1),
        "furuta": (30.0, 20.0, 0.0, 1.0, 0.05, (1.0, 20.0, 0.1, 0.1), 100.0),
    }.items()
}


def swing_up_controller(system: str, model, **overrides) -> EnergySwingUp:
    """An :class:`EnergySwingUp` for the named system ("cartpole" or "furuta") with the defaults of
    :data:`SWING_UP_DEFAULTS`, using ``model``'s dynamics (learned or true); ``overrides`` replace
    any of its arguments."""
    key = system.strip().lower().replace("_", "-").replace("cart-pole", "cartpole")
    if key not in SWING_UP_DEFAULTS:
        raise ControlError(f"no swing-up for system {system!r}; systems with one: {', '.join(SWING_UP_DEFAULTS)}")
    return EnergySwingUp(model, **{**SWING_UP_DEFAULTS[key], **overrides})


# ---------------------------------------------------------------------------- closed loop
class ClosedLoopResult(NamedTuple):
    """A closed-loop run sampled at the control instants t_k = k / rate, time first.

    t (T,); q, qd (T, n) - or (T, B, n) for a batch - the TRUE state at t_k; tau the torque
    applied over [t_k, t_k+1) (same shape; the last one is what the controller asked at the end);
    q_ref, qd_ref (T, n) the controller's reference at t_k (None without one); measured_q,
    measured_qd what the controller saw (the true state plus sensor noise)."""

    t: Tensor
    q: Tensor
    qd: Tensor
    tau: Tensor
    q_ref: Optional[Tensor]
    qd_ref: Optional[Tensor]
    measured_q: Tensor
    measured_qd: Tensor


def simulate_closed_loop(
    system,
    controller: Callable[[float, Tensor, Tensor], Tensor],
    q0,
    qd0=None,
    duration: float = 5.0,
    rate: float = 500.0,
    substeps: int = 1,
    method: str = "rk4",
    noise: Union[float, Tuple[float, float]] = 0.0,
    seed: Optional[int] = None,
    reference: Optional[ReferenceFn] = None,
) -> ClosedLoopResult:
    """Run ``controller`` in closed loop with the TRUE dynamics ``system``.

    Every 1 / rate seconds the controller gets the measured state (true state + Gaussian noise)
    and returns a torque, which is held constant until the next control instant (zero-order
    hold) while ``delan.integrators.rollout`` integrates the system over the period in
    ``substeps`` steps of ``method``.

    Args:
        system: the true :class:`delan.Dynamics` (e.g. ``delan.systems.make_system("two-link")``).
        controller: ``tau = controller(t, q, qd)`` with q, qd (B, n); a :class:`Controller` is
            reset first.
        q0, qd0: initial true state (n,) or (B, n) (qd0 None: at rest); float64 unless a tensor
            of another dtype is given.
        duration: seconds to simulate (rounded to whole control periods).
        rate: control rate [Hz].
        substeps: integration steps per control period.
        method: integrator of :func:`delan.integrators.rollout` (fixed-step: euler, symplectic, rk4).
        noise: standard deviation of the sensor noise on q and qd; a pair gives (sigma_q, sigma_qd).
        seed: seed of the noise (the same seed gives the same noise; None: a fresh one).
        reference: (q_ref, qd_ref) to record; default the controller's ``reference`` if it has one.
    Returns:
        :class:`ClosedLoopResult` with T = round(duration * rate) + 1 samples.
    """
    if not (rate > 0 and math.isfinite(rate)):
        raise ControlError(f"rate must be a positive number of Hz, got {rate}")
    if not (duration > 0 and math.isfinite(duration)):
        raise ControlError(f"duration must be positive, got {duration}")
    if method == "dopri5":
        raise ControlError("simulate_closed_loop needs a fixed-step method (euler, symplectic, rk4)")
    sigma_q, sigma_qd = (float(noise), float(noise)) if np.ndim(noise) == 0 else (float(noise[0]), float(noise[1]))
    if not (sigma_q >= 0 and sigma_qd >= 0):
        raise ControlError(f"noise must be >= 0, got {noise}")
    q = q0 if isinstance(q0, Tensor) else torch.as_tensor(np.asarray(q0, dtype=np.float64))
    single = q.dim() == 1
    q = as_batch(q, system.n_dof, "q0")
    qd = (
        torch.zeros_like(q)
        if qd0 is None
        else as_batch(torch.as_tensor(qd0, dtype=q.dtype, device=q.device), system.n_dof, "qd0")
    )
    qd = qd.expand_as(q).clone()
    if hasattr(controller, "reset"):
        controller.reset()
    if reference is None:
        reference = getattr(controller, "reference", None)
    gen = torch.Generator(device=q.device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    dt = 1.0 / rate
    steps = int(round(duration * rate))
    h = dt / int(substeps)

    def measure(x: Tensor, sigma: float) -> Tensor:
        if sigma == 0:
            return x
        return x + sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)

    ts, qs, qds, taus, mqs, mqds = [], [], [], [], [], []
    for k in range(steps + 1):
        t = k * dt
        mq, mqd = measure(q, sigma_q), measure(qd, sigma_qd)
        tau = torch.as_tensor(controller(t, mq, mqd), dtype=q.dtype, device=q.device).expand_as(q)
        ts.append(t)
        qs.append(q)
        qds.append(qd)
        taus.append(tau)
        mqs.append(mq)
        mqds.append(mqd)
        if k == steps:
            break
        held = tau.clone()
        r = rollout(system, q, qd, lambda _t, _q, _qd, held=held: held, dt=h, steps=int(substeps), method=method)
        q, qd = r.q[-1], r.qd[-1]
    out = [torch.stack(x) for x in (qs, qds, taus, mqs, mqds)]
    if single:
        out = [x[:, 0] for x in out]
    t_col = torch.as_tensor(ts, dtype=q.dtype)
    q_ref = qd_ref = None
    if reference is not None:
        refs = [reference_at(reference, t, system.n_dof, out[0]) for t in ts]
        q_ref = torch.stack([r[0] for r in refs])
        qd_ref = torch.stack([r[1] for r in refs])
    return ClosedLoopResult(t_col, out[0], out[1], out[2], q_ref, qd_ref, out[3], out[4])


# ---------------------------------------------------------------------------- metrics
def tracking_metrics(result: ClosedLoopResult) -> Dict[str, object]:
    """Tracking error and effort of a closed-loop run with a reference (one trajectory, or the
    mean over a batch for the scalars).

    Returns a dict of plain Python values: ``rms_error`` and ``max_error`` per joint (lists, of
    q - q_ref over all samples), ``rms_error_norm`` (sqrt of the mean squared error norm),
    ``rms_torque`` per joint, ``effort`` (mean over time of |tau|^2, the integral of |tau|^2 dt
    divided by the duration), ``max_torque`` per joint.
    """
    if result.q_ref is None:
        raise ControlError("tracking_metrics needs a run with a reference")
    e = (result.q - (result.q_ref if result.q.dim() == 2 else result.q_ref[:, None])).double()
    e = e.reshape(-1, e.shape[-1])
    tau = result.tau.double().reshape(-1, e.shape[-1])
    return dict(
        rms_error=e.pow(2).mean(0).sqrt().tolist(),
        max_error=e.abs().amax(0).tolist(),
        rms_error_norm=float(e.pow(2).sum(-1).mean().sqrt()),
        rms_torque=tau.pow(2).mean(0).sqrt().tolist(),
        max_torque=tau.abs().amax(0).tolist(),
        effort=float(tau.pow(2).sum(-1).mean()),
    )


def swing_up_metrics(
    result: ClosedLoopResult, pendulum: int = 1, upright: float = math.pi, tolerance: float = 0.1, hold: float = 2.0
) -> Dict[str, object]:
    """Whether (and when) the pendulum got upright and stayed: success when its angle stays within
    ``tolerance`` rad of upright for ``hold`` seconds; the time is the start of the first such
    stretch. For a batch, lists with one value per row (time None where it failed).

    Returns ``success`` (bool or list), ``time`` (seconds or None, or a list), ``success_rate``
    (fraction of rows), ``final_error`` (rad from upright at the end), ``rms_torque`` per joint.
    """
    err = wrap_angle(result.q[..., pendulum] - upright).abs()
    single = err.dim() == 1
    err = err[:, None] if single else err
    t = result.t.double().numpy()
    inside = (err < tolerance).cpu().numpy()
    successes, times = [], []
    for b in range(inside.shape[1]):
        found = None
        start = None
        for k in range(len(t)):
            if inside[k, b]:
                start = t[k] if start is None else start
                if t[k] - start >= hold - 1e-9:
                    found = start
                    break
            else:
                start = None
        successes.append(found is not None)
        times.append(None if found is None else float(found))
    tau = result.tau.double().reshape(-1, result.tau.shape[-1])
    final = err[-1].double().tolist()
    return dict(
        success=successes[0] if single else successes,
        time=times[0] if single else times,
        success_rate=float(np.mean(successes)),
        final_error=final[0] if single else final,
        rms_torque=tau.pow(2).mean(0).sqrt().tolist(),
    )
