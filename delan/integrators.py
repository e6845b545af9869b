"""Time integration of any :class:`delan.Dynamics` (true systems and learned models alike).

One entry point, :func:`rollout`, with the methods of :data:`INTEGRATORS`:

* ``euler``      explicit Euler (q and qd both from the old state), first order;
* ``symplectic`` implicit midpoint rule in the canonical variables (q, p = H(q) qd), second
                 order, symplectic and symmetric: for a conservative system (zero torque, no
                 friction) the energy error stays bounded, O(dt^2), over long horizons instead of
                 drifting secularly as rk4's does (:func:`implicit_midpoint_step`);
* ``rk4``        classical fixed-step Runge-Kutta, fourth order;
* ``dopri5``     adaptive Dormand-Prince 5(4) through scipy's ``solve_ivp(method="RK45")``,
                 reported on the fixed grid t_k = k dt (float64 numpy under the hood).

Torques come from ``tau_fn(t, q, qd) -> tau`` (B, n) or (n,): zero (None), a recording
(:func:`interpolated_torque`) or a controller.

Learned models can blow up: their state turns non-finite or their mass matrix stops being
positive definite, and the Cholesky solve raises. By default that error propagates (plain
behaviour); ``rollout(..., stop_on_divergence=True)`` instead stops the diverged trajectory at
the last finite state and records when it happened in ``Rollout.diverged_at``.
"""

from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from delan.dynamics import Dynamics

TorqueFn = Callable[[float, Tensor, Tensor], Tensor]
INTEGRATORS = ["euler", "symplectic", "rk4", "dopri5"]


class Rollout(NamedTuple):
    """A simulated trajectory, time first: t (T,); q, qd, qdd (T, n), or (T, B, n) for a batch.

    T = steps + 1 (the initial state included); qdd[k] is the acceleration at (t_k, q_k, qd_k).

    ``diverged_at`` is only set by ``rollout(..., stop_on_divergence=True)``: None when nothing
    diverged; else, for one trajectory, the time [s] of the step that failed (the rollout then
    ends one step earlier, at its last finite state, so T <= steps + 1), and for a batch a list
    with one such time or None per trajectory (a diverged trajectory's q, qd, qdd are NaN from
    that time on; the rollout ends when every trajectory has diverged).
    """

    t: Tensor
    q: Tensor
    qd: Tensor
    qdd: Tensor
    diverged_at: Optional[Union[float, List[Optional[float]]]] = None


class _SolveFailed(Exception):
    """The forward dynamics raised (Cholesky of an indefinite or non-finite mass matrix, ...)."""


def zero_torque(t: float, q: Tensor, qd: Tensor) -> Tensor:
    """No applied torque (free motion)."""
    return torch.zeros_like(q)


def interpolated_torque(t_rec, tau_rec) -> TorqueFn:
    """Replay a recorded torque (T,) times / (T, n) values, linearly interpolated in time.

    Outside the recording the first/last value is held.
    """
    t_rec = np.asarray(t_rec, float)
    tau_rec = np.asarray(tau_rec, float)

    def tau_fn(t: float, q: Tensor, qd: Tensor) -> Tensor:
        row = np.array([np.interp(t, t_rec, tau_rec[:, j]) for j in range(tau_rec.shape[1])])
        return torch.as_tensor(row, dtype=q.dtype, device=q.device).expand_as(q)

    return tau_fn


def _accel(dynamics: Dynamics, tau_fn: TorqueFn, t: float, q: Tensor, qd: Tensor) -> Tensor:
    return dynamics.forward_dynamics(q, qd, _plain_torque(tau_fn, t, q, qd))


def _plain_torque(tau_fn: TorqueFn, t: float, q: Tensor, qd: Tensor) -> Tensor:
    tau = torch.as_tensor(tau_fn(t, q, qd), dtype=q.dtype, device=q.device)
    return tau.expand_as(q) if tau.dim() == 1 else tau


