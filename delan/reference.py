"""The reference Euler–Lagrange equation through torch.autograd / torch.func.

The yardstick for tests and the baseline of the benchmarks: it sees only energy functions
(values), never the closed-form derivative code of the models, and lets autograd differentiate
them. It is batched and strong, the way one would write it by hand:

* :func:`euler_lagrange` for a mass matrix and potential ``(H, V) = fn(q)``: ONE forward pass
  gives H and V; ONE reverse pass (``torch.autograd.grad``, ``create_graph`` when training)
  gives d(T - V)/dq; ONE Jacobian-vector product gives Hdot qd. The product is taken by the
  double-backward trick (two cheap reverse passes through H qd) rather than ``torch.func.jvp``:
  in eager PyTorch that is the faster of the two (about 1.5x for a training step of a 64-wide
  DeLaN on one CPU thread), and the baseline should be the strongest we know::

      tau = H qdd + Hdot qd - d(T - V)/dq (+ f),   T = 1/2 qd^T H qd

* :func:`euler_lagrange_from_lagrangian` for any Lagrangian L(q, qd) (black-box models, true
  systems): tau = d/dt dL/dqd - dL/dq, with ``torch.func.grad`` and one ``torch.func.jvp`` along
  (qd, qdd).

All functions take batches (B, n) and use no per-sample loop: samples are independent, so the
gradient of the batch sum is the per-sample gradient.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from delan.dynamics import DynamicsTerms

MassPotential = Callable[[Tensor], Tuple[Tensor, Tensor]]
Lagrangian = Callable[[Tensor, Tensor], Tensor]
Energy = Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]


def _mv(H: Tensor, v: Tensor) -> Tensor:
    return (H @ v.unsqueeze(-1)).squeeze(-1)


def _create_graph(create_graph: Optional[bool]) -> bool:
    return torch.is_grad_enabled() if create_graph is None else create_graph


def _with_grad(q: Tensor) -> Tensor:
    return q if q.requires_grad else q.detach().requires_grad_(True)


def euler_lagrange(
    mass_potential: MassPotential,
    q: Tensor,
    qd: Tensor,
    qdd: Tensor,
    friction: Optional[Tensor] = None,
    create_graph: Optional[bool] = None,
) -> Tensor:
    """tau (B, n) by autograd from ``(H (B, n, n), V (B,)) = mass_potential(q)``.

    Args:
        mass_potential: e.g. ``model.mass_matrix_and_potential``.
        q, qd, qdd: (B, n).
        friction: friction torques (B, n) to add, if any.
        create_graph: keep the graph for a backward pass through tau (parameter gradients);
            default: whenever grad mode is on.
    """
    create_graph = _create_graph(create_graph)
    tau = reference_terms(mass_potential, q, qd, qdd, friction, create_graph, split=False).tau
    return tau if create_graph else tau.detach()


def _jvp(y: Tensor, x: Tensor, v: Tensor, create_graph: bool) -> Tensor:
    """(dy/dx) v for batched y (B, m), x (B, n), v (B, n) by the double-backward trick:
    g(u) = u^T dy/dx is linear in u, so d(g . v)/du = (dy/dx) v."""
    u = torch.zeros_like(y, requires_grad=True)
    (g,) = torch.autograd.grad(y, x, grad_outputs=u, create_graph=True)
    # retain: the caller still differentiates through the forward graph this one shares
    (out,) = torch.autograd.grad(g, u, grad_outputs=v, create_graph=create_graph, retain_graph=True)
    return out


def reference_terms(
    mass_potential: MassPotential,
    q: Tensor,
    qd: Tensor,
    qdd: Optional[Tensor] = None,
    friction: Optional[Tensor] = None,
    create_graph: Optional[bool] = None,
    split: bool = True,
) -> DynamicsTerms:
    """All terms by autograd: c = Hdot qd - dT/dq and g = dV/dq (two reverse passes).

    With ``split=False`` it does the one reverse pass of :func:`euler_lagrange` instead and
    returns c + g as ``coriolis`` with ``gravity`` zero: enough for tau, the forward dynamics and
    the losses (the strong baseline of the training benchmark). Shapes as in DynamicsTerms.
    """
    create_graph = _create_graph(create_graph)
    with torch.enable_grad():
        q = _with_grad(q)
        H, V = mass_potential(q)
        Hqd = _mv(H, qd)
        T = 0.5 * (qd * Hqd).sum(-1)
        Hdot_qd = _jvp(Hqd, q, qd, create_graph=True)
        if split:
            (dT_dq,) = torch.autograd.grad(T.sum(), q, create_graph=create_graph, retain_graph=True)
            (g,) = torch.autograd.grad(V.sum(), q, create_graph=create_graph)
        else:
            (dT_dq,) = torch.autograd.grad((T - V).sum(), q, create_graph=create_graph)
            g = torch.zeros_like(dT_dq)
    c = Hdot_qd - dT_dq
    f = torch.zeros_like(qd) if friction is None else friction
    if qdd is None:
        return DynamicsTerms(H, c, g, f, T, V)
    inertial = _mv(H, qdd)
    return DynamicsTerms(H, c, g, f, T, V, inertial, inertial + c + g + f)


def euler_lagrange_from_lagrangian(lagrangian: Lagrangian, q: Tensor, qd: Tensor, qdd: Tensor) -> Tensor:
    """tau = d/dt dL/dqd - dL/dq, (B, n), for a Lagrangian ``L(q, qd) -> (B,)``.

    d/dt dL/dqd = (d2L/dqd dq) qd + (d2L/dqd2) qdd is one forward-mode product along (qd, qdd).
    Differentiable w.r.t. the parameters inside ``lagrangian`` (torch.func composes with autograd).
    """

    def gradients(a: Tensor, b: Tensor) -> Tuple[Tensor, Tensor]:
        return torch.func.grad(lambda x, y: lagrangian(x, y).sum(), argnums=(0, 1))(a, b)

    (dL_dq, _), (_, ddt_dL_dqd) = torch.func.jvp(gradients, (q, qd), (qd, qdd))
    return ddt_dL_dqd - dL_dq


def euler_lagrange_from_energy(energy: Energy, q: Tensor, qd: Tensor, qdd: Tensor) -> Tensor:
    """tau (B, n) from ``(T, V) = energy(q, qd)`` through the Lagrangian T - V."""

    def lagrangian(a: Tensor, b: Tensor) -> Tensor:
        T, V = energy(a, b)
        return T - V

    return euler_lagrange_from_lagrangian(lagrangian, q, qd, qdd)


def energy_rate(energy: Energy, q: Tensor, qd: Tensor, qdd: Tensor) -> Tensor:
    """dE/dt (B,) of E = T + V along the motion (q, qd, qdd), by one forward-mode product."""

    def total(a: Tensor, b: Tensor) -> Tensor:
        T, V = energy(a, b)
        return T + V

    return torch.func.jvp(total, (q, qd), (qd, qdd))[1]


def lagrangian_terms(
    lagrangian: Lagrangian, q: Tensor, qd: Tensor, qdd: Optional[Tensor] = None, friction: Optional[Tensor] = None
) -> DynamicsTerms:
    """Terms of a general Lagrangian by autograd, split as the black-box model defines them.

    H = d2L/dqd2; g = -dL/dq at qd = 0; c = (d2L/dqd dq) qd - dL/dq - g;
    E = qd^T dL/dqd - L, V = -L(q, 0), T = E - V.
    """

    def grad_qd(a: Tensor, b: Tensor) -> Tensor:
        return torch.func.grad(lambda x, y: lagrangian(x, y).sum(), argnums=1)(a, b)

    def grad_q(a: Tensor, b: Tensor) -> Tensor:
        return torch.func.grad(lambda x, y: lagrangian(x, y).sum(), argnums=0)(a, b)

    n = q.shape[-1]
    L = lagrangian(q, qd)
    dL_dq = grad_q(q, qd)
    # the Hessian block, one forward-mode product per unit direction, batched by vmap
    units = torch.eye(n, dtype=q.dtype, device=q.device).unsqueeze(1).expand(n, *q.shape)

    def hvp(u: Tensor) -> Tensor:
        return torch.func.jvp(lambda b: grad_qd(q, b), (qd,), (u,))[1]

    H = torch.func.vmap(hvp)(units).permute(1, 2, 0)  # (B, n, n), symmetric
    dL_dqd, mixed_qd = torch.func.jvp(lambda a: grad_qd(a, qd), (q,), (qd,))  # (d2L/dqd dq) qd
    zero = torch.zeros_like(qd)
    g = -grad_q(q, zero)
    c = mixed_qd - dL_dq - g
    V = -lagrangian(q, zero)
    E = (qd * dL_dqd).sum(-1) - L
    f = torch.zeros_like(qd) if friction is None else friction
    if qdd is None:
        return DynamicsTerms(H, c, g, f, E - V, V)
    inertial = _mv(H, qdd)
    return DynamicsTerms(H, c, g, f, E - V, V, inertial, inertial + c + g + f)


def model_terms(
    model, q: Tensor, qd: Tensor, qdd: Optional[Tensor] = None, create_graph: Optional[bool] = None, split: bool = True
) -> DynamicsTerms:
    """Reference terms of a learned model: through ``mass_matrix_and_potential`` (structured,
    see :func:`reference_terms` for ``split``) or ``lagrangian`` (black-box), plus the model's
    own friction."""
    q = q if q.dim() == 2 else q.unsqueeze(0)
    qd = qd if qd.dim() == 2 else qd.unsqueeze(0)
    if qdd is not None and qdd.dim() == 1:
        qdd = qdd.unsqueeze(0)
    f = model.friction(q, qd)
    if hasattr(model, "mass_matrix_and_potential"):
        return reference_terms(model.mass_matrix_and_potential, q, qd, qdd, f, create_graph, split)
    if hasattr(model, "lagrangian"):
        return lagrangian_terms(model.lagrangian, q, qd, qdd, f)
    raise TypeError(f"{type(model).__name__} has neither mass_matrix_and_potential nor lagrangian")


def model_inverse_dynamics(model, q: Tensor, qd: Tensor, qdd: Tensor, create_graph: Optional[bool] = None) -> Tensor:
    """tau (B, n) of a learned model by the strongest reference path (one jvp + one grad)."""
    f = model.friction(q, qd)
    if hasattr(model, "mass_matrix_and_potential"):
        return euler_lagrange(model.mass_matrix_and_potential, q, qd, qdd, f, create_graph)
    return euler_lagrange_from_lagrangian(model.lagrangian, q, qd, qdd) + f
