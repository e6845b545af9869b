"""Smooth joint-space reference trajectories with exact q, qd, qdd.

Three kinds, each a list of :class:`Reference` objects (callables t -> (q, qd, qdd)):

* ``fourier``    finite Fourier series (periodic excitation trajectories), analytic derivatives;
* ``splines``    random via points joined by clamped cubic splines (zero velocity at both ends);
* ``characters`` pen strokes of letters written by the two-link arm: each letter is a set of
                 stroke polylines/arcs of our own design, joined into one path, interpolated by a
                 C2 cubic spline in arc length, timed by a minimum-jerk profile (rest to rest) and
                 mapped to joint space by analytic two-link inverse kinematics (exact qd, qdd
                 through the Jacobian).

Fourier and spline trajectories are scaled per joint to stay inside the system's position
limits and velocity limits (with a margin). A seed (numpy Generator) reproduces them exactly.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.interpolate import CubicSpline

from delan.errors import DataError

KINDS = ["fourier", "characters", "splines"]
Arrays = Tuple[np.ndarray, np.ndarray, np.ndarray]


class Reference:
    """A named smooth trajectory on [0, duration]; ``ref(t)`` gives q, qd, qdd, each (T, n)."""

    def __init__(self, name: str, duration: float, n_dof: int):
        self.name, self.duration, self.n_dof = name, float(duration), int(n_dof)

    def __call__(self, t) -> Arrays:
        raise NotImplementedError


class _Scaled(Reference):
    """q = center + scale * d(t) for a raw deviation d with exact derivatives."""

    def __init__(self, name, duration, center, raw, limits, margin, rng):
        super().__init__(name, duration, len(center))
        self.center, self._raw = np.asarray(center, float), raw
        q_half, qd_max = limits
        grid = np.linspace(0.0, duration, max(2001, int(200 * duration) + 1))
        d, dd, _ = raw(grid)
        amp = np.maximum(np.abs(d).max(0), 1e-12)
        vel = np.maximum(np.abs(dd).max(0), 1e-12)
        # a random fraction of the largest admissible scale, so not every joint hits its limit
        self.scale = np.minimum(margin * q_half / amp, margin * qd_max / vel) * rng.uniform(0.5, 1.0, len(center))

    def __call__(self, t):
        d, dd, ddd = self._raw(np.asarray(t, float))
        return self.center + self.scale * d, self.scale * dd, self.scale * ddd


def _limits(system) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    qmin, qmax = np.asarray(system.q_min, float), np.asarray(system.q_max, float)
    return 0.5 * (qmin + qmax), 0.5 * (qmax - qmin), np.asarray(system.qd_max, float)


def fourier_trajectories(
    system, n: int, duration: float, rng: np.random.Generator, harmonics: Optional[int] = None, margin: float = 0.9
) -> List[Reference]:
    """n Fourier-series trajectories q_i(t) = c_i + s_i sum_k (a_ik sin k w t + b_ik cos k w t).

    w = 2 pi / duration (periodic); ``harmonics`` defaults to reaching ~1 Hz (at least 3);
    coefficients are drawn N(0, 1/k) so low frequencies dominate.
    """
    center, half, qd_max = _limits(system)
    K = harmonics or max(3, int(math.ceil(duration * 1.0)))
    w = 2 * math.pi / duration
    k = np.arange(1, K + 1, dtype=float)
    out = []
    for i in range(n):
        a = rng.normal(size=(K, system.n_dof)) / k[:, None]
        b = rng.normal(size=(K, system.n_dof)) / k[:, None]

        def raw(t, a=a, b=b):
            ph = w * np.outer(t, k)  # (T, K)
            s, c = np.sin(ph), np.cos(ph)
            d = s @ a + c @ b
            dd = (c * (w * k)) @ a - (s * (w * k)) @ b
            ddd = -(s * (w * k) ** 2) @ a - (c * (w * k) ** 2) @ b
            return d, dd, ddd

        out.append(_Scaled(f"fourier_{i:03d}", duration, center, raw, (half, qd_max), margin, rng))
    return out


def spline_trajectories(
    system, n: int, duration: float, rng: np.random.Generator, via_spacing: float = 0.5, margin: float = 0.9
) -> List[Reference]:
    """n random clamped cubic splines through via points every ``via_spacing`` seconds."""
    center, half, qd_max = _limits(system)
    m = max(4, int(round(duration / via_spacing)) + 1)
    t_via = np.linspace(0.0, duration, m)
    out = []
    for i in range(n):
        vals = rng.uniform(-1.0, 1.0, size=(m, system.n_dof))
        vals[0] = rng.uniform(-0.5, 0.5, system.n_dof)
        sp = CubicSpline(t_via, vals, bc_type="clamped")

        def raw(t, sp=sp):
            return sp(t), sp(t, 1), sp(t, 2)

        out.append(_Scaled(f"spline_{i:03d}", duration, center, raw, (half, qd_max), margin, rng))
    return out


# -- characters ---------------------------------------------------------------------------------
def _arc(cx, cy, r, a0, a1, step=15.0):
    n = max(2, int(abs(a1 - a0) / step) + 1)
    a = np.radians(np.linspace(a0, a1, n))
    return [(cx + r * math.cos(x), cy + r * math.sin(x)) for x in a]


def _line(*pts):
    return [tuple(p) for p in pts]


# Our own lower-case glyphs: lists of strokes in a unit box (x-height 0.5, ascenders to 1,
# descenders to -0.45). Strokes are joined by straight pen-up moves, as a pen plotter would.
LETTERS: Dict[str, List[List[Tuple[float, float]]]] = {
    "a": [_arc(0.4, 0.25, 0.25, 20, 380), _line((0.65, 0.5), (0.65, 0.0))],
    "b": [_line((0.15, 1.0), (0.15, 0.0)), _arc(0.4, 0.25, 0.25, 180, -180)],
    "c": [_arc(0.4, 0.25, 0.25, 45, 315)],
    "d": [_arc(0.4, 0.25, 0.25, 0, 360), _line((0.65, 1.0), (0.65, 0.0))],
    "e": [_line((0.15, 0.25), (0.65, 0.25)), _arc(0.4, 0.25, 0.25, 0, 315)],
    "g": [_arc(0.4, 0.25, 0.25, 0, 360), _line((0.65, 0.5), (0.65, -0.2)), _arc(0.4, -0.2, 0.25, 0, -160)],
    "h": [_line((0.15, 1.0), (0.15, 0.0), (0.15, 0.3)), _arc(0.4, 0.3, 0.25, 180, 0), _line((0.65, 0.0))],
    "k": [_line((0.15, 1.0), (0.15, 0.0)), _line((0.6, 0.5), (0.15, 0.2), (0.6, 0.0))],
    "l": [_line((0.3, 1.0), (0.3, 0.1)), _arc(0.45, 0.1, 0.15, 180, 300)],
    "m": [
        _line((0.1, 0.5), (0.1, 0.0), (0.1, 0.3)),
        _arc(0.25, 0.3, 0.15, 180, 0),
        _line((0.4, 0.0), (0.4, 0.3)),
        _arc(0.55, 0.3, 0.15, 180, 0),
        _line((0.7, 0.0)),
    ],
    "n": [_line((0.15, 0.5), (0.15, 0.0), (0.15, 0.3)), _arc(0.4, 0.3, 0.25, 180, 0), _line((0.65, 0.0))],
    "o": [_arc(0.4, 0.25, 0.25, 90, 450)],
    "p": [_line((0.15, 0.5), (0.15, -0.45)), _arc(0.4, 0.25, 0.25, 180, -180)],
    "q": [_arc(0.4, 0.25, 0.25, 0, 360), _line((0.65, 0.5), (0.65, -0.45))],
    "r": [_line((0.15, 0.5), (0.15, 0.0), (0.15, 0.25)), _arc(0.4, 0.25, 0.25, 180, 45)],
    "s": [_arc(0.4, 0.375, 0.125, 30, 270), _arc(0.4, 0.125, 0.125, 90, -150)],
    "u": [_line((0.15, 0.5), (0.15, 0.25)), _arc(0.4, 0.25, 0.25, 180, 360), _line((0.65, 0.5), (0.65, 0.0))],
    "v": [_line((0.1, 0.5), (0.4, 0.0), (0.7, 0.5))],
    "w": [_line((0.05, 0.5), (0.2, 0.0), (0.375, 0.4), (0.55, 0.0), (0.7, 0.5))],
    "y": [_line((0.1, 0.5), (0.4, 0.05)), _line((0.7, 0.5), (0.25, -0.45))],
    "z": [_line((0.1, 0.5), (0.65, 0.5), (0.1, 0.0), (0.65, 0.0))],
}


def letter_path(letter: str) -> np.ndarray:
    """The via points (m, 2) of one letter's pen path in the unit box, duplicates removed."""
    pts = np.array([p for stroke in LETTERS[letter] for p in stroke], float)
    keep = np.r_[True, np.linalg.norm(np.diff(pts, axis=0), axis=1) > 1e-9]
    return pts[keep]


