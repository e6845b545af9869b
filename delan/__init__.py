"""Deep Lagrangian Networks: learn rigid-body dynamics with physics built into the network."""
from delan.dynamics import Dynamics, DynamicsTerms, solve_spd
from delan.errors import DataError, DelanError, RunError
from delan import losses
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

__version__ = "0.1.0"
from delan.api import evaluate, simulate, train
from delan.training import TrainConfig, TrainResult, load_run
