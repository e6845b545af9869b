"""The feed-forward baseline: a plain network from (q, qd, qdd) to tau, no physics.

It learns inverse dynamics only. Every other :class:`delan.Dynamics` method raises
:class:`NoDecompositionError`: the network has no mass matrix, Coriolis, gravity or energy terms,
and no forward model to simulate with.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union, Unpack

import torch
from torch import Tensor

import ddn
from delan.errors import NoDecompositionError
from delan.models.base import LearnedModel, NetworkOptions, network_options, state_options


class FeedForwardModel(LearnedModel):
    """Multilayer perceptron tau = f(q, qd, qdd), the baseline of the DeLaN paper.

    Args:
        n_dof: number of joints n.
        revolute: per-joint mask; revolute angles enter as (sin q, cos q).
        dtype, device: of the parameters; inputs must match them.
        **network: the network's options (:class:`delan.models.base.NetworkOptions`).
    """

    inverse_only = True
    # the loss parts training uses unless told (read by delan.losses.resolve_weights)
    default_loss_weights = {"inverse": 1.0, "forward": 0.0, "power": 0.0}

    def __init__(
        self,
        n_dof: int,
        revolute: Optional[Sequence[bool]] = None,
        dtype: Union[None, str, torch.dtype] = None,
        device=None,
        **network: Unpack[NetworkOptions],
    ):
        super().__init__()
        n, dtype, mask = state_options(n_dof, revolute, dtype)
        net = network_options(type(self).__name__, network)
        self.n_dof = n
        self._record_config(locals(), net, n_dof=n, dtype=dtype)
        # revolute angles enter as (sin q, cos q) like in the Lagrangian models, so a joint that
        # wrapped past 2 pi looks the same to the network as it does to the robot
        self._revolute = None if mask is None else torch.tensor(mask)
        if mask is not None:
            # integer indices, not a boolean mask: a mask's selection has a data-dependent size,
            # which torch.export (and ONNX export through it) cannot trace
            for name, keep in (("_prismatic_index", False), ("_revolute_index", True)):
                index = torch.tensor([i for i, r in enumerate(mask) if r == keep], dtype=torch.long)
                self.register_buffer(name, index.to(device), persistent=False)
        n_q = n if mask is None else n + sum(mask)
        self.net = ddn.DifferentialNetwork(n_q + 2 * n, n, dtype=dtype, device=device, **net)

    def inverse_dynamics(self, q: Tensor, qd: Tensor, qdd: Tensor) -> Tensor:
        """tau (B, n) predicted from (q, qd, qdd) (B, n)."""
        q, qd, qdd = self._inputs(q=q, qd=qd, qdd=qdd)
        if self._revolute is not None:
            qr = q.index_select(-1, self._revolute_index)
            q = torch.cat([q.index_select(-1, self._prismatic_index), torch.sin(qr), torch.cos(qr)], -1)
        return self.net(torch.cat([q, qd, qdd], -1))

    def _none(self, what: str):
        raise NoDecompositionError(
            f"FeedForwardModel (the mlp baseline) maps (q, qd, qdd) to tau only: it has no {what}. "
            f"Use DeepLagrangianNetwork for the decomposition, energies and forward dynamics."
        )

    def terms(self, q, qd, qdd=None):
        self._none("decomposition into inertial, Coriolis, gravity and friction terms")

    def mass_matrix(self, q):
        self._none("mass matrix")

    def coriolis(self, q, qd):
        self._none("Coriolis term")

    def gravity(self, q):
        self._none("gravity term")

    def friction(self, q, qd):
        self._none("friction term")

    def forward_dynamics(self, q, qd, tau):
        self._none("forward model (it cannot be simulated)")

    def energy(self, q, qd):
        self._none("energies")

    def power(self, q, qd, tau):
        self._none("energies (no power)")
