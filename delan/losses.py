"""Training losses of Deep Lagrangian Networks, normalised by the spread of the training targets.

Each part is the mean over samples of the squared error norm (sum over joints), with each joint's
error divided by the variance of that joint's training target, so that joints (and parts) with
large torques do not drown the others:

* ``inverse``: torque residual  tau_model(q, qd, qdd) - tau;
* ``forward``: acceleration residual  e = H^-1 (tau - c - g - f) - qdd = H^-1 r, with the torque
  residual r = tau - tau_model. By default (``forward_norm="mass"``) it is measured in the mass
  matrix's own norm, e^T H e = r^T H^-1 r, relative to the data's sum_j h_j var(qdd_j) (h_j the
  typical inertia of joint j, :func:`typical_inertia`): a relative acceleration error in the
  metric of the kinetic energy, scale-free like the others and blind to how much of tau is
  gravity. Unlike the per-joint norm sum_j e_j^2 / var(qdd_j)
  (``forward_norm="joint"``), it cannot be lowered by inflating H: as H grows, e tends to -qdd
  and sum_j e_j^2 / var(qdd_j) to a bounded plateau (n), which a 7-DoF arm with small distal
  inertias falls into from its first steps, whereas r^T H^-1 r grows with H (and as H shrinks);
  its minimum is the true dynamics either way;
* ``power``:   energy rate residual  dE/dt - qd^T (tau - f), with dE/dt the model's rate of change
  of T + V along the recorded motion. By the structure of the Euler–Lagrange equation,
  dE/dt = qd^T (H qdd + c + g) (qd^T c = 1/2 qd^T Hdot qd), so it is computed from the same terms.

:func:`delan_loss` gets all parts from ONE ``model.terms(q, qd, qdd)`` call.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from delan.dynamics import DynamicsTerms, as_batch, solve_spd

Batch = Union[Mapping[str, Tensor], Sequence[Tensor]]
PARTS = ("inverse", "forward", "power")
FORWARD_NORMS = ("mass", "joint")


@dataclass
class LossWeights:
    """Weights of the loss parts; a part with weight 0 is not computed."""

    inverse: float = 1.0
    forward: float = 1.0
    power: float = 0.0

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


def _var(x: Tensor, dim: Optional[int] = 0) -> Tensor:
    v = x.var(dim=dim, unbiased=False) if dim is not None else x.var(unbiased=False)
    # a constant joint would divide by zero: floor at a tiny fraction of the largest variance
    return v.clamp_min(1e-12 * float(v.max().clamp_min(1e-30)))


def typical_inertia(q, qd, qdd, tau) -> np.ndarray:
    """(n,) the inertia each joint shows in the data: the coefficient of qdd_i in a least-squares
    fit of tau_i on (qdd, qd, sin q, cos q, q, 1) (gravity, Coriolis and friction are soaked up by
    the other columns); where that is not positive, std(tau_i) / std(qdd_i). Only its order of
    magnitude is relied on (loss and output scales)."""
    q, qd, qdd, tau = (
        np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=float) for x in (q, qd, qdd, tau)
    )
    n = q.shape[1]
    X = np.concatenate([qdd, qd, np.sin(q), np.cos(q), q, np.ones((len(q), 1))], 1)
    X = X / np.maximum(X.std(0), 1e-12)  # conditioning; the qdd columns are rescaled back below
    coef, *_ = np.linalg.lstsq(X, tau, rcond=None)
    sd_qdd, sd_tau = np.maximum(qdd.std(0), 1e-12), np.maximum(tau.std(0), 1e-12)
    fallback = sd_tau / sd_qdd
    h = np.array([coef[i, i] / sd_qdd[i] for i in range(n)])
    return np.where(np.isfinite(h) & (h > 1e-6 * fallback), h, fallback)


class Normaliser:
    """Per-joint variances of the training targets that scale each loss part.

    ``tau_var`` (n,), ``qdd_var`` (n,), ``power_var`` (scalar: variance of qd^T tau) and
    ``inertia`` (n,: :func:`typical_inertia`; None = std(tau) / std(qdd)), which scales the
    forward part's mass norm by sum_j inertia_j qdd_var_j.
    Build it once from the training set with :meth:`from_data`; store it with :meth:`to_dict`.
    """

    def __init__(self, tau_var, qdd_var, power_var, inertia=None):
        self.tau_var = torch.as_tensor(tau_var, dtype=torch.float64)
        self.qdd_var = torch.as_tensor(qdd_var, dtype=torch.float64)
        self.power_var = torch.as_tensor(power_var, dtype=torch.float64).reshape(())
        self.inertia = (
            self.tau_var.sqrt() / self.qdd_var.sqrt()
            if inertia is None
            else torch.as_tensor(inertia, dtype=torch.float64)
        )
        if self.tau_var.dim() != 1 or self.qdd_var.shape != self.tau_var.shape:
            raise ValueError(
                f"tau_var and qdd_var must both be (n,), got {tuple(self.tau_var.shape)} "
                f"and {tuple(self.qdd_var.shape)}"
            )
        if not (self.tau_var > 0).all() or not (self.qdd_var > 0).all() or not self.power_var > 0:
            raise ValueError("normaliser variances must be positive")
        if self.inertia.shape != self.tau_var.shape or not (self.inertia > 0).all():
            raise ValueError(f"inertia must be (n,) positive, got {self.inertia.tolist()}")
        self.kinetic_var = (self.inertia * self.qdd_var).sum()
        self._cache: dict = {}

    @classmethod
    def from_data(cls, q, qd, qdd, tau) -> Normaliser:
        """From the training arrays q, qd, qdd, tau (N, n) (numpy or torch); q only for symmetry
        with a batch (no target depends on it)."""
        # the statistics live on the CPU in float64 (scales() moves them to a batch's device)
        qd, qdd, tau = (
            torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().double().cpu()
            for x in (qd, qdd, tau)
        )
        if qd.dim() != 2 or qd.shape != qdd.shape or qd.shape != tau.shape or qd.shape[0] < 2:
            raise ValueError(
                f"qd, qdd, tau must be (N, n) with N >= 2, got {tuple(qd.shape)}, "
                f"{tuple(qdd.shape)}, {tuple(tau.shape)}"
            )
        return cls(_var(tau), _var(qdd), _var((qd * tau).sum(-1), None), typical_inertia(q, qd, qdd, tau))

    @property
    def n_dof(self) -> int:
        return int(self.tau_var.shape[0])

    def scales(self, like: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """(1/tau_var, 1/qdd_var, 1/power_var, 1/kinetic_var) with the dtype and device of
        ``like`` (cached)."""
        key = (like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = tuple(
                (1.0 / v).to(dtype=like.dtype, device=like.device)
                for v in (self.tau_var, self.qdd_var, self.power_var, self.kinetic_var)
            )
        return self._cache[key]

    def to_dict(self) -> Dict[str, list]:
        return {
            "tau_var": self.tau_var.tolist(),
            "qdd_var": self.qdd_var.tolist(),
            "power_var": float(self.power_var),
            "inertia": self.inertia.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Normaliser:
        return cls(d["tau_var"], d["qdd_var"], d["power_var"], d.get("inertia"))

    def __repr__(self) -> str:
        return f"Normaliser(n_dof={self.n_dof})"


def resolve_weights(
    weights: Union[None, LossWeights, Mapping[str, float]],
    default: Union[None, LossWeights, Mapping[str, float]] = None,
) -> LossWeights:
    """LossWeights from None (the default), LossWeights, or a dict overriding some parts.

    ``default`` (a model's ``default_loss_weights``: a plain mapping, so the models need not
    import this module) gives the parts no one names; None = :class:`LossWeights` ()."""
    base = LossWeights(**default) if isinstance(default, Mapping) else (default or LossWeights())
    return _merge_weights(weights, base, PARTS, "loss weight")


def _merge_weights(weights: Any, base: Any, parts: Sequence[str], what: str, note: str = "") -> Any:
    """``weights`` resolved against ``base`` (a weights dataclass with ``as_dict``): None gives
    ``base``, an instance of its class is taken as it is, a mapping overrides the parts it names;
    ValueError naming unknown parts (``what``: how the message calls a part; ``note`` appended).
    The one merge of :func:`resolve_weights` and the Hamiltonian losses' resolver."""
    cls = type(base)
    if weights is None:
        return base
    if isinstance(weights, cls):
        return weights
    unknown = [k for k in weights if k not in parts]
    if unknown:
        raise ValueError(f"unknown {what}(s) {', '.join(map(repr, unknown))}; valid: {', '.join(parts)}{note}")
    merged = base.as_dict()
    merged.update({k: float(v) for k, v in weights.items()})
    return cls(**merged)


