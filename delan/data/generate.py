"""Build data sets from a known system: reference trajectories, exact torques, ground truth.

Two ways to get (q, qd, qdd, tau):

* default: the reference trajectory itself, with torques from exact inverse dynamics;
* ``simulate=True``: the system is integrated (RK4, step <= 2 ms) from a slightly perturbed
  start under a tracking controller that applies the inverse dynamics at the reference state
  with a PD correction in acceleration space,
  ``tau = ID(q_r, qd_r, qdd_r + Kp (q_r - q) + Kd (qd_r - qd))`` (5 Hz, critically damped);
  recorded q, qd, qdd, tau are those of the simulated robot.

Ground truth (H, tau_inertial, tau_coriolis, tau_gravity, tau_friction) is computed at the
recorded states before any sensor noise. ``noise`` adds white Gaussian noise to the measured
q, qd, qdd and tau, with standard deviation ``noise`` times each channel's RMS over the data
set (relative, so one number fits every system and unit).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from delan.data._options import bind_options
from delan.data.schema import Dataset, Trajectory
from delan.data.sizes import check_memory, dataset_bytes, format_bytes, format_number
from delan.errors import DataError
from delan.integrators import rollout
from delan.systems import make_system
from delan.trajectories import KINDS, make_trajectories

DEFAULT_DURATION = {"characters": 2.0, "fourier": 5.0, "splines": 5.0}


def _truth(system, q, qd, qdd):
    """Exact terms at numpy states (T, n) -> dict of numpy arrays (tau and truth fields)."""
    to = lambda x: torch.as_tensor(x, dtype=torch.float64)  # noqa: E731
    with torch.no_grad():
        tr = system.terms(to(q), to(qd), to(qdd))
    return {
        "tau": tr.tau.numpy(),
        "H": tr.H.numpy(),
        "tau_inertial": tr.inertial.numpy(),
        "tau_coriolis": tr.coriolis.numpy(),
        "tau_gravity": tr.gravity.numpy(),
        "tau_friction": tr.friction.numpy(),
    }


def _simulate(system, refs, t: np.ndarray, rate: float, rng: np.random.Generator):
    """Track all references at once (a batch) and return per-trajectory (q, qd, qdd, tau)."""
    sub = max(1, int(math.ceil(500.0 / rate)))  # RK4 step <= 2 ms: well below the 5 Hz loop's time scale
    dt = 1.0 / (rate * sub)
    wn = 2 * math.pi * 5.0
    kp, kd = wn**2, 2 * wn
    to = lambda x: torch.as_tensor(x, dtype=torch.float64)  # noqa: E731
    # RK4 only asks for times on the half-step grid, so evaluate every reference there once
    half = np.arange(2 * (len(t) - 1) * sub + 1) * (dt / 2)
    ref_q, ref_qd, ref_qdd = (to(np.stack(x, 1)) for x in zip(*(r(half) for r in refs)))  # (G, B, n)

    def desired(tk: float):
        k = int(round(tk / (dt / 2)))
        return ref_q[k], ref_qd[k], ref_qdd[k]

    def controller(tk: float, q, qd):
        qr, qdr, qddr = desired(tk)
        return system.inverse_dynamics(qr, qdr, qddr + kp * (qr - q) + kd * (qdr - qd))

    q0, qd0, _ = desired(0.0)
    q0 = q0 + to(rng.normal(scale=0.02, size=q0.shape))
    # the batch is tiny, so intra-op threads only add synchronisation (10x slower on a busy machine)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            ro = rollout(system, q0, qd0, controller, dt, (len(t) - 1) * sub, "rk4")
    finally:
        torch.set_num_threads(threads)
    Q, QD, QDD = (x[::sub].numpy() for x in (ro.q, ro.qd, ro.qdd))  # (T, B, n)
    out = []
    for b in range(len(refs)):
        out.append((Q[:, b], QD[:, b], QDD[:, b]))
    return out


@dataclass
class GenerationPlan:
    """A generation recipe checked and set up by :func:`plan_generation`."""

    #: the arguments of :func:`generate_dataset` by name, defaults filled in; ``duration`` (its
    #: default per kind applied) and ``rate`` as floats
    recipe: SimpleNamespace
    system: Any
    refs: list
    T: int  # samples per trajectory

    def generator_info(self) -> Dict[str, Any]:
        """The data file's ``generator`` attribute: the recipe as carried out."""
        r = self.recipe
        info = {
            "kind": r.kind,
            "n_trajectories": len(self.refs),
            "duration": r.duration,
            "rate": r.rate,
            "noise": r.noise,
            "noise_model": "relative: std = noise * per-joint RMS of q, qd, qdd, tau",
            "friction": bool(r.friction),
            "simulate": bool(r.simulate),
            "seed": int(r.seed),
            "system_params": self.system.describe(),
        }
        if r.simulate:
            info["controller"] = "ID at reference + PD in acceleration space, 5 Hz, zeta = 1; RK4 step <= 2 ms"
        return info


