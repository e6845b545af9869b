"""Velocity and acceleration estimates from sampled positions, and torque despiking.

Uniform clock: a Savitzky-Golay filter fits a polynomial of order ``polyorder`` to ``window``
samples around each point by least squares and differentiates the fit
(``scipy.signal.savgol_filter``, with ``mode="interp"`` so the ends use the fit of the first/last
full window). The same window gives q, qd and qdd, so they stay consistent.

Jittered clock (steps spread by more than 1e-3 of the median step): the same idea on the actual
time stamps, :func:`local_polynomial_derivatives`: for every sample a polynomial of order
``polyorder`` in (t - t_i) is fitted by least squares to the ``window`` samples centred on it
(windows shifted inward at the ends, like savgol's ``mode="interp"``), and its first and second
derivatives at t_i are the estimates. Pretending such a clock is uniform turns the timing error
into velocity error (see tests/test_data_import_real.py for measured figures).

Torque spikes: :func:`hampel` (moving median, MAD scale). Measured accuracy: datasets/README.md.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from scipy.signal import savgol_filter

from delan.errors import DataError

DEFAULT_WINDOW_S = 0.1  # seconds of data per fit when no window is given
DEFAULT_POLYORDER = 3
UNIFORM_TOLERANCE = 1e-3  # a clock is uniform when every step is within this fraction of the median
JITTER_REPORT = 0.01  # steps further than this fraction from the median are counted as jittered
MAD_SCALE = 1.4826  # MAD -> standard deviation of Gaussian noise


def default_window(rate: float, polyorder: int = DEFAULT_POLYORDER) -> int:
    """An odd window spanning about 0.1 s at ``rate`` Hz, and at least polyorder + 2 samples."""
    w = int(round(DEFAULT_WINDOW_S * rate))
    w = max(w, polyorder + 2)
    return w if w % 2 == 1 else w + 1


def check_time(t: np.ndarray, source: Optional[str] = None) -> None:
    """DataError naming field 't' and the first index where time does not strictly increase."""
    dt = np.diff(t)
    if np.any(~(dt > 0)):
        k = int(np.argmax(~(dt > 0)))
        raise DataError(
            f"{source or '<memory>'}: field 't': time must be strictly increasing "
            f"(t[{k + 1}] = {float(t[k + 1])!r} <= t[{k}] = {float(t[k])!r})"
        )


def clock_info(t: np.ndarray) -> dict:
    """What the time stamps look like: median/min/max/std of the steps [s], the number of steps
    further than 1 % from the median (``jittered_steps``) out of ``steps``, and ``uniform``
    (every step within 1e-3 of the median: the fixed-rate Savitzky-Golay filter applies).
    ``rate`` = 1 / median step; ``rate_mean`` = 1 / mean of the steps within 50 % of the median
    (on a jittered clock much less noisy than the median: early and late steps cancel)."""
    dt = np.diff(np.asarray(t, float))
    med = float(np.median(dt))
    dev = np.abs(dt - med)
    typical = dt[dev <= 0.5 * med]  # leaves out dropped samples (gaps of 2 steps and more)
    return {
        "uniform": bool(dev.max() <= UNIFORM_TOLERANCE * med),
        "rate": 1.0 / med,
        "rate_mean": 1.0 / float(typical.mean()),
        "step_median": med,
        "step_min": float(dt.min()),
        "step_max": float(dt.max()),
        "step_std": float(dt.std()),
        "jittered_steps": int(np.sum(dev > JITTER_REPORT * med)),
        "steps": int(len(dt)),
    }


def _windows(T: int, w: int, centres: np.ndarray) -> np.ndarray:
    """(len(centres), w) sample indices of the window of each centre, shifted inward at the ends."""
    start = np.clip(centres - w // 2, 0, T - w)
    return start[:, None] + np.arange(w)


def local_polynomial_derivatives(
    t: np.ndarray, q: np.ndarray, window: int, polyorder: int, derivs: Tuple[int, ...] = (1, 2)
) -> Tuple[np.ndarray, ...]:
    """Savitzky-Golay generalised to non-uniform time stamps, vectorised over all centres.

    For each sample i: least-squares polynomial of order ``polyorder`` in (t - t_i) over the
    ``window`` samples centred on i (shifted inward at the ends), evaluated at t_i. Returns one
    (T, n) array per entry of ``derivs`` (0 = smoothed q, 1 = qd, 2 = qdd). On a uniform clock
    it equals ``savgol_filter(..., mode="interp")`` to rounding (with long windows and high
    orders scipy's convolution coefficients lose more precision than this fit does).
    Centres are processed in blocks, so memory stays bounded for long logs.
    """
    t = np.asarray(t, float)
    q = np.asarray(q, float)
    T, w, p = len(t), int(window), int(polyorder)
    scale = 0.5 * (w - 1) * float(np.median(np.diff(t)))  # offsets in units of half a window: well conditioned
    out = [np.empty_like(q) for _ in derivs]
    block = max(1, 2_000_000 // (w * (p + 1)))  # ~16 MB of Vandermonde matrices at a time
    for lo in range(0, T, block):
        centres = np.arange(lo, min(T, lo + block))
        idx = _windows(T, w, centres)
        x = (t[idx] - t[centres, None]) / scale  # (B, w)
        V = x[:, :, None] ** np.arange(p + 1)  # (B, w, p+1) Vandermonde of each window
        P = np.linalg.pinv(V)  # (B, p+1, w): least-squares coefficients = P @ y
        qw = q[idx]  # (B, w, n)
        for k, d in enumerate(derivs):
            fact = float(np.prod(np.arange(1, d + 1)))  # d-th derivative at offset 0 = d! a_d
            out[k][centres] = np.einsum("tw,twn->tn", P[:, d, :] * (fact / scale**d), qw)
    return tuple(out)


def estimate_derivatives(
    t: np.ndarray,
    q: np.ndarray,
    window: Optional[int] = None,
    polyorder: int = DEFAULT_POLYORDER,
    source: Optional[str] = None,
    smooth_q: bool = False,
) -> Tuple[np.ndarray, np.ndarray, dict]:
    """qd, qdd (T, n) from positions q (T, n) sampled at times t (T,), uniform or jittered.

    A uniform clock (every step within 1e-3 of the median step) uses
    ``scipy.signal.savgol_filter(mode="interp")``; any other strictly increasing clock uses
    :func:`local_polynomial_derivatives` on the actual time stamps.

    Args:
        window: odd number of samples per fit (default :func:`default_window` at the median
            rate); shrunk to the trajectory length if longer.
        polyorder: order of the fitted polynomial (>= 2 so qdd exists).
        smooth_q: also return the filtered q in ``info["q"]``.
    Returns:
        (qd, qdd, info); info: ``method`` ("savitzky-golay" or "local-polynomial"), ``window``,
        ``polyorder``, ``rate`` (median), ``window_s``, ``clock`` (:func:`clock_info`).
    Raises:
        DataError if time does not strictly increase (naming the index) or the options are impossible.
    """
    where = source or "<memory>"
    t = np.asarray(t, float)
    q = np.asarray(q, float)
    if q.ndim != 2 or t.ndim != 1 or q.shape[0] != t.shape[0]:
        raise DataError(f"{where}: field 'q': expected shape (T, n) with T = len(t) = {t.shape}, got {q.shape}")
    T = len(t)
    if T < 2:
        raise DataError(f"{where}: field 't': needs at least 2 samples, got {T}")
    check_time(t, where)
    clock = clock_info(t)
    dt = clock["step_median"]
    polyorder = int(polyorder)
    if polyorder < 2:
        raise DataError(f"{where}: polyorder (--polyorder) must be >= 2 to estimate accelerations, got {polyorder}")
    rate = 1.0 / dt
    need = polyorder + 1 if polyorder % 2 == 0 else polyorder + 2  # smallest odd window > polyorder
    w = default_window(rate, polyorder) if window is None else int(window)
    if window is not None:
        if w < 1 or w % 2 == 0:
            raise DataError(f"{where}: window (--window) must be a positive odd number of samples, got {w}")
        if w <= polyorder:
            raise DataError(
                f"{where}: window (--window) of {w} samples must be larger than polyorder "
                f"(--polyorder) {polyorder}; give --window {need} or more"
            )
    if w > T:
        w = T if T % 2 == 1 else T - 1
    if w <= polyorder:
        raise DataError(
            f"{where}: {T} samples are too few to fit polynomials of order {polyorder} (--polyorder) "
            f"for qd, qdd; a trajectory needs at least {need} (or lower --polyorder, or record qd, qdd)"
        )
    info = {"window": w, "polyorder": polyorder, "rate": rate, "window_s": w * dt, "clock": clock}
    if clock["uniform"]:
        qd = savgol_filter(q, w, polyorder, deriv=1, delta=dt, axis=0, mode="interp")
        qdd = savgol_filter(q, w, polyorder, deriv=2, delta=dt, axis=0, mode="interp")
        info.update(method="savitzky-golay", scipy="scipy.signal.savgol_filter(mode='interp')")
        if smooth_q:
            info["q"] = savgol_filter(q, w, polyorder, deriv=0, axis=0, mode="interp")
    else:
        derivs = (1, 2, 0) if smooth_q else (1, 2)
        res = local_polynomial_derivatives(t, q, w, polyorder, derivs)
        qd, qdd = res[0], res[1]
        info.update(
            method="local-polynomial",
            fit="least-squares polynomial in (t - t_i) over the window centred on each sample, "
            "on the actual time stamps; windows shifted inward at the ends",
        )
        if smooth_q:
            info["q"] = res[2]
    return qd, qdd, info


def describe_method(info: dict) -> str:
    """The filter of :func:`estimate_derivatives` in words, e.g. "Savitzky-Golay filter: window
    25 samples (100 ms at 250 Hz), polynomial order 3"."""
    if info.get("method") == "local-polynomial":
        return (
            f"local polynomial fits on the actual time stamps: window {info['window']} samples "
            f"(~{1000 * info['window_s']:.0f} ms at the median {info['rate']:.4g} Hz), "
            f"polynomial order {info['polyorder']}"
        )
    return (
        f"Savitzky-Golay filter: window {info['window']} samples "
        f"({1000 * info['window_s']:.0f} ms at {info['rate']:.6g} Hz), polynomial order {info['polyorder']}"
    )


def describe(info: dict) -> str:
    """One line saying which of qd, qdd were measured and how the others were estimated, from
    the ``derivatives`` note of a trajectory (:func:`fill_derivatives`); e.g. "qd measured; qdd
    estimated (Savitzky-Golay filter: ...)". A note without ``estimated`` means both estimated."""
    if info is None:
        return "qd, qdd measured"
    estimated = info.get("estimated", ["qd", "qdd"])
    measured = [f for f in ("qd", "qdd") if f not in estimated]
    est = f"{', '.join(estimated)} estimated ({describe_method(info)})"
    return f"{', '.join(measured)} measured; {est}" if measured else est


def fill_derivatives(
    t,
    q,
    qd=None,
    qdd=None,
    window: Optional[int] = None,
    polyorder: int = DEFAULT_POLYORDER,
    source: Optional[str] = None,
):
    """Keep measured qd / qdd, estimate the missing ones from q (:func:`estimate_derivatives`).

    Returns (qd, qdd, meta): ``meta["sources"]`` = {"qd": "measured" | "estimated", "qdd": ...};
    when anything was estimated, ``meta["derivatives"]`` = the estimator's info plus
    ``estimated`` / ``measured`` (lists of field names).
    """
    sources = {
        "qd": "measured" if qd is not None else "estimated",
        "qdd": "measured" if qdd is not None else "estimated",
    }
    meta = {"sources": sources}
    if qd is None or qdd is None:
        e_qd, e_qdd, info = estimate_derivatives(t, q, window, polyorder, source=source)
        info["estimated"] = [f for f in ("qd", "qdd") if sources[f] == "estimated"]
        info["measured"] = [f for f in ("qd", "qdd") if sources[f] == "measured"]
        qd = e_qd if qd is None else qd
        qdd = e_qdd if qdd is None else qdd
        meta["derivatives"] = info
    return qd, qdd, meta


def _ms(x: float) -> str:
    return f"{1000 * x:.3g}"


def describe_clock(clock: dict) -> str:
    """One line about the time stamps (:func:`clock_info`)."""
    if clock["uniform"]:
        return f"clock uniform: {clock['rate']:.6g} Hz (step {_ms(clock['step_median'])} ms)"
    return (
        f"clock jittered: {clock['rate_mean']:.4g} Hz, median step {_ms(clock['step_median'])} ms, steps "
        f"{_ms(clock['step_min'])}–{_ms(clock['step_max'])} ms, std {_ms(clock['step_std'])} ms, "
        f"{clock['jittered_steps']} of {clock['steps']} steps > 1 % off the median"
    )


# -- torque spikes ---------------------------------------------------------------------------
DESPIKE_WINDOW = 11
DESPIKE_THRESHOLD = 5.0


def hampel(
    x: np.ndarray, window: int = DESPIKE_WINDOW, threshold: float = DESPIKE_THRESHOLD
) -> Tuple[np.ndarray, np.ndarray]:
    """Hampel filter on each column of x (T, n): a sample further than ``threshold`` scaled MADs
    from the median of the ``window`` samples centred on it is replaced by that median.

    The scale is a robust noise level, 1.4826 MAD / sqrt(6) of the second differences
    x[i-1] - 2 x[i] + x[i+1] (white noise of std s gives second differences of std sqrt(6) s;
    a smooth trend adds almost nothing to them), the larger of that over the 10 * window samples
    around i (so noise that changes over the log is followed) and over the whole column. This
    departs from the textbook filter (scale = 1.4826 x MAD of the window's own values), whose
    scale the trend inflates where the signal is steep (hiding spikes), two spikes in one window
    inflate too, and an 11-sample MAD is often small by chance: on white Gaussian noise it lets
    about 0.4 % of the samples cross 5 scaled MADs (ours: none; measured by
    tests/test_data_import_real.py::test_hampel_scale_on_pure_noise). Within window // 2 samples of the ends the
    median's window shrinks symmetrically (so a trend is not mistaken for a spike; the very
    first and last samples are never replaced).

    Returns (filtered x, boolean mask of the replaced samples), both (T, n).
    """
    x = np.asarray(x, float)
    if x.ndim == 1:
        y, m = hampel(x[:, None], window, threshold)
        return y[:, 0], m[:, 0]
    window = int(window)
    if window < 3 or window % 2 == 0:
        raise DataError(f"despike window must be an odd number of samples >= 3, got {window}")
    if not threshold > 0:
        raise DataError(f"despike threshold must be positive, got {threshold}")
    T = x.shape[0]
    if T < 3:
        return x.copy(), np.zeros(x.shape, bool)
    from numpy.lib.stride_tricks import sliding_window_view

    def noise(d2, axis):  # robust std of white noise from its second differences
        return MAD_SCALE * np.median(np.abs(d2 - np.median(d2, axis=axis, keepdims=True)), axis=axis) / np.sqrt(6.0)

    d2 = x[2:] - 2 * x[1:-1] + x[:-2]  # d2[k] is centred on sample k + 1
    scale = np.broadcast_to(noise(d2, 0), x.shape).copy()
    scale = np.maximum(scale, 1e-12 * np.maximum(1.0, np.abs(x).max(axis=0)))  # a constant column
    h = min(window // 2, (T - 1) // 2)
    med = x.copy()
    if h > 0:
        m = np.median(sliding_window_view(x, 2 * h + 1, axis=0), axis=-1)  # (T - 2h, n)
        med[h : T - h] = m
    L = min(10 * window, T - 2)  # second differences per local noise estimate
    if L >= 9:
        local = noise(sliding_window_view(d2, L, axis=0), -1)  # (T - 1 - L, n)
        start = np.clip(np.arange(T) - 1 - L // 2, 0, T - 2 - L)  # centred on i, shifted inward at the ends
        scale = np.maximum(scale, local[start])
        for i in range(1, h):  # symmetric shrinking windows at both ends
            for c in (i, T - 1 - i):
                med[c] = np.median(x[c - i : c + i + 1], axis=0)
    r = x - med
    mask = np.abs(r) > threshold * scale
    return np.where(mask, med, x), mask