def unpack_batch(batch: Batch) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(q, qd, qdd, tau) from a mapping with those keys or a 4-sequence."""
    if isinstance(batch, Mapping):
        missing = [k for k in ("q", "qd", "qdd", "tau") if k not in batch]
        if missing:
            raise ValueError(f"batch is missing {', '.join(missing)} (needs q, qd, qdd, tau)")
        return batch["q"], batch["qd"], batch["qdd"], batch["tau"]
    if len(batch) != 4:
        raise ValueError(f"batch must be (q, qd, qdd, tau), got {len(batch)} items")
    return tuple(batch)  # type: ignore[return-value]


def inverse_loss(tau_pred: Tensor, tau: Tensor, scales: Normaliser) -> Tensor:
    """mean_b sum_j (tau_pred - tau)_bj^2 / var(tau_j)."""
    inv_var = scales.scales(tau)[0]
    return ((tau_pred - tau).square() * inv_var).sum(-1).mean()


def forward_loss(qdd_pred: Tensor, qdd: Tensor, scales: Normaliser) -> Tensor:
    """mean_b sum_j (qdd_pred - qdd)_bj^2 / var(qdd_j)."""
    inv_var = scales.scales(qdd)[1]
    return ((qdd_pred - qdd).square() * inv_var).sum(-1).mean()


def forward_loss_mass(residual: Tensor, accel_error: Tensor, scales: Normaliser) -> Tensor:
    """mean_b r^T H^-1 r / sum_j inertia_j var(qdd_j), from the torque residual r (B, n) and the
    acceleration error e = H^-1 r (B, n) (so r^T e = e^T H e)."""
    inv_kinetic = scales.scales(residual)[3]
    return (residual * accel_error).sum(-1).mean() * inv_kinetic


def _forward_part(residual: Tensor, accel_error: Tensor, scales: Normaliser, norm: str) -> Tensor:
    if norm == "mass":
        return forward_loss_mass(residual, accel_error, scales)
    if norm == "joint":
        return forward_loss(accel_error, torch.zeros_like(accel_error), scales)
    raise ValueError(f"forward_norm must be one of {', '.join(FORWARD_NORMS)}, got {norm!r}")


def power_loss(energy_rate: Tensor, qd: Tensor, tau: Tensor, friction: Tensor, scales: Normaliser) -> Tensor:
    """mean_b (dE/dt - qd^T (tau - f))^2 / var(qd^T tau)."""
    inv_var = scales.scales(qd)[2]
    return ((energy_rate - (qd * (tau - friction)).sum(-1)).square() * inv_var).mean()


def _weighted_sum(
    weights: Union[None, LossWeights, Mapping[str, float]], like: Tensor, **parts: Callable[[], Tensor]
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """(sum of weight * part, the parts detached) over the parts whose weight is non-zero: only
    those are computed (a part is a function of nothing); ``like`` gives the total's dtype/device."""
    weights = resolve_weights(weights)
    values = {name: part() for name, part in parts.items() if getattr(weights, name)}
    total = like.new_zeros(())
    for name, value in values.items():
        total = total + getattr(weights, name) * value
    return total, {k: v.detach() for k, v in values.items()}