class _Field:
    """acc(t, q, qd) -> qdd of ``dynamics`` under ``torque(t, q, qd)`` (B, n); the symplectic step
    also uses its parts. With ``guard``, a failing dynamics (not the torque law) raises
    :class:`_SolveFailed`."""

    def __init__(self, dynamics: Dynamics, torque: Callable[[float, Tensor, Tensor], Tensor], guard: bool = False):
        self.dynamics, self.torque, self.guard = dynamics, torque, guard

    def __call__(self, t: float, q: Tensor, qd: Tensor) -> Tensor:
        tau = self.torque(t, q, qd)
        return self.call(self.dynamics.forward_dynamics, q, qd, tau)

    def call(self, fn, *args):
        """fn(*args); under ``guard`` its RuntimeError / ValueError becomes _SolveFailed."""
        if not self.guard:
            return fn(*args)
        try:
            return fn(*args)
        except (RuntimeError, ValueError) as exc:
            raise _SolveFailed(str(exc)) from exc


def rollout(
    dynamics: Dynamics,
    q0: Tensor,
    qd0: Tensor,
    tau_fn: Optional[TorqueFn] = None,
    dt: float = 1e-3,
    steps: int = 1000,
    method: str = "rk4",
    differentiable: bool = False,
    rtol: float = 1e-9,
    atol: float = 1e-10,
    stop_on_divergence: bool = False,
) -> Rollout:
    """Integrate qdd = forward_dynamics(q, qd, tau_fn(t, q, qd)) from (q0, qd0) at t = 0.

    Args:
        dynamics: any Dynamics.
        q0, qd0: initial state (n,) for one trajectory or (B, n) for a batch.
        tau_fn: torque as a function of (t, q (B, n), qd (B, n)); None = zero torque.
        dt: step [s] (output spacing for dopri5).
        steps: number of steps; the result holds steps + 1 samples.
        method: one of :data:`INTEGRATORS`.
        differentiable: keep the autograd graph through the whole rollout (fixed-step methods
            only); by default each step starts from detached tensors so memory stays flat.
        rtol, atol: tolerances of dopri5.
        stop_on_divergence: instead of raising when the forward dynamics fails (RuntimeError or
            ValueError from it, e.g. torch.linalg.LinAlgError of a Cholesky) or when the state
            turns non-finite, stop that trajectory at its last finite state and report the time
            of the failed step in ``Rollout.diverged_at`` (see :class:`Rollout`). Errors of
            ``tau_fn`` still propagate. Fixed-step methods stop each trajectory of a batch on
            its own; dopri5 integrates a batch as one system, so it stops all of them at once.
    Returns:
        Rollout(t, q, qd, qdd[, diverged_at]); dtype/device follow q0.
    """
    if method not in INTEGRATORS:
        raise ValueError(f"unknown integrator {method!r}; valid: {', '.join(INTEGRATORS)}")
    if not isinstance(q0, Tensor):
        q0 = torch.as_tensor(q0, dtype=torch.float64)
    qd0 = torch.as_tensor(qd0, dtype=q0.dtype, device=q0.device)
    single = q0.dim() == 1
    q, qd = (q0.unsqueeze(0), qd0.unsqueeze(0)) if single else (q0, qd0)
    if q.shape != qd.shape or q.shape[-1] != dynamics.n_dof:
        raise ValueError(
            f"q0 and qd0 must both be ({dynamics.n_dof},) or (B, {dynamics.n_dof}), "
            f"got {tuple(q0.shape)} and {tuple(qd0.shape)}"
        )
    tau_fn = zero_torque if tau_fn is None else tau_fn
    steps = int(steps)
    ts = [k * dt for k in range(steps + 1)]
    if stop_on_divergence:
        Q, QD, QDD, diverged = _guarded_rollout(dynamics, tau_fn, q, qd, ts, dt, method, differentiable, rtol, atol)
        t_col = torch.as_tensor(ts[: Q.shape[0]], dtype=Q.dtype, device=Q.device)
        if single:
            return Rollout(t_col, Q[:, 0], QD[:, 0], QDD[:, 0], diverged[0])
        return Rollout(t_col, Q, QD, QDD, None if all(d is None for d in diverged) else diverged)

    if method == "dopri5":
        qs, qds = _dopri5(dynamics, tau_fn, q, qd, ts, rtol, atol)
    else:
        qs, qds = [q], [qd]
        acc = _Field(dynamics, lambda t, a, b: _plain_torque(tau_fn, t, a, b))
        for k in range(steps):
            if not differentiable:
                q, qd = q.detach(), qd.detach()
            q, qd, _ = _step(method, acc, ts[k], dt, q, qd)
            if not differentiable:
                q, qd = q.detach(), qd.detach()
            qs.append(q)
            qds.append(qd)
    Q, QD = torch.stack(qs), torch.stack(qds)  # (T, B, n)
    # accelerations at the recorded states, in one batched call
    T_, B, n = Q.shape
    t_col = torch.as_tensor(ts, dtype=Q.dtype, device=Q.device)
    taus = torch.stack(
        [torch.as_tensor(tau_fn(ts[k], Q[k], QD[k]), dtype=Q.dtype, device=Q.device).expand(B, n) for k in range(T_)]
    )
    QDD = dynamics.forward_dynamics(Q.reshape(-1, n), QD.reshape(-1, n), taus.reshape(-1, n)).reshape(T_, B, n)
    if not differentiable:
        QDD = QDD.detach()
    if single:
        Q, QD, QDD = Q[:, 0], QD[:, 0], QDD[:, 0]
    return Rollout(t_col, Q, QD, QDD)


