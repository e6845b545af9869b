"""Velocity and acceleration estimates from sampled positions (Savitzky-Golay).

A Savitzky-Golay filter fits a polynomial of order ``polyorder`` to ``window`` samples around
each point by least squares and differentiates the fit (``scipy.signal.savgol_filter``, with
``mode="interp"`` so the ends use the fit of the first/last full window). The same window gives
q, qd and qdd, so they stay consistent. Measured accuracy: datasets/README.md.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from scipy.signal import savgol_filter

from delan.errors import DataError

DEFAULT_WINDOW_S = 0.1  # seconds of data per fit when no window is given
DEFAULT_POLYORDER = 3


def default_window(rate: float, polyorder: int = DEFAULT_POLYORDER) -> int:
    """An odd window spanning about 0.1 s at ``rate`` Hz, and at least polyorder + 2 samples."""
    w = int(round(DEFAULT_WINDOW_S * rate))
    w = max(w, polyorder + 2)
    return w if w % 2 == 1 else w + 1


def estimate_derivatives(t: np.ndarray, q: np.ndarray, window: Optional[int] = None,
                         polyorder: int = DEFAULT_POLYORDER, source: Optional[str] = None,
                         smooth_q: bool = False) -> Tuple[np.ndarray, np.ndarray, dict]:
    """qd, qdd (T, n) from positions q (T, n) sampled at uniform times t (T,).

    Args:
        window: odd number of samples per fit (default :func:`default_window`); shrunk to the
            trajectory length if longer.
        polyorder: order of the fitted polynomial (>= 2 so qdd exists).
        smooth_q: also return the filtered q in ``info["q"]``.
    Returns:
        (qd, qdd, info) where info describes what was done (method, window, polyorder, rate).
    Raises:
        DataError if the sampling is not uniform or the options are impossible.
    """
    where = source or "<memory>"
    t = np.asarray(t, float)
    q = np.asarray(q, float)
    if q.ndim != 2 or t.ndim != 1 or q.shape[0] != t.shape[0]:
        raise DataError(f"{where}: field 'q': expected shape (T, n) with T = len(t) = {t.shape}, got {q.shape}")
    T = len(t)
    dt_all = np.diff(t)
    dt = float(np.median(dt_all))
    if not np.all(dt_all > 0):
        raise DataError(f"{where}: field 't': time must be strictly increasing")
    if np.max(np.abs(dt_all - dt)) > 1e-3 * dt:
        raise DataError(f"{where}: field 't': derivative estimation needs a fixed sampling rate; "
                        f"steps range from {dt_all.min():.6g} to {dt_all.max():.6g} s")
    polyorder = int(polyorder)
    if polyorder < 2:
        raise DataError(f"{where}: polyorder must be >= 2 to estimate accelerations, got {polyorder}")
    rate = 1.0 / dt
    w = default_window(rate, polyorder) if window is None else int(window)
    if w % 2 == 0:
        raise DataError(f"{where}: window must be an odd number of samples, got {w}")
    if w > T:
        w = T if T % 2 == 1 else T - 1
    if w <= polyorder:
        raise DataError(f"{where}: {T} samples are too few for a window > polyorder = {polyorder}")
    qd = savgol_filter(q, w, polyorder, deriv=1, delta=dt, axis=0, mode="interp")
    qdd = savgol_filter(q, w, polyorder, deriv=2, delta=dt, axis=0, mode="interp")
    info = {"method": "savitzky-golay", "window": w, "polyorder": polyorder, "rate": rate,
            "window_s": w * dt, "scipy": "scipy.signal.savgol_filter(mode='interp')"}
    if smooth_q:
        info["q"] = savgol_filter(q, w, polyorder, deriv=0, axis=0, mode="interp")
    return qd, qdd, info


def describe(info: dict) -> str:
    """One line saying what :func:`estimate_derivatives` did."""
    return (f"qd, qdd estimated by Savitzky-Golay filter: window {info['window']} samples "
            f"({1000 * info['window_s']:.0f} ms at {info['rate']:.6g} Hz), polynomial order {info['polyorder']}")
