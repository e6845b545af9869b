"""Joint friction: viscous plus smoothed Coulomb, the one formula shared by systems and models.

    f_i(qd) = viscous_i * qd_i + coulomb_i * tanh(qd_i / smoothing)

The tanh replaces sign(qd) so the torque stays differentiable and forward simulation stays
well-posed near zero velocity; ``smoothing`` (rad/s or m/s) is the velocity at which Coulomb
friction reaches ~76% of its full value.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor

Number = Union[float, Tensor, np.ndarray]


def joint_friction(qd: Tensor, viscous: Number, coulomb: Number, smoothing: float = 0.01) -> Tensor:
    """Friction torques (B, n) opposing motion, for per-joint coefficients (n,) or scalars.

    Works on torch tensors and, for the NumPy single-sample path, on NumPy arrays alike.

    Args:
        qd: joint velocities (B, n).
        viscous: non-negative viscous coefficients [N m s / rad], (n,) or scalar.
        coulomb: non-negative Coulomb torques [N m], (n,) or scalar.
        smoothing: velocity scale of the tanh that smooths sign(qd).
    Returns:
        f (B, n), the torque the joints lose to friction (tau = ... + f).
    """
    tanh = torch.tanh if isinstance(qd, Tensor) else np.tanh
    return viscous * qd + coulomb * tanh(qd / smoothing)


def coulomb_evidence(qd: Sequence[np.ndarray], tau: Sequence[np.ndarray]) -> np.ndarray:
    """How clearly each joint's torque steps where its velocity reverses, (n,); >= 1: friction.

    Coulomb friction flips sign with the velocity, so at every reversal of joint i the recorded
    tau_i steps by about 2 * coulomb_i in the direction of the new motion, while the rigid-body
    torque changes smoothly through it. Two signed measures of that step, each the median over
    the joint's reversals of sign(qd_i after) * (...), over the median size of the same
    quantity over the whole recording:

    * step: tau_i after - tau_i before (plain; robust to noise, but at low rates the smooth
      change between two samples hides a small step);
    * kink: that step minus the mean of the two neighbouring steps (removes the smooth change,
      so it finds small steps at any rate; noise weighs more).

    The evidence is max(step / 1, kink / 3): on the study's frictionless data sets (two-link
    at 25-1000 Hz, noisy or not, cart-pole, Furuta, Panda) at most 0.45; with the friction of
    small arms 1 to 10^5 (see experiments/defaults_study.py). Viscous friction alone leaves no
    step and is not detected.

    Args:
        qd, tau: per trajectory, (T, n) velocities and torques.
    Returns:
        (n,) evidence per joint, 0 where a joint never reverses.
    """
    n = np.asarray(qd[0]).shape[1]
    out = np.zeros(n)
    for i in range(n):
        steps, kinks, step_size, kink_size = [], [], [], []
        for v, t in zip(qd, tau):
            v, t = np.asarray(v, float)[:, i], np.asarray(t, float)[:, i]
            d = np.diff(t)  # d[k]: tau_k -> tau_k+1
            kink = d[1:-1] - (d[:-2] + d[2:]) / 2  # kink[k - 1]: step k, less its neighbours'
            step_size.append(np.abs(t[2:] - t[:-2]))
            kink_size.append(np.abs(kink))
            k = np.nonzero(np.sign(v[1:]) * np.sign(v[:-1]) < 0)[0]  # reversal between k and k+1
            steps.append(np.sign(v[k + 1]) * d[k])
            k = k[(k >= 1) & (k < len(d) - 1)]
            kinks.append(np.sign(v[k + 1]) * kink[k - 1])
        out[i] = max(_signed_ratio(steps, step_size) / 1.0, _signed_ratio(kinks, kink_size) / 3.0, 0.0)
    return out


def _signed_ratio(values, sizes) -> float:
    values, sizes = np.concatenate(values), np.concatenate(sizes)
    scale = float(np.median(sizes)) if len(sizes) else 0.0
    return float(np.median(values) / scale) if len(values) and scale > 0 else 0.0
