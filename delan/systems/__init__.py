"""True (simulated) systems with known dynamics, by name.

>>> from delan.systems import make_system, SYSTEMS
>>> arm = make_system("two-link", friction=True)
>>> arm.inverse_dynamics(q, qd, qdd)          # any Dynamics method, batched torch

Every system is a :class:`delan.Dynamics` with ``n_dof``, ``joint_names`` and joint limits
``q_min``, ``q_max``, ``qd_max`` (numpy (n,)) used to generate trajectories.
"""

from __future__ import annotations

import inspect
from typing import Optional

from delan.errors import DataError
from delan.systems.base import TrueSystem
from delan.systems.cartpole import CartPole
from delan.systems.furuta import Furuta
from delan.systems.n_link import NLink
from delan.systems.pendulum import Pendulum
from delan.systems.two_link import TwoLink

SYSTEMS = ["pendulum", "two-link", "cartpole", "furuta", "n-link", "panda"]


def make_system(name: str, n_dof: Optional[int] = None, friction: bool = False, **params) -> TrueSystem:
    """Build the named system.

    Args:
        name: one of :data:`SYSTEMS` ("two_link" spellings are accepted too).
        n_dof: number of links for "n-link" (default 3); for other systems it must be None or
            match the system's own n_dof.
        friction: add viscous + Coulomb joint friction (coefficients via ``viscous``, ``coulomb``).
        **params: physical parameters of the system's constructor (masses, lengths, ...).
    Returns a parameter-free :class:`delan.Dynamics`: its results follow the dtype and device of
    the inputs.

    Raises:
        DataError: unknown name (listing the valid ones), an n_dof the system cannot have, or a
            parameter the system does not take.
    """
    key = name.strip().lower().replace("_", "-")
    if key == "twolink":
        key = "two-link"
    if key not in SYSTEMS:
        raise DataError(f"unknown system {name!r}; valid systems: {', '.join(SYSTEMS)}")
    if key == "panda":
        from delan.systems.panda import Panda as cls  # imports pinocchio lazily
    else:
        cls = {"n-link": NLink, "pendulum": Pendulum, "two-link": TwoLink, "cartpole": CartPole, "furuta": Furuta}[key]
    known = _parameters(cls) - {"friction", "n_dof"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise DataError(f"system {key!r} has no parameter {', '.join(unknown)}; it takes {', '.join(sorted(known))}")
    if key == "n-link":
        return NLink(n_dof=3 if n_dof is None else n_dof, friction=friction, **params)
    try:
        system = cls(friction=friction, **params)
    except ImportError as exc:  # the Panda without pinocchio
        raise DataError(str(exc)) from exc
    if n_dof is not None and int(n_dof) != system.n_dof:
        raise DataError(f"system {key!r} has {system.n_dof} degrees of freedom, not {n_dof}")
    return system


def _parameters(cls) -> set:
    """Keyword parameters a system's constructor takes, through ``**kwargs`` to its bases."""
    names = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        sig = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in sig if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
        if not any(p.kind == p.VAR_KEYWORD for p in sig):
            break
    return names


__all__ = ["SYSTEMS", "make_system", "TrueSystem", "Pendulum", "TwoLink", "NLink", "CartPole", "Furuta"]
