"""Joint friction: viscous plus smoothed Coulomb, the one formula shared by systems and models.

    f_i(qd) = viscous_i * qd_i + coulomb_i * tanh(qd_i / smoothing)

The tanh replaces sign(qd) so the torque stays differentiable and forward simulation stays
well-posed near zero velocity; ``smoothing`` (rad/s or m/s) is the velocity at which Coulomb
friction reaches ~76% of its full value.
"""
from __future__ import annotations

from typing import Union

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