def loss_from_terms(
    terms: DynamicsTerms,
    batch: Batch,
    scales: Normaliser,
    weights: Union[None, LossWeights, Mapping[str, float]] = None,
    solve=solve_spd,
    forward_norm: str = "mass",
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Weighted loss from precomputed terms at the batch's (q, qd, qdd) (see module docstring).

    ``solve(H, rhs)`` is the SPD solve used for the forward part; ``forward_norm`` one of
    :data:`FORWARD_NORMS`.
    Returns (total, parts) with parts detached, only those with a non-zero weight.
    """
    q, qd, qdd, tau = unpack_batch(batch)

    def forward() -> Tensor:
        qdd_pred = solve(terms.H, tau - terms.coriolis - terms.gravity - terms.friction)
        residual = tau - terms.coriolis - terms.gravity - terms.friction - terms.inertial
        return _forward_part(residual, qdd_pred - qdd, scales, forward_norm)

    def power() -> Tensor:
        rate = (qd * (terms.inertial + terms.coriolis + terms.gravity)).sum(-1)
        return power_loss(rate, qd, tau, terms.friction, scales)

    return _weighted_sum(
        weights, tau, inverse=lambda: inverse_loss(terms.tau, tau, scales), forward=forward, power=power
    )


def loss_from_prediction(
    tau_pred: Tensor,
    H: Tensor,
    batch: Batch,
    scales: Normaliser,
    weights: Union[None, LossWeights, Mapping[str, float]] = None,
    solve=solve_spd,
    forward_norm: str = "mass",
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """The same weighted loss as :func:`loss_from_terms`, from the predicted torque and H alone.

    Any Euler-Lagrange model has tau_pred = H qdd + c + g + f at the batch's qdd, so
    the forward prediction H^-1 (tau - c - g - f) = qdd + H^-1 (tau - tau_pred), and
    dE/dt - qd^T (tau - f) = qd^T (H qdd + c + g) - qd^T (tau - f) = qd^T (tau_pred - tau).
    """
    q, qd, qdd, tau = unpack_batch(batch)

    def forward() -> Tensor:
        residual = tau - tau_pred
        return _forward_part(residual, solve(H, residual), scales, forward_norm)

    return _weighted_sum(
        weights,
        tau,
        inverse=lambda: inverse_loss(tau_pred, tau, scales),
        forward=forward,
        power=lambda: power_loss((qd * tau_pred).sum(-1), qd, tau, torch.zeros_like(tau), scales),
    )


def delan_loss(
    model,
    batch: Batch,
    scales: Normaliser,
    weights: Union[None, LossWeights, Mapping[str, float]] = None,
    forward_norm: str = "mass",
    solve: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """The training loss of ``model`` on a batch, from ONE ``model.terms(q, qd, qdd)`` call
    (or ``model.inverse_dynamics`` when only the torque residual is weighted).

    Args:
        model: a learned model (structured, black-box, or the feed-forward baseline, which has
            only the inverse part).
        batch: mapping with q, qd, qdd, tau (B, n), or the tuple (q, qd, qdd, tau).
        scales: :class:`Normaliser` from the training data.
        weights: :class:`LossWeights`, or a dict overriding some of the parts' weights; the
            defaults are ``model.default_loss_weights`` (structured: inverse 1, forward 1, power 0;
            black-box and mlp: inverse only, as their forward model may not exist).
        forward_norm: "mass" (default) or "joint": the norm of the forward part (module docstring).
        solve: the SPD solve ``solve(H, rhs)`` of the forward part (None = the model's
            ``solve_mass_matrix`` if it has one, else :func:`delan.dynamics.solve_spd`).
    Returns:
        (total, parts): the scalar loss to minimise and its detached parts by name.
    """
    weights = resolve_weights(weights, getattr(model, "default_loss_weights", None))
    q, qd, qdd, tau = unpack_batch(batch)
    if getattr(model, "inverse_only", False) and (weights.forward or weights.power):
        raise ValueError(
            f"{type(model).__name__} has only an inverse model: set the forward and power loss weights to 0"
        )
    if not (weights.forward or weights.power):
        # the torque residual alone needs neither H nor the split of c and g: the models'
        # inverse_dynamics is their leanest path (one cotangent row for the structured DeLaN)
        part = inverse_loss(model.inverse_dynamics(q, qd, qdd), tau, scales)
        return weights.inverse * part, {"inverse": part.detach()}
    if hasattr(model, "inverse_dynamics_and_mass_matrix"):
        tau_pred, H = model.inverse_dynamics_and_mass_matrix(q, qd, qdd)
        tau = as_batch(tau, model.n_dof, "tau", like=tau_pred)
        return loss_from_prediction(
            tau_pred, H, (q, qd, qdd, tau), scales, weights, solve=solve or solve_spd, forward_norm=forward_norm
        )
    terms = model.terms(q, qd, qdd)
    tau = as_batch(tau, model.n_dof, "tau", like=terms.coriolis)
    batch = (q, qd, qdd, tau)
    solve = solve or getattr(model, "solve_mass_matrix", solve_spd)
    return loss_from_terms(terms, batch, scales, weights, solve, forward_norm)
