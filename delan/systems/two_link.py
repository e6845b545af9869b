"""Planar two-link arm in a vertical plane with gravity (the DeLaN paper's simulated robot).

Angles: q1 of link 1 from the downward vertical, q2 of link 2 relative to link 1 [rad]; q = 0
hangs straight down. Defaults (uniform aluminium-like rods, a light upper arm and forearm):

    link 1: m1 = 2.0 kg, l1 = 0.5 m, lc1 = 0.25 m, I1 = m1 l1^2 / 12
    link 2: m2 = 1.0 kg, l2 = 0.5 m, lc2 = 0.25 m, I2 = m2 l2^2 / 12

Closed form (c2 = cos q2, s2 = sin q2, s1 = sin q1, s12 = sin(q1 + q2)):

    H11 = I1 + I2 + m1 lc1^2 + m2 (l1^2 + lc2^2 + 2 l1 lc2 c2)
    H12 = I2 + m2 (lc2^2 + l1 lc2 c2),   H22 = I2 + m2 lc2^2
    c   = h (-2 qd1 qd2 - qd2^2, qd1^2),  h = m2 l1 lc2 s2
    g   = g0 ((m1 lc1 + m2 l1) s1 + m2 lc2 s12,  m2 lc2 s12)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from delan.systems.base import GRAVITY, TrueSystem


class TwoLink(TrueSystem):
    name = "two-link"
    n_dof = 2

    def __init__(
        self, masses=(2.0, 1.0), lengths=(0.5, 0.5), coms=None, inertias=None, gravity: float = GRAVITY, **friction
    ):
        self.m1, self.m2 = map(float, masses)
        self.l1, self.l2 = map(float, lengths)
        self.lc1, self.lc2 = (self.l1 / 2, self.l2 / 2) if coms is None else map(float, coms)
        if inertias is None:
            inertias = (self.m1 * self.l1**2 / 12, self.m2 * self.l2**2 / 12)
        self.I1, self.I2 = map(float, inertias)
        self.g0 = float(gravity)
        self.joint_names = ["shoulder", "elbow"]
        self.joint_types = ["revolute", "revolute"]
        self.q_min, self.q_max = np.array([-math.pi, -math.pi]), np.array([math.pi, math.pi])
        self.qd_max = np.array([6.0, 6.0])
        super().__init__(**friction)

    def _rigid_terms(self, q, qd):
        m1, m2, l1, lc1, lc2, I1, I2 = self.m1, self.m2, self.l1, self.lc1, self.lc2, self.I1, self.I2
        q1, q2 = q[:, 0], q[:, 1]
        qd1, qd2 = qd[:, 0], qd[:, 1]
        c2, s2 = torch.cos(q2), torch.sin(q2)
        H11 = I1 + I2 + m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * c2)
        H12 = I2 + m2 * (lc2**2 + l1 * lc2 * c2)
        H22 = torch.full_like(q1, I2 + m2 * lc2**2)
        H = torch.stack([torch.stack([H11, H12], -1), torch.stack([H12, H22], -1)], -2)
        h = m2 * l1 * lc2 * s2
        c = torch.stack([h * (-2 * qd1 * qd2 - qd2**2), h * qd1**2], -1)
        s1, s12 = torch.sin(q1), torch.sin(q1 + q2)
        g = self.g0 * torch.stack([(m1 * lc1 + m2 * l1) * s1 + m2 * lc2 * s12, m2 * lc2 * s12], -1)
        T = 0.5 * (H11 * qd1**2 + 2 * H12 * qd1 * qd2 + H22 * qd2**2)
        V = -self.g0 * ((m1 * lc1 + m2 * l1) * torch.cos(q1) + m2 * lc2 * torch.cos(q1 + q2))
        return H, c, g, T, V

    # -- kinematics used by the character trajectories ---------------------------------------
    def forward_kinematics(self, q: np.ndarray) -> np.ndarray:
        """End-effector (x, y) [m] of joint angles q (..., 2); x horizontal, y up, base at 0."""
        q1, q12 = q[..., 0], q[..., 0] + q[..., 1]
        x = self.l1 * np.sin(q1) + self.l2 * np.sin(q12)
        y = -self.l1 * np.cos(q1) - self.l2 * np.cos(q12)
        return np.stack([x, y], -1)

    def inverse_kinematics(self, p: np.ndarray, pd: np.ndarray, pdd: np.ndarray, elbow: int = 1):
        """Joint q, qd, qdd (T, 2) for an end-effector path p, pd, pdd (T, 2), exactly.

        Positions by the law of cosines (``elbow`` = +1 or -1 picks the branch), velocities and
        accelerations through the Jacobian: qd = J^-1 pd, qdd = J^-1 (pdd - Jdot qd).
        Raises ValueError if a point is out of reach or too close to the singular stretched arm.
        """
        l1, l2 = self.l1, self.l2
        # rotate so the angle is measured from the "down" axis: u = -y, v = x
        u, v = -p[:, 1], p[:, 0]
        cos2 = (u**2 + v**2 - l1**2 - l2**2) / (2 * l1 * l2)
        if np.any(np.abs(cos2) > 0.999):
            raise ValueError("path leaves the well-conditioned workspace of the two-link arm")
        q2 = elbow * np.arccos(cos2)
        q1 = np.arctan2(v, u) - np.arctan2(l2 * np.sin(q2), l1 + l2 * np.cos(q2))
        q = np.stack([q1, q2], -1)
        s1, c1 = np.sin(q1), np.cos(q1)
        s12, c12 = np.sin(q1 + q2), np.cos(q1 + q2)
        # Jacobian of (x, y) = (l1 s1 + l2 s12, -l1 c1 - l2 c12)
        J = np.empty((len(q1), 2, 2))
        J[:, 0, 0], J[:, 0, 1] = l1 * c1 + l2 * c12, l2 * c12
        J[:, 1, 0], J[:, 1, 1] = l1 * s1 + l2 * s12, l2 * s12
        qd = np.linalg.solve(J, pd[..., None])[..., 0]
        w1, w12 = qd[:, 0], qd[:, 0] + qd[:, 1]
        Jdqd = np.stack([-l1 * s1 * w1**2 - l2 * s12 * w12**2, l1 * c1 * w1**2 + l2 * c12 * w12**2], -1)
        qdd = np.linalg.solve(J, (pdd - Jdqd)[..., None])[..., 0]
        return q, qd, qdd

    def describe(self):
        d = super().describe()
        d.update(
            masses=[self.m1, self.m2],
            lengths=[self.l1, self.l2],
            coms=[self.lc1, self.lc2],
            inertias=[self.I1, self.I2],
            gravity=self.g0,
        )
        return d
