"""Single pendulum: a rigid rod swinging about a horizontal axis under gravity.

q = angle from the downward vertical [rad] (0 = hanging at rest). Defaults: mass 1 kg, length
1 m, uniform rod (centre of mass at l/2, inertia m l^2 / 12 about it).

    H = m lc^2 + I,   c = 0,   g = m g0 lc sin q,   V = -m g0 lc cos q
"""

from __future__ import annotations

import math

import numpy as np
import torch

from delan.systems.base import GRAVITY, TrueSystem


class Pendulum(TrueSystem):
    name = "pendulum"
    n_dof = 1

    def __init__(
        self,
        mass: float = 1.0,
        length: float = 1.0,
        com: float = None,
        inertia: float = None,
        gravity: float = GRAVITY,
        **friction,
    ):
        self.mass, self.length = float(mass), float(length)
        self.com = self.length / 2 if com is None else float(com)
        self.inertia = self.mass * self.length**2 / 12 if inertia is None else float(inertia)
        self.g0 = float(gravity)
        self.joint_names = ["theta"]
        self.joint_types = ["revolute"]
        self.q_min, self.q_max = np.array([-math.pi]), np.array([math.pi])
        self.qd_max = np.array([6.0])
        super().__init__(**friction)

    def _rigid_terms(self, q, qd):
        J = self.mass * self.com**2 + self.inertia
        H = torch.full_like(q, J).unsqueeze(-1)
        c = torch.zeros_like(q)
        mgl = self.mass * self.g0 * self.com
        g = mgl * torch.sin(q)
        T = 0.5 * J * qd[:, 0] ** 2
        V = -mgl * torch.cos(q[:, 0])
        return H, c, g, T, V

    def describe(self):
        d = super().describe()
        d.update(mass=self.mass, length=self.length, com=self.com, inertia=self.inertia, gravity=self.g0)
        return d