def _min_jerk(tau: np.ndarray) -> Arrays:
    """s(tau) = 10 tau^3 - 15 tau^4 + 6 tau^5 and its first two derivatives (rest to rest)."""
    s = tau**3 * (10 - 15 * tau + 6 * tau**2)
    ds = 30 * tau**2 * (1 - tau) ** 2
    dds = 60 * tau * (1 - tau) * (1 - 2 * tau)
    return s, ds, dds


class CharacterTrajectory(Reference):
    """One letter written by a two-link arm (``system.inverse_kinematics`` is used)."""

    def __init__(self, letter: str, system, duration: float, center: Tuple[float, float], size: float):
        super().__init__(letter, duration, 2)
        pts = letter_path(letter)
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        u = np.r_[0.0, np.cumsum(seg)]
        u /= u[-1]
        # the glyph box centre (0.38, 0.28) goes to the workspace point `center`
        self.path = CubicSpline(u, (pts - [0.38, 0.28]) * size + np.asarray(center), bc_type="clamped")
        self.system = system

    def __call__(self, t):
        t = np.asarray(t, float)
        T = self.duration
        s, ds, dds = _min_jerk(np.clip(t / T, 0.0, 1.0))
        ds, dds = ds / T, dds / T**2
        p = self.path(s)
        pu, puu = self.path(s, 1), self.path(s, 2)
        pd = pu * ds[:, None]
        pdd = puu * (ds**2)[:, None] + pu * dds[:, None]
        return self.system.inverse_kinematics(p, pd, pdd)


