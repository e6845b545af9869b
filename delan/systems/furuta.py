"""Furuta (rotary inverted) pendulum: a horizontal arm turning about the vertical axis, with a
pendulum hinged at its tip swinging in the plane perpendicular to the arm.

q = (theta1 arm angle, theta2 pendulum angle from the downward vertical) [rad]. The pendulum is a
slender rod (inertia J2 about axes across it, none along it). Defaults, after the Quanser QUBE:
arm inertia J1 = 5e-5 kg m^2 (about the vertical axis), arm length L1 = 0.085 m,
pendulum m2 = 0.024 kg, centre of mass l2 = 0.0645 m, J2 = m2 (2 l2)^2 / 12.

With Jh = m2 l2^2 + J2 and k = m2 L1 l2:
    H = [[J1 + m2 L1^2 + Jh sin^2 th2, k cos th2], [k cos th2, Jh]]
    c = (Jh sin 2th2 thd1 thd2 - k sin th2 thd2^2,  -1/2 Jh sin 2th2 thd1^2)
    g = (0, m2 g0 l2 sin th2),   V = -m2 g0 l2 cos th2
"""

from __future__ import annotations

import math

import numpy as np
import torch

from delan.systems.base import GRAVITY, TrueSystem


class Furuta(TrueSystem):
    name = "furuta"
    n_dof = 2

    def __init__(
        self,
        arm_inertia: float = 5e-5,
        arm_length: float = 0.085,
        pendulum_mass: float = 0.024,
        com: float = 0.0645,
        pendulum_inertia: float = None,
        gravity: float = GRAVITY,
        **friction,
    ):
        self.J1, self.L1, self.m2, self.l2 = float(arm_inertia), float(arm_length), float(pendulum_mass), float(com)
        self.J2 = self.m2 * (2 * self.l2) ** 2 / 12 if pendulum_inertia is None else float(pendulum_inertia)
        self.g0 = float(gravity)
        self.joint_names = ["arm", "pendulum"]
        self.joint_types = ["revolute", "revolute"]
        self.q_min, self.q_max = np.array([-math.pi, -math.pi]), np.array([math.pi, math.pi])
        self.qd_max = np.array([10.0, 10.0])
        friction.setdefault("viscous", 1e-4)
        friction.setdefault("coulomb", 1e-4)
        super().__init__(**friction)

    def _rigid_terms(self, q, qd):
        Jh = self.m2 * self.l2**2 + self.J2
        k = self.m2 * self.L1 * self.l2
        th2, thd1, thd2 = q[:, 1], qd[:, 0], qd[:, 1]
        s2, c2 = torch.sin(th2), torch.cos(th2)
        H00 = self.J1 + self.m2 * self.L1**2 + Jh * s2**2
        H01 = k * c2
        H11 = torch.full_like(th2, Jh)
        H = torch.stack([torch.stack([H00, H01], -1), torch.stack([H01, H11], -1)], -2)
        s22 = 2 * s2 * c2
        c = torch.stack([Jh * s22 * thd1 * thd2 - k * s2 * thd2**2, -0.5 * Jh * s22 * thd1**2], -1)
        g = torch.stack([torch.zeros_like(th2), self.m2 * self.g0 * self.l2 * s2], -1)
        T = 0.5 * (H00 * thd1**2 + 2 * H01 * thd1 * thd2 + H11 * thd2**2)
        V = -self.m2 * self.g0 * self.l2 * c2
        return H, c, g, T, V

    def describe(self):
        d = super().describe()
        d.update(
            arm_inertia=self.J1,
            arm_length=self.L1,
            pendulum_mass=self.m2,
            com=self.l2,
            pendulum_inertia=self.J2,
            gravity=self.g0,
        )
        return d
