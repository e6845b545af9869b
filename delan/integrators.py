"""Time integration of any :class:`delan.Dynamics` (true systems and learned models alike).

One entry point, :func:`rollout`, with the methods of :data:`INTEGRATORS`:

* ``euler``      explicit Euler (q and qd both from the old state), first order;
* ``symplectic`` semi-implicit Euler (qd first, then q with the new qd), first order but
                 with bounded energy error for conservative systems;
* ``rk4``        classical fixed-step Runge-Kutta, fourth order;
* ``dopri5``     adaptive Dormand-Prince 5(4) through scipy's ``solve_ivp(method="RK45")``,
                 reported on the fixed grid t_k = k dt (float64 numpy under the hood).

Torques come from ``tau_fn(t, q, qd) -> tau`` (B, n) or (n,): zero (None), a recording
(:func:`interpolated_torque`) or a controller.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from delan.dynamics import Dynamics

TorqueFn = Callable[[float, Tensor, Tensor], Tensor]
INTEGRATORS = ["euler", "symplectic", "rk4", "dopri5"]


class Rollout(NamedTuple):
    """A simulated trajectory, time first: t (T,); q, qd, qdd (T, n), or (T, B, n) for a batch.

    T = steps + 1 (the initial state included); qdd[k] is the acceleration at (t_k, q_k, qd_k).
    """

    t: Tensor
    q: Tensor
    qd: Tensor
    qdd: Tensor


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
    tau = torch.as_tensor(tau_fn(t, q, qd), dtype=q.dtype, device=q.device)
    if tau.dim() == 1:
        tau = tau.expand_as(q)
    return dynamics.forward_dynamics(q, qd, tau)


def rollout(dynamics: Dynamics, q0: Tensor, qd0: Tensor, tau_fn: Optional[TorqueFn] = None,
            dt: float = 1e-3, steps: int = 1000, method: str = "rk4", differentiable: bool = False,
            rtol: float = 1e-9, atol: float = 1e-10) -> Rollout:
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
    Returns:
        Rollout(t, q, qd, qdd); dtype/device follow q0.
    """
    if method not in INTEGRATORS:
        raise ValueError(f"unknown integrator {method!r}; valid: {', '.join(INTEGRATORS)}")
    if not isinstance(q0, Tensor):
        q0 = torch.as_tensor(q0, dtype=torch.float64)
    qd0 = torch.as_tensor(qd0, dtype=q0.dtype, device=q0.device)
    single = q0.dim() == 1
    q, qd = (q0.unsqueeze(0), qd0.unsqueeze(0)) if single else (q0, qd0)
    if q.shape != qd.shape or q.shape[-1] != dynamics.n_dof:
        raise ValueError(f"q0 and qd0 must both be ({dynamics.n_dof},) or (B, {dynamics.n_dof}), "
                         f"got {tuple(q0.shape)} and {tuple(qd0.shape)}")
    tau_fn = zero_torque if tau_fn is None else tau_fn
    steps = int(steps)
    ts = [k * dt for k in range(steps + 1)]

    if method == "dopri5":
        qs, qds = _dopri5(dynamics, tau_fn, q, qd, ts, rtol, atol)
    else:
        qs, qds = [q], [qd]
        acc = lambda t, a, b: _accel(dynamics, tau_fn, t, a, b)  # noqa: E731
        for k in range(steps):
            t = ts[k]
            if not differentiable:
                q, qd = q.detach(), qd.detach()
            if method == "euler":
                a = acc(t, q, qd)
                q, qd = q + dt * qd, qd + dt * a
            elif method == "symplectic":
                qd = qd + dt * acc(t, q, qd)
                q = q + dt * qd
            else:  # rk4 on the state (q, qd)
                k1v, k1a = qd, acc(t, q, qd)
                k2v = qd + 0.5 * dt * k1a
                k2a = acc(t + 0.5 * dt, q + 0.5 * dt * k1v, k2v)
                k3v = qd + 0.5 * dt * k2a
                k3a = acc(t + 0.5 * dt, q + 0.5 * dt * k2v, k3v)
                k4v = qd + dt * k3a
                k4a = acc(t + dt, q + dt * k3v, k4v)
                q = q + dt / 6 * (k1v + 2 * k2v + 2 * k3v + k4v)
                qd = qd + dt / 6 * (k1a + 2 * k2a + 2 * k3a + k4a)
            if not differentiable:
                q, qd = q.detach(), qd.detach()
            qs.append(q)
            qds.append(qd)
    Q, QD = torch.stack(qs), torch.stack(qds)  # (T, B, n)
    # accelerations at the recorded states, in one batched call
    T_, B, n = Q.shape
    t_col = torch.as_tensor(ts, dtype=Q.dtype, device=Q.device)
    taus = torch.stack([torch.as_tensor(tau_fn(ts[k], Q[k], QD[k]), dtype=Q.dtype, device=Q.device).expand(B, n)
                        for k in range(T_)])
    QDD = dynamics.forward_dynamics(Q.reshape(-1, n), QD.reshape(-1, n), taus.reshape(-1, n)).reshape(T_, B, n)
    if not differentiable:
        QDD = QDD.detach()
    if single:
        Q, QD, QDD = Q[:, 0], QD[:, 0], QDD[:, 0]
    return Rollout(t_col, Q, QD, QDD)


def _dopri5(dynamics, tau_fn, q, qd, ts, rtol, atol):
    from scipy.integrate import solve_ivp

    B, n = q.shape
    dtype, device = q.dtype, q.device

    def rhs(t, y):
        y = torch.as_tensor(y, dtype=dtype, device=device).reshape(2, B, n)
        with torch.no_grad():
            a = _accel(dynamics, tau_fn, t, y[0], y[1])
        return np.concatenate([y[1].reshape(-1).cpu().numpy(), a.reshape(-1).cpu().numpy()])

    y0 = torch.stack([q, qd]).detach().reshape(-1).cpu().numpy().astype(np.float64)
    sol = solve_ivp(rhs, (ts[0], ts[-1]), y0, method="RK45", t_eval=ts, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"dopri5 failed: {sol.message}")
    Y = torch.as_tensor(sol.y.T, dtype=dtype, device=device).reshape(len(ts), 2, B, n)
    return list(Y[:, 0]), list(Y[:, 1])