def character_trajectories(
    system,
    letters: Optional[Sequence[str]] = None,
    duration: float = 2.0,
) -> List[Reference]:
    """One trajectory per letter (default: all of :data:`LETTERS`, alphabetical), for a two-link arm.

    The letters are written in a box of 0.3 reach across, centred 0.64 reach from the shoulder,
    45 degrees below the horizontal (reach = l1 + l2), well inside the workspace.
    """
    if not hasattr(system, "inverse_kinematics") or system.n_dof != 2:
        raise DataError(f"character trajectories need the two-link arm, not system {system.name!r}")
    letters = sorted(LETTERS) if letters is None else list(letters)
    unknown = [x for x in letters if x not in LETTERS]
    if unknown:
        raise DataError(f"no glyph for letters {unknown}; available: {''.join(sorted(LETTERS))}")
    reach = system.l1 + system.l2
    r0 = 0.64 * reach
    center = (r0 * math.cos(-math.pi / 4), r0 * math.sin(-math.pi / 4))
    return [CharacterTrajectory(x, system, duration, center, 0.3 * reach) for x in letters]


def make_trajectories(
    system, kind: str, n: Optional[int], duration: float, rng: np.random.Generator
) -> List[Reference]:
    """References of one ``kind`` (see :data:`KINDS`); for characters n picks the first n letters."""
    if kind == "fourier":
        return fourier_trajectories(system, n or 10, duration, rng)
    if kind == "splines":
        return spline_trajectories(system, n or 10, duration, rng)
    if kind == "characters":
        letters = sorted(LETTERS)
        if n is not None:
            if not 1 <= n <= len(letters):
                raise DataError(f"there are {len(letters)} character trajectories; asked for {n}")
            letters = letters[:n]
        return character_trajectories(system, letters, duration)
    raise DataError(f"unknown trajectory kind {kind!r}; valid kinds: {', '.join(KINDS)}")
