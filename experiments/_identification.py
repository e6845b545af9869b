"""Least-squares identification of the two-link arm (double pendulum) in its true model structure.

The rigid-body dynamics of a planar two-link arm, with rotor inertia on the elbow and viscous +
smoothed Coulomb friction on both joints, is linear in 10 base parameters (inertia and
armature of the shoulder merge into one):

    tau = Y(q, qd, qdd) theta,   theta = (p1, p2, p3, a2, p4, p5, fv1, fv2, fc1, fc2)

    p1 = I1 + I2 + m1 lc1^2 + m2 (l1^2 + lc2^2) + a1    p2 = m2 l1 lc2       p3 = I2 + m2 lc2^2
    a2 = elbow rotor inertia    p4 = g0 (m1 lc1 + m2 l1)    p5 = g0 m2 lc2
    fv, fc: viscous and Coulomb coefficients (tanh(qd / smoothing) with the simulator's smoothing)

(conventions of :mod:`delan.systems.two_link`: q1 from the downward vertical, q2 relative). A
least-squares fit of theta on the training runs is the best any physics model of this arm can
do on the same data: the reference the defaults study compares the learned models with.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

N_PARAMETERS = 10


def regressor(q: np.ndarray, qd: np.ndarray, qdd: np.ndarray, smoothing: float = 0.01) -> np.ndarray:
    """Y (T, 2, 10) with tau = Y @ theta for the states q, qd, qdd (T, 2)."""
    q2 = q[:, 1]
    qd1, qd2 = qd[:, 0], qd[:, 1]
    a1, a2 = qdd[:, 0], qdd[:, 1]
    c2, s2 = np.cos(q2), np.sin(q2)
    s1, s12 = np.sin(q[:, 0]), np.sin(q[:, 0] + q2)
    zero = np.zeros_like(q2)
    Y = np.zeros((len(q), 2, N_PARAMETERS))
    Y[:, 0] = np.stack(
        [
            a1,
            c2 * (2 * a1 + a2) - s2 * (2 * qd1 * qd2 + qd2**2),
            a2,
            zero,
            s1,
            s12,
            qd1,
            zero,
            np.tanh(qd1 / smoothing),
            zero,
        ],
        -1,
    )
    Y[:, 1] = np.stack(
        [zero, c2 * a1 + s2 * qd1**2, a1 + a2, a2, zero, s12, zero, qd2, zero, np.tanh(qd2 / smoothing)], -1
    )
    return Y


def true_parameters(describe: Dict) -> np.ndarray:
    """theta of a :class:`delan.systems.TwoLink` from its ``describe()`` dict."""
    m1, m2 = describe["masses"]
    l1, _ = describe["lengths"]
    lc1, lc2 = describe["coms"]
    I1, I2 = describe["inertias"]
    g0 = describe["gravity"]
    arm = describe.get("armature") or [0.0, 0.0]
    fv = describe.get("viscous", [0.0, 0.0]) if describe.get("friction") else [0.0, 0.0]
    fc = describe.get("coulomb", [0.0, 0.0]) if describe.get("friction") else [0.0, 0.0]
    return np.array(
        [
            I1 + I2 + m1 * lc1**2 + m2 * (l1**2 + lc2**2) + arm[0],
            m2 * l1 * lc2,
            I2 + m2 * lc2**2,
            arm[1],
            g0 * (m1 * lc1 + m2 * l1),
            g0 * m2 * lc2,
            fv[0],
            fv[1],
            fc[0],
            fc[1],
        ]
    )


def fit(q: np.ndarray, qd: np.ndarray, qdd: np.ndarray, tau: np.ndarray, smoothing: float = 0.01) -> np.ndarray:
    """Least-squares theta (10,) from training samples (T, 2) each."""
    Y = regressor(q, qd, qdd, smoothing).reshape(-1, N_PARAMETERS)
    theta, *_ = np.linalg.lstsq(Y, tau.reshape(-1), rcond=None)
    return theta


def predict(theta: np.ndarray, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray, smoothing: float = 0.01) -> np.ndarray:
    """tau (T, 2) of the identified model."""
    return regressor(q, qd, qdd, smoothing) @ theta