def plan_generation(
    *recipe_args: Any, check_memory_use: bool = True, disk_folder: Optional[str] = None, **recipe_kwargs: Any
) -> GenerationPlan:
    """Check a recipe (the arguments of :func:`generate_dataset`, positional or by name) and make
    its system and references. ``check_memory_use``: refuse sizes beyond the memory limit (off for
    :mod:`delan.data.chunked`, which writes a file in pieces); ``disk_folder``: refuse a file
    larger than the free space there."""
    # generate_dataset's signature is the one place the recipe's options and defaults are written
    r = bind_options(generate_dataset, *recipe_args, **recipe_kwargs)
    system_name, kind, n_trajectories, n_dof, seed = r.system_name, r.kind, r.n_trajectories, r.n_dof, r.seed
    noise, friction, simulate, system_params = r.noise, r.friction, r.simulate, r.system_params
    if kind not in KINDS:
        raise DataError(f"unknown trajectory kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    rate = r.rate = float(r.rate)
    if not (math.isfinite(rate) and rate > 0):
        raise DataError(f"rate must be a positive number of Hz (--rate), got {format_number(rate)}")
    if not (math.isfinite(noise) and noise >= 0):
        raise DataError(f"noise must be a finite number >= 0 (--noise), got {format_number(noise)}")
    if n_trajectories is not None and n_trajectories < 1:
        raise DataError(f"need at least one trajectory, got {n_trajectories}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer (--seed), got {format_number(seed)}")
    duration = r.duration = DEFAULT_DURATION[kind] if r.duration is None else float(r.duration)
    if not (math.isfinite(duration) and duration > 0):
        raise DataError(f"duration must be a positive number of seconds (--duration), got {format_number(duration)}")
    if n_dof is not None and n_dof < 1:
        raise DataError(f"n_dof must be a positive number of joints (--n-dof), got {n_dof}")
    try:
        system = make_system(system_name, n_dof=n_dof, friction=friction, **system_params)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"system {system_name!r}: {exc}") from None
    samples = duration * rate + 1  # per trajectory
    sub = max(1, int(math.ceil(500.0 / rate))) if simulate else 0

    def check_size(n_traj: int) -> None:
        what = (
            f"rate (--rate) {format_number(rate)} Hz x duration (--duration) {format_number(duration)} s x "
            f"{n_traj} trajector{'y' if n_traj == 1 else 'ies'} (--trajectories) = {samples * n_traj:.3g} samples "
            f"of {system.n_dof} joint{'s' if system.n_dof != 1 else ''}"
        )
        if check_memory_use:
            check_memory(
                dataset_bytes(system.n_dof, samples * n_traj, sub),
                what,
                "lower the rate, the duration or the number of trajectories (or write the file in "
                "pieces: `delan generate --piece-samples N`)",
                error=DataError,
            )
        if disk_folder is not None:
            import shutil

            need = file_bytes(system.n_dof, samples * n_traj)
            free = shutil.disk_usage(disk_folder).free
            if not need <= free:
                raise DataError(
                    f"{what} would write up to {format_bytes(need)} to {disk_folder}, more than its "
                    f"{format_bytes(free)} free; lower the rate, the duration or the number of "
                    f"trajectories"
                )
        if samples < 2:
            raise DataError(
                f"duration (--duration) {format_number(duration)} s at rate (--rate) "
                f"{format_number(rate)} Hz gives fewer than 2 samples"
            )

    if n_trajectories is not None:
        check_size(int(n_trajectories))
    rng = np.random.default_rng(seed)
    refs = make_trajectories(system, kind, n_trajectories, duration, rng)
    check_size(len(refs))
    T = int(round(duration * rate)) + 1
    if T < 2:
        raise DataError(
            f"duration (--duration) {format_number(duration)} s at rate (--rate) "
            f"{format_number(rate)} Hz gives fewer than 2 samples"
        )
    return GenerationPlan(r, system, refs, T)