Accel = Callable[[float, Tensor, Tensor], Tensor]


def _step(method: str, acc: Accel, t: float, dt: float, q: Tensor, qd: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """One fixed step of ``method`` from (t, q, qd), each (B, n): (q_new, qd_new, qdd at (t, q, qd))."""
    if method == "euler":
        a = acc(t, q, qd)
        return q + dt * qd, qd + dt * a, a
    if method == "symplectic":
        a = acc(t, q, qd)
        q_new, qd_new = implicit_midpoint_step(acc, t, dt, q, qd, a)
        return q_new, qd_new, a
    # rk4 on the state (q, qd)
    k1v, k1a = qd, acc(t, q, qd)
    k2v = qd + 0.5 * dt * k1a
    k2a = acc(t + 0.5 * dt, q + 0.5 * dt * k1v, k2v)
    k3v = qd + 0.5 * dt * k2a
    k3a = acc(t + 0.5 * dt, q + 0.5 * dt * k2v, k3v)
    k4v = qd + dt * k3a
    k4a = acc(t + dt, q + dt * k3v, k4v)
    return (q + dt / 6 * (k1v + 2 * k2v + 2 * k3v + k4v), qd + dt / 6 * (k1a + 2 * k2a + 2 * k3a + k4a), k1a)


MIDPOINT_MAX_ITER = 100  # fixed-point iterations of one implicit midpoint step


def implicit_midpoint_step(
    acc: _Field, t: float, dt: float, q: Tensor, qd: Tensor, a0: Optional[Tensor] = None
) -> Tuple[Tensor, Tensor]:
    """One implicit midpoint step in (q, p), p = H(q) qd: (q_new, qd_new), each (B, n).

    Why this method: a mechanical system's Hamiltonian E(q, p) = 1/2 p^T H(q)^-1 p + V(q) does
    not separate into T(p) + V(q) when H depends on q (every arm, every learned model), so the
    explicit Stormer-Verlet scheme does not apply; its generalisation for such Hamiltonians is
    implicit as well. The implicit midpoint rule is symplectic for any Hamiltonian, symmetric,
    second order, needs one implicit solve of the whole state per step and evaluates torques and
    friction consistently at the midpoint::

        q1 = q0 + dt * v_m,     p1 = p0 + dt * (dT/dq(q_m, v_m) - g(q_m) - f(q_m, v_m) + tau(t + dt/2)),
        q_m = (q0 + q1) / 2,    p_m = (p0 + p1) / 2,    v_m = H(q_m)^-1 p_m

    (Hamilton's equations with -dE/dq|_p = dT/dq|_qd - g, T = 1/2 qd^T H(q) qd). Solved by fixed-point
    iteration from an explicit Taylor guess (``a0``: the acceleration at the start) until both
    updates are below ~1000 machine epsilons of the state's size; dT/dq at fixed qd comes from
    autograd of 1/2 v^T H(q) v through the dynamics' own mass matrix, so H must be
    differentiable in torch (true systems in closed form and
    the learned models are; Pinocchio systems are not). Not differentiable itself (each step starts
    from detached tensors). Raises RuntimeError (or, under a guard, _SolveFailed) when the
    iteration does not converge in :data:`MIDPOINT_MAX_ITER` steps: dt is too large for the
    dynamics.
    """
    dyn = acc.dynamics
    q, qd = q.detach(), qd.detach()
    from delan.dynamics import solve_spd

    solve = getattr(dyn, "solve_mass_matrix", solve_spd)

    def parts(q_: Tensor) -> Tuple[Tensor, Tensor]:
        """H(q_) with its graph to q_ (a leaf), gravity g(q_) detached."""
        t0 = dyn.terms(q_, torch.zeros_like(q_))
        if not t0.H.requires_grad:
            from delan.systems.panda import PinocchioSystem

            if isinstance(dyn, PinocchioSystem):
                raise ValueError(
                    f"the symplectic integrator needs the mass matrix of {type(dyn).__name__} to be "
                    f"differentiable in torch (Pinocchio's is not); use rk4 or dopri5"
                )
            # no graph from q to H in a closed-form system: H is constant (a pendulum), dT/dq = 0
        return t0.H, t0.gravity.detach()

    def midpoint(q1: Tensor, p1: Tensor) -> Tuple[Tensor, Tensor]:
        """(q0 + dt v_m, p0 + dt F_m) from the current guess (q1, p1)."""
        pm = 0.5 * (p + p1)
        with torch.enable_grad():
            qm = (0.5 * (q + q1)).detach().requires_grad_(True)
            H, g = parts(qm)
            vm = solve(H.detach(), pm)
            # dT/dq at fixed qd: T = 1/2 v^T H(q) v differentiated through H alone
            T = 0.5 * (vm.unsqueeze(-2) @ H @ vm.unsqueeze(-1)).sum()
            dT = torch.autograd.grad(T, qm)[0] if H.requires_grad else torch.zeros_like(vm)
        qm = qm.detach()
        force = dT - g - dyn.friction(qm, vm).detach() + acc.torque(tm, qm, vm)
        return q + dt * vm, p + dt * force

    def momentum(q_: Tensor, v_: Tensor) -> Tensor:
        return (dyn.mass_matrix(q_).detach() @ v_.unsqueeze(-1)).squeeze(-1)

    p = acc.call(momentum, q, qd)
    eps = torch.finfo(q.dtype).eps
    tol_q = 1e3 * eps * (1 + float(q.abs().max()))
    tol_p = 1e3 * eps * (1 + float(p.abs().max()))
    tm = t + 0.5 * dt
    # predictor: the explicit Taylor step with the acceleration at the start
    qd1 = qd + dt * a0 if a0 is not None else qd
    q1 = q + dt * qd + (0.5 * dt * dt * a0 if a0 is not None else 0.0)
    p1 = acc.call(momentum, q1, qd1)
    for _ in range(MIDPOINT_MAX_ITER):
        q_new, p_new = acc.call(midpoint, q1, p1)
        done = float((q_new - q1).abs().max()) <= tol_q and float((p_new - p1).abs().max()) <= tol_p
        q1, p1 = q_new, p_new
        if not (bool(torch.isfinite(q1).all()) and bool(torch.isfinite(p1).all())):
            break
        if done:
            return q1, acc.call(lambda a, b: solve(dyn.mass_matrix(a).detach(), b), q1, p1)
    msg = (
        f"the symplectic (implicit midpoint) step at t = {t:g} s did not converge in {MIDPOINT_MAX_ITER} "
        f"iterations; use a smaller dt (now {dt:g} s)"
    )
    if acc.guard:
        raise _SolveFailed(msg)
    raise RuntimeError(msg)


def _torque(tau_fn: TorqueFn, t: float, q: Tensor, qd: Tensor) -> Tensor:
    """tau_fn's torque as (B, n) in q's dtype/device ((n,) and (1, n) are broadcast)."""
    tau = torch.as_tensor(tau_fn(t, q, qd), dtype=q.dtype, device=q.device)
    if tau.dim() == 1 or (tau.dim() == 2 and tau.shape[0] == 1 and q.shape[0] > 1):
        tau = tau.expand_as(q)
    if tau.shape != q.shape:  # a bad torque law is the caller's error, never a "divergence"
        raise ValueError(f"tau_fn returned shape {tuple(tau.shape)}, expected {tuple(q.shape)}")
    return tau


def _row_accel(dynamics: Dynamics, tau_fn: TorqueFn, base_q: Tensor, base_qd: Tensor, rows: Tensor) -> Accel:
    """acc(t, q_rows, qd_rows) for the trajectories ``rows`` of a batch.

    tau_fn always sees the whole batch (B, n) - it may be a recording of exactly B torques -
    with the other rows held at ``base_q``, ``base_qd``. A failing forward dynamics raises
    :class:`_SolveFailed`; a failing tau_fn raises its own error.
    """
    whole = rows.numel() == base_q.shape[0]

    def torque(t: float, q: Tensor, qd: Tensor) -> Tensor:
        if whole:
            return _torque(tau_fn, t, q, qd)
        fq, fqd = base_q.clone(), base_qd.clone()
        fq[rows], fqd[rows] = q, qd
        return _torque(tau_fn, t, fq, fqd)[rows]

    return _Field(dynamics, torque, guard=True)


def _finite_rows(*xs: Tensor) -> Tensor:
    """(B,) bool: every entry of the row is finite in every x (B, n)."""
    ok = torch.ones(xs[0].shape[0], dtype=torch.bool, device=xs[0].device)
    for x in xs:
        ok &= torch.isfinite(x).all(-1)
    return ok


def _guarded_accel(dynamics: Dynamics, tau_fn: TorqueFn, t: float, q: Tensor, qd: Tensor) -> Tensor:
    """Accelerations (B, n) at (t, q, qd); NaN rows where the forward dynamics fails (row by row
    after a failed batched call, since one bad row fails a batched Cholesky)."""
    B = q.shape[0]
    rows = torch.arange(B, device=q.device)
    try:
        return _row_accel(dynamics, tau_fn, q, qd, rows)(t, q, qd)
    except _SolveFailed:
        if B == 1:
            return torch.full_like(q, float("nan"))
    out = torch.full_like(q, float("nan"))
    for r in range(B):
        one = rows[r : r + 1]
        try:
            out[r] = _row_accel(dynamics, tau_fn, q, qd, one)(t, q[one], qd[one])[0]
        except _SolveFailed:
            pass
    return out


def _guarded_rollout(
    dynamics: Dynamics,
    tau_fn: TorqueFn,
    q: Tensor,
    qd: Tensor,
    ts: Sequence[float],
    dt: float,
    method: str,
    differentiable: bool,
    rtol: float,
    atol: float,
) -> Tuple[Tensor, Tensor, Tensor, List[Optional[float]]]:
    """The rollout of ``stop_on_divergence=True``: (Q, QD, QDD (T, B, n), diverged_at per row)."""
    B, n = q.shape
    nan = torch.full_like(q, float("nan"))
    diverged: List[Optional[float]] = [None] * B
    if method == "dopri5":
        qs, qds, failed_at = _dopri5(dynamics, tau_fn, q, qd, ts, rtol, atol, guarded=True)
        if failed_at is not None:
            diverged = [failed_at] * B
        Q, QD = torch.stack(qs), torch.stack(qds)
        QDD = torch.stack([_guarded_accel(dynamics, tau_fn, ts[k], Q[k], QD[k]) for k in range(len(qs))])
        return Q, QD, QDD, diverged
    live = torch.ones(B, dtype=torch.bool, device=q.device)
    all_rows = torch.arange(B, device=q.device)
    n_live = B
    qs, qds, qdds = [q], [qd], []
    for k in range(len(ts) - 1):
        t = ts[k]
        if not differentiable:
            q, qd = q.detach(), qd.detach()
        rows = all_rows if n_live == B else torch.nonzero(live)[:, 0]
        try:
            if n_live == B:  # no gathering: the common case stays as cheap as a plain rollout
                q_new, qd_new, acc0 = _step(method, _row_accel(dynamics, tau_fn, q, qd, rows), t, dt, q, qd)
            else:
                qn, qdn, a0 = _step(method, _row_accel(dynamics, tau_fn, q, qd, rows), t, dt, q[rows], qd[rows])
                q_new, qd_new, acc0 = nan.clone(), nan.clone(), nan.clone()
                q_new[rows], qd_new[rows], acc0[rows] = qn, qdn, a0
        except _SolveFailed:
            # one bad trajectory fails the batched Cholesky: find it by stepping each on its own
            q_new, qd_new, acc0 = nan.clone(), nan.clone(), nan.clone()
            for r in rows.tolist():
                one = rows.new_tensor([r])
                try:
                    qn, qdn, a0 = _step(method, _row_accel(dynamics, tau_fn, q, qd, one), t, dt, q[one], qd[one])
                    q_new[one], qd_new[one], acc0[one] = qn, qdn, a0
                except _SolveFailed:
                    pass
        qdds.append(acc0)
        if n_live == B and bool(torch.isfinite(q_new).all()) and bool(torch.isfinite(qd_new).all()):
            q, qd = q_new, qd_new  # nothing diverged: no masking needed
            qs.append(q)
            qds.append(qd)
            continue
        ok = _finite_rows(q_new, qd_new) & live
        n_ok = int(ok.sum())
        for r in torch.nonzero(live & ~ok)[:, 0].tolist():
            diverged[r] = ts[k + 1]
        live, n_live = ok, n_ok
        if n_live == 0:
            break
        # a diverged row keeps its last finite state as input (tau_fn sees finite values), NaN in the output
        q = torch.where(live.unsqueeze(-1), q_new, q)
        qd = torch.where(live.unsqueeze(-1), qd_new, qd)
        qs.append(torch.where(live.unsqueeze(-1), q, nan))
        qds.append(torch.where(live.unsqueeze(-1), qd, nan))
    if len(qdds) < len(qs):  # the acceleration at the final state
        acc_last = _guarded_accel(dynamics, tau_fn, ts[len(qs) - 1], q, qd)
        qdds.append(torch.where(live.unsqueeze(-1), acc_last, nan))
    Q, QD, QDD = torch.stack(qs), torch.stack(qds), torch.stack(qdds)
    if not differentiable:
        Q, QD, QDD = Q.detach(), QD.detach(), QDD.detach()
    return Q, QD, QDD, diverged


def _dopri5(dynamics, tau_fn, q, qd, ts, rtol, atol, guarded: bool = False):
    """(q list, qd list) on the grid ``ts``; with ``guarded`` also the time of the first grid
    point not reached (None if all were), instead of raising when the integration fails."""
    from scipy.integrate import solve_ivp

    B, n = q.shape
    dtype, device = q.dtype, q.device

    def rhs(t, y):
        y = torch.as_tensor(y, dtype=dtype, device=device).reshape(2, B, n)
        with torch.no_grad():
            if guarded:
                try:
                    a = _row_accel(dynamics, tau_fn, y[0], y[1], torch.arange(B, device=device))(t, y[0], y[1])
                except _SolveFailed:
                    # NaN makes solve_ivp reject the step and shrink it until it gives up
                    return np.full(2 * B * n, np.nan)
            else:
                a = _accel(dynamics, tau_fn, t, y[0], y[1])
        return np.concatenate([y[1].reshape(-1).cpu().numpy(), a.reshape(-1).cpu().numpy()])

    y0 = torch.stack([q, qd]).detach().reshape(-1).cpu().numpy().astype(np.float64)
    sol = solve_ivp(rhs, (ts[0], ts[-1]), y0, method="RK45", t_eval=ts, rtol=rtol, atol=atol)
    if not guarded:
        if not sol.success:
            raise RuntimeError(f"dopri5 failed: {sol.message}")
        Y = torch.as_tensor(sol.y.T, dtype=dtype, device=device).reshape(len(ts), 2, B, n)
        return list(Y[:, 0]), list(Y[:, 1])
    Y = np.asarray(sol.y.T).reshape(-1, 2, B, n)
    good = np.isfinite(Y).reshape(len(Y), -1).all(-1)
    reached = len(Y) if good.all() else int(np.argmin(good))
    reached = max(reached, 1)  # the initial state is always kept
    Y = torch.as_tensor(Y[:reached], dtype=dtype, device=device)
    failed_at = None if reached == len(ts) else ts[reached]
    return list(Y[:, 0]), list(Y[:, 1]), failed_at
