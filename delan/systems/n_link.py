"""Planar n-link chain in a vertical plane with gravity, any n >= 1.

q_i is the angle of link i relative to link i-1 (link 1: from the downward vertical). With
absolute angles phi = S q (S lower-triangular ones) the kinetic energy is

    T = 1/2 phid^T M(phi) phid,  M_jk = mu_jk cos(phi_j - phi_k) + delta_jk I_j,
    mu_jk = sum_i m_i a_ij a_ik,  a_ij = l_j (j < i), lc_i (j = i), 0 (j > i)

so with s_jk = sin(phi_j - phi_k) the Coriolis and gravity forces in phi are

    c_phi_j = sum_k mu_jk s_jk phid_k^2,   g_phi_j = g0 beta_j sin phi_j,  beta_j = m_j lc_j + l_j sum_{i>j} m_i

and, the map being linear, H = S^T M S, c = S^T c_phi, g = S^T g_phi.
Defaults: every link 1 kg, 0.5 m, uniform rod (lc = l/2, I = m l^2/12); ``masses``, ``lengths``,
``coms``, ``inertias`` take per-link sequences.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from delan.errors import DataError
from delan.systems.base import GRAVITY, TrueSystem, const


class NLink(TrueSystem):
    name = "n-link"

    def __init__(
        self, n_dof: int = 3, masses=None, lengths=None, coms=None, inertias=None, gravity: float = GRAVITY, **friction
    ):
        n = int(n_dof)
        if n < 1:
            raise DataError(f"n-link needs `n_dof` >= 1, got {n}")
        self.n_dof = n
        self.m = np.broadcast_to(np.asarray(1.0 if masses is None else masses, float), (n,)).copy()
        self.l = np.broadcast_to(np.asarray(0.5 if lengths is None else lengths, float), (n,)).copy()
        self.lc = self.l / 2 if coms is None else np.broadcast_to(np.asarray(coms, float), (n,)).copy()
        self.I = (
            self.m * self.l**2 / 12 if inertias is None else np.broadcast_to(np.asarray(inertias, float), (n,)).copy()
        )
        self.g0 = float(gravity)
        self.joint_names = [f"joint{i}" for i in range(n)]
        self.joint_types = ["revolute"] * n
        self.q_min, self.q_max = np.full(n, -math.pi), np.full(n, math.pi)
        self.qd_max = np.full(n, 6.0)
        a = np.zeros((n, n))  # a[i, j]: lever of link j's rotation on link i's centre of mass
        for i in range(n):
            a[i, :i] = self.l[:i]
            a[i, i] = self.lc[i]
        self.mu = np.einsum("i,ij,ik->jk", self.m, a, a)
        self.beta = self.m * self.lc + self.l * (np.cumsum(self.m[::-1])[::-1] - self.m)
        super().__init__(**friction)

    def _rigid_terms(self, q, qd):
        phi, phid = torch.cumsum(q, -1), torch.cumsum(qd, -1)
        mu, inertia = const(self.mu, q), const(self.I, q)
        diff = phi.unsqueeze(-1) - phi.unsqueeze(-2)  # (B, n, n): phi_j - phi_k
        M = mu * torch.cos(diff) + torch.diag_embed(inertia.expand_as(phi))
        S = torch.tril(torch.ones(self.n_dof, self.n_dof, dtype=q.dtype, device=q.device))
        H = S.T @ M @ S
        H = 0.5 * (H + H.transpose(-1, -2))  # exactly symmetric, not just to rounding
        c_phi = ((mu * torch.sin(diff)) @ (phid**2).unsqueeze(-1)).squeeze(-1)
        g_phi = self.g0 * const(self.beta, q) * torch.sin(phi)
        # S^T x = reverse cumulative sum
        c = torch.flip(torch.cumsum(torch.flip(c_phi, [-1]), -1), [-1])
        g = torch.flip(torch.cumsum(torch.flip(g_phi, [-1]), -1), [-1])
        T = 0.5 * (phid.unsqueeze(-2) @ M @ phid.unsqueeze(-1)).reshape(-1)
        V = -self.g0 * (const(self.beta, q) * torch.cos(phi)).sum(-1)
        return H, c, g, T, V

    def describe(self):
        d = super().describe()
        d.update(
            masses=self.m.tolist(),
            lengths=self.l.tolist(),
            coms=self.lc.tolist(),
            inertias=self.I.tolist(),
            gravity=self.g0,
        )
        return d
