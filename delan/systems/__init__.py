"""True (simulated) systems with known dynamics, by name.

>>> from delan.systems import make_system, SYSTEMS
>>> arm = make_system("two-link", friction=True)
>>> arm.inverse_dynamics(q, qd, qdd)          # any Dynamics method, batched torch

Every system is a :class:`delan.Dynamics` with ``n_dof``, ``joint_names`` and joint limits
``q_min``, ``q_max``, ``qd_max`` (numpy (n,)) used to generate trajectories.
"""
from __future__ import annotations

from typing import Optional

import torch

from delan.errors import DataError
from delan.systems.base import TrueSystem
from delan.systems.cartpole import CartPole
from delan.systems.furuta import Furuta
from delan.systems.n_link import NLink
from delan.systems.pendulum import Pendulum
from delan.systems.two_link import TwoLink

SYSTEMS = ["pendulum", "two-link", "cartpole", "furuta", "n-link", "panda"]


def make_system(name: str, n_dof: Optional[int] = None, friction: bool = False,
                dtype: torch.dtype = torch.float64, **params) -> TrueSystem:
    """Build the named system.

    Args:
        name: one of :data:`SYSTEMS` ("two_link" spellings are accepted too).
        n_dof: number of links for "n-link" (default 3); for other systems it must be None or
            match the system's own n_dof.
        friction: add viscous + Coulomb joint friction (coefficients via ``viscous``, ``coulomb``).
        dtype: kept for API symmetry; results always follow the dtype/device of the inputs.
        **params: physical parameters of the system's constructor (masses, lengths, ...).
    Raises:
        DataError: unknown name (listing the valid ones) or an n_dof the system cannot have.
    """
    key = name.strip().lower().replace("_", "-")
    if key == "twolink":
        key = "two-link"
    if key not in SYSTEMS:
        raise DataError(f"unknown system {name!r}; valid systems: {', '.join(SYSTEMS)}")
    if key == "n-link":
        return NLink(n_dof=3 if n_dof is None else n_dof, friction=friction, **params)
    if key == "panda":
        from delan.systems.panda import Panda  # imports pinocchio lazily
        try:
            system = Panda(friction=friction, **params)
        except ImportError as exc:
            raise DataError(str(exc)) from exc
    else:
        cls = {"pendulum": Pendulum, "two-link": TwoLink, "cartpole": CartPole, "furuta": Furuta}[key]
        system = cls(friction=friction, **params)
    if n_dof is not None and int(n_dof) != system.n_dof:
        raise DataError(f"system {key!r} has {system.n_dof} degrees of freedom, not {n_dof}")
    return system


__all__ = ["SYSTEMS", "make_system", "TrueSystem", "Pendulum", "TwoLink", "NLink", "CartPole", "Furuta"]
