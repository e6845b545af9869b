"""The feed-forward baseline: a plain network from (q, qd, qdd) to tau, no physics.

It learns inverse dynamics only. Every other :class:`delan.Dynamics` method raises
:class:`NoDecompositionError`: the network has no mass matrix, Coriolis, gravity or energy terms,
and no forward model to simulate with.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

import ddn
from delan.errors import NoDecompositionError
from delan.models.base import LearnedModel, dtype_name, resolve_dtype, revolute_mask


class FeedForwardModel(LearnedModel):
    """Multilayer perceptron tau = f(q, qd, qdd), the baseline of the DeLaN paper.

    Args:
        n_dof: number of joints n.
        width, depth, activation: hidden layers.
        init, gain, activation_options: initialisation and options.
        dtype, device: of the parameters; inputs must match them.
    """

    inverse_only = True
    # the loss parts training uses unless told (read by delan.losses.resolve_weights)
    default_loss_weights = {"inverse": 1.0, "forward": 0.0, "power": 0.0}

    def __init__(
        self,
        n_dof: int,
        width: int = 64,
        depth: int = 2,
        activation: str = "softplus",
        init: str = "xavier_normal",
        gain: float = 1.0,
        activation_options: Optional[dict] = None,
        revolute: Optional[Sequence[bool]] = None,
        dtype: Union[None, str, torch.dtype] = None,
        device=None,
    ):
        super().__init__()
        n = int(n_dof)
        if n < 1:
            raise ValueError(f"n_dof must be >= 1, got {n_dof}")
        dtype = resolve_dtype(dtype)
        mask = revolute_mask(revolute, n)
        self.n_dof = n
        self._config = dict(
            n_dof=n,
            width=int(width),
            depth=int(depth),
            activation=activation,
            init=init,
            gain=float(gain),
            activation_options=None if activation_options is None else dict(activation_options),
            revolute=None if revolute is None else [bool(r) for r in revolute],
            dtype=dtype_name(dtype),
        )
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
        self.net = ddn.DifferentialNetwork(
            n_q + 2 * n,
            n,
            width=width,
            depth=depth,
            activation=activation,
            activation_options=activation_options,
            init=init,
            gain=gain,
            dtype=dtype,
            device=device,
        )

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