def file_bytes(n_dof: int, samples: float) -> float:
    """Bytes of a generated file at most (uncompressed float64: t, q, qd, qdd, tau, four torque
    terms, H); gzip usually saves a fifth to a third."""
    return 8.0 * samples * (1 + 8 * n_dof + n_dof * n_dof)


def generate_dataset(
    system_name: str,
    kind: str = "fourier",
    n_trajectories: Optional[int] = None,
    duration: Optional[float] = None,
    rate: float = 250.0,
    noise: float = 0.0,
    friction: bool = False,
    n_dof: Optional[int] = None,
    seed: int = 0,
    simulate: bool = False,
    **system_params,
) -> Dataset:
    """Simulate a data set of ``system_name`` (see :data:`delan.systems.SYSTEMS`).

    Args:
        kind: "fourier", "characters" (two-link only; one trajectory per letter) or "splines".
        n_trajectories: number of trajectories (characters: the first n letters; default all
            letters, else 10).
        duration: seconds per trajectory (default 2 s for characters, 5 s otherwise).
        rate: sampling rate [Hz]; samples at t = k / rate including both ends.
        noise: relative sensor-noise level (see module docstring); 0 = exact data.
        friction: simulate joint friction (its torque is in ``tau_friction``).
        n_dof: number of links for "n-link".
        seed: reproduces the data set bit for bit.
        simulate: record a simulated tracking run instead of the reference itself.
        **system_params: physical parameters of the system (see :func:`delan.systems.make_system`),
            e.g. ``armature=[0.05, 0.02]`` (rotor inertia per joint, added to H); recorded in the
            file's ``generator["system_params"]``.
    Returns:
        Dataset with ground truth in every trajectory's ``truth`` and the system's
        ``joint_types``.
    """
    plan = plan_generation(
        system_name, kind, n_trajectories, duration, rate, noise, friction, n_dof, seed, simulate, **system_params
    )
    system, refs = plan.system, plan.refs
    t = np.arange(plan.T) / plan.recipe.rate
    started = time.perf_counter()
    if simulate:
        states = _simulate(system, refs, t, plan.recipe.rate, np.random.default_rng([seed, 2]))
    else:
        states = [r(t) for r in refs]
    trajs: List[Trajectory] = []
    for ref, (q, qd, qdd) in zip(refs, states):
        fields = _truth(system, q, qd, qdd)
        tau = fields.pop("tau")
        trajs.append(Trajectory(ref.name, t, q, qd, qdd, tau, truth=fields))
    if noise > 0:
        nrng = np.random.default_rng([seed, 1])
        for f in ("q", "qd", "qdd", "tau"):
            rms = np.sqrt(np.mean(np.concatenate([getattr(tr, f) for tr in trajs]) ** 2, axis=0))
            for tr in trajs:
                x = getattr(tr, f)
                setattr(tr, f, x + nrng.normal(size=x.shape) * (noise * rms))
    seconds = round(time.perf_counter() - started, 3)
    # timing varies run to run, so it stays out of the file (a seed must reproduce it exactly)
    attrs = {"generator": plan.generator_info()}
    ds = Dataset(trajs, system.n_dof, system.joint_names, system.name, attrs, joint_types=system.joint_types)
    ds.generation_seconds = seconds
    return ds
