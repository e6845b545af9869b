"""Deep Lagrangian Networks: learn rigid-body dynamics with physics built into the network.

The public names are those in ``__all__``: the models, the Dynamics interface, the loss, the
train / evaluate / simulate calls and the errors. Everything else lives in its module
(``delan.losses``, ``delan.integrators``, ``delan.systems``, ...; see the README's Layout).
"""

from delan.api import evaluate, simulate, train
from delan.compiled import compile_dynamics
from delan.dynamics import Dynamics, DynamicsTerms
from delan.errors import DataError, DelanError, OptionError, RunError
from delan.losses import LossWeights, Normaliser, delan_loss
from delan.models import (
    BlackBoxHamiltonianNetwork,
    BlackBoxLagrangianNetwork,
    DeepHamiltonianNetwork,
    DeepLagrangianNetwork,
    FeedForwardModel,
    load_model,
    save_model,
)
from delan.training import TrainConfig, TrainResult, load_run

__version__ = "0.1.0"

__all__ = [
    "BlackBoxHamiltonianNetwork",
    "BlackBoxLagrangianNetwork",
    "DataError",
    "DeepHamiltonianNetwork",
    "DeepLagrangianNetwork",
    "DelanError",
    "Dynamics",
    "DynamicsTerms",
    "FeedForwardModel",
    "LossWeights",
    "Normaliser",
    "OptionError",
    "RunError",
    "TrainConfig",
    "TrainResult",
    "compile_dynamics",
    "delan_loss",
    "evaluate",
    "load_model",
    "load_run",
    "save_model",
    "simulate",
    "train",
]
