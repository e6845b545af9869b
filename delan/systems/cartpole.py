"""Cart-pole: a cart on a horizontal rail carrying a pendulum, both joints actuated.

q = (x [m], theta [rad] from the downward vertical). Defaults: cart M = 1 kg, pole m = 0.2 kg,
pole centre of mass l = 0.5 m from the pivot, uniform pole of length 2 l (I = m (2l)^2 / 12).

    H = [[M + m, m l cos th], [m l cos th, m l^2 + I]]
    c = (-m l sin th thd^2, 0),   g = (0, m g0 l sin th),   V = -m g0 l cos th
"""

from __future__ import annotations

import math

import numpy as np
import torch

from delan.systems.base import GRAVITY, TrueSystem


class CartPole(TrueSystem):
    name = "cartpole"
    n_dof = 2

    def __init__(
        self,
        cart_mass: float = 1.0,
        pole_mass: float = 0.2,
        com: float = 0.5,
        inertia: float = None,
        gravity: float = GRAVITY,
        **friction,
    ):
        self.M, self.m, self.l = float(cart_mass), float(pole_mass), float(com)
        self.I = self.m * (2 * self.l) ** 2 / 12 if inertia is None else float(inertia)
        self.g0 = float(gravity)
        self.joint_names = ["cart", "pole"]
        self.joint_types = ["prismatic", "revolute"]  # cart slides on the rail, pole swings
        self.q_min, self.q_max = np.array([-1.0, -math.pi]), np.array([1.0, math.pi])
        self.qd_max = np.array([2.0, 6.0])
        super().__init__(**friction)

    def _rigid_terms(self, q, qd):
        M, m, l, I = self.M, self.m, self.l, self.I
        th, xd, thd = q[:, 1], qd[:, 0], qd[:, 1]
        ct, st = torch.cos(th), torch.sin(th)
        H00 = torch.full_like(th, M + m)
        H01 = m * l * ct
        H11 = torch.full_like(th, m * l**2 + I)
        H = torch.stack([torch.stack([H00, H01], -1), torch.stack([H01, H11], -1)], -2)
        zero = torch.zeros_like(th)
        c = torch.stack([-m * l * st * thd**2, zero], -1)
        g = torch.stack([zero, m * self.g0 * l * st], -1)
        T = 0.5 * (H00 * xd**2 + 2 * H01 * xd * thd + H11 * thd**2)
        V = -m * self.g0 * l * ct
        return H, c, g, T, V

    def describe(self):
        d = super().describe()
        d.update(cart_mass=self.M, pole_mass=self.m, com=self.l, inertia=self.I, gravity=self.g0)
        return d
