"""Deep Lagrangian Networks: learn rigid-body dynamics with physics built into the network."""
from delan.dynamics import Dynamics, DynamicsTerms, solve_spd
from delan.errors import DataError, DelanError, RunError

__version__ = "0.1.0"
