"""Training losses of the Hamiltonian models, in the Hamiltonian's own variables (q, p).

Recorded data hold (q, qd, qdd, tau), never the momentum, so p is the model's own momentum of the
recorded velocity, p = p(q, qd) (M qd for the structured model, the Newton solution of
dH/dp = qd for the black box), and its rate along the recorded motion is
pdot_obs = d/dt p(q, qd) = M (qdd - H_pq qd) (:class:`delan.models.hamiltonian.HamiltonianTerms`).
Hamilton's equations predict qd_pred = dH/dp (q, p) and pdot_pred = -dH/dq + tau - f. The parts,
each a mean over samples, normalised by the spread of the training data like
:mod:`delan.losses`:

* ``pdot``: momentum-rate residual e = pdot_obs - pdot_pred, sum_j e_j^2 / var(tau_j) (pdot has
  the units of torque; the data have no pdot of their own to take a spread from);
* ``qd``: velocity residual qd_pred - qd, sum_j (.)_j^2 / var(qd_j);
* ``power``: (dH/dt - qd^T (tau - f))^2 / var(qd^T tau), with dH/dt = dH/dq qd + dH/dp pdot_obs
  the rate of H along the recorded motion (dH/dp = qd at the model's momentum);
* ``forward`` (shared with the Lagrangian models): the acceleration residual, in the mass norm
  by default: e^T M^-1 e / sum_j h_j var(qdd_j) (see :mod:`delan.losses`) — for the Hamiltonian,
  the momentum-rate residual in the metric of the kinetic energy, 1/2 e^T M^-1 e being the
  kinetic energy of a momentum e.

What these are, exactly (tested in tests/test_hamiltonian_training.py)
-------------------------------------------------------------------
Because p is the model's own momentum of the recorded qd, the identities of Hamilton's equations
make the parts the Lagrangian ones in other words: e = pdot_obs + dH/dq + f - tau = tau_model -
tau, the torque residual of the inverse dynamics, so ``pdot`` equals :mod:`delan.losses`'s
``inverse`` part; dH/dt - qd^T (tau - f) = qd^T e, so ``power`` equals its ``power`` part; and
qd_pred - qd is zero for the structured model (to rounding: p = M qd, qd_pred = M^-1 p) and
below the Newton tolerance for the black box, so the ``qd`` part has no gradient to give on
one-step data (it is a consistency check; its default weight is 0). What differs from the
Lagrangian models is the model (the black box's H(q, p) is not a Lagrangian) and, in the
trajectory losses, the state (q, p) that is integrated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from delan.dynamics import as_batch
from delan.losses import Batch, Normaliser, _forward_part, _merge_weights, _var, power_loss, unpack_batch

HAMILTONIAN_PARTS = ("pdot", "qd", "power", "forward")


@dataclass
class HamiltonianLossWeights:
    """Weights of the Hamiltonian loss parts; a part with weight 0 is not computed."""

    pdot: float = 1.0
    qd: float = 0.0
    power: float = 1.0
    forward: float = 1.0

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


def resolve_hamiltonian_weights(
    weights: Union[None, HamiltonianLossWeights, Mapping[str, float]], default: Optional[HamiltonianLossWeights] = None
) -> HamiltonianLossWeights:
    """HamiltonianLossWeights from None (the default), an instance, or a dict overriding some
    parts; ValueError naming unknown parts."""
    return _merge_weights(
        weights,
        default or HamiltonianLossWeights(),
        HAMILTONIAN_PARTS,
        "Hamiltonian loss weight",
        " (pdot is the torque residual of these models)",
    )


def velocity_variance(qd) -> Tensor:
    """(n,) per-joint variance of the training velocities (float64), floored like the others."""
    return _var(torch.as_tensor(qd).detach().double())


def hamiltonian_loss(
    model,
    batch: Batch,
    scales: Normaliser,
    qd_var: Tensor,
    weights: Union[None, HamiltonianLossWeights, Mapping[str, float]] = None,
    forward_norm: str = "mass",
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """The training loss of a Hamiltonian model on a batch (module docstring), from ONE
    ``model.hamiltonian_terms(q, qd, qdd)`` call.

    Args:
        model: a :class:`delan.DeepHamiltonianNetwork` or :class:`delan.BlackBoxHamiltonianNetwork`.
        batch: mapping with q, qd, qdd, tau (B, n), or the tuple (q, qd, qdd, tau).
        scales: :class:`delan.losses.Normaliser` of the training data; qd_var: (n,)
            :func:`velocity_variance` of the training velocities.
        weights: :class:`HamiltonianLossWeights` or a dict overriding some parts.
        forward_norm: "mass" or "joint", the norm of the forward part.
    Returns:
        (total, parts): the scalar loss and its detached parts by name (those weighted).
    """
    weights = resolve_hamiltonian_weights(weights)
    q, qd, qdd, tau = unpack_batch(batch)
    t = model.hamiltonian_terms(q, qd, qdd)
    tau = as_batch(tau, model.n_dof, "tau", like=t.pdot)
    residual = t.pdot + t.dH_dq + t.friction - tau  # pdot_obs - pdot_pred
    total = tau.new_zeros(())
    parts: Dict[str, Tensor] = {}
    if weights.pdot:
        inv_var = scales.scales(tau)[0]
        parts["pdot"] = (residual.square() * inv_var).sum(-1).mean()
        total = total + weights.pdot * parts["pdot"]
    if weights.qd:
        inv_var = (1.0 / qd_var).to(dtype=qd.dtype, device=qd.device)
        parts["qd"] = ((t.velocity() - qd).square() * inv_var).sum(-1).mean()
        total = total + weights.qd * parts["qd"]
    if weights.power:
        rate = ((t.dH_dq + t.pdot) * qd).sum(-1)  # dH/dt: dH/dq qd + dH/dp pdot_obs, dH/dp = qd
        parts["power"] = power_loss(rate, qd, tau, t.friction, scales)
        total = total + weights.power * parts["power"]
    if weights.forward:
        r = -residual  # tau - tau_model; its acceleration error is M^-1 r
        parts["forward"] = _forward_part(r, t.solve_mass(r), scales, forward_norm)
        total = total + weights.forward * parts["forward"]
    return total, {k: v.detach() for k, v in parts.items()}
