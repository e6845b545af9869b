"""Learned dynamics models, each a :class:`delan.Dynamics` (and a ``torch.nn.Module``).

* :class:`DeepLagrangianNetwork` — structured DeLaN, H = L L^T + eps I and V from networks;
* :class:`BlackBoxLagrangianNetwork` — one network for the Lagrangian L(q, qd);
* :class:`FeedForwardModel` — the mlp baseline (q, qd, qdd) -> tau, inverse dynamics only;
* :class:`DeepHamiltonianNetwork` — structured Hamiltonian, H = 1/2 p^T M^-1 p + V;
* :class:`BlackBoxHamiltonianNetwork` — one network for the Hamiltonian H(q, p).
"""

from delan.errors import IndefiniteMassMatrixError
from delan.models.black_box import BlackBoxLagrangianNetwork
from delan.models.feedforward import FeedForwardModel, NoDecompositionError
from delan.models.friction import JointFriction
from delan.models.hamiltonian import BlackBoxHamiltonianNetwork, DeepHamiltonianNetwork, MomentumSolveError
from delan.models.serialization import MODEL_CLASSES, load_model, save_model
from delan.models.structured import DeepLagrangianNetwork

__all__ = [
    "BlackBoxHamiltonianNetwork",
    "BlackBoxLagrangianNetwork",
    "DeepHamiltonianNetwork",
    "DeepLagrangianNetwork",
    "FeedForwardModel",
    "IndefiniteMassMatrixError",
    "JointFriction",
    "MODEL_CLASSES",
    "MomentumSolveError",
    "NoDecompositionError",
    "load_model",
    "save_model",
]
