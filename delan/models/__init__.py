"""Learned dynamics models, each a :class:`delan.Dynamics` (and a ``torch.nn.Module``).

* :class:`DeepLagrangianNetwork` — structured DeLaN, H = L L^T + eps I and V from networks;
* :class:`BlackBoxLagrangianNetwork` — one network for the Lagrangian L(q, qd);
* :class:`FeedForwardModel` — the mlp baseline (q, qd, qdd) -> tau, inverse dynamics only.
"""
from delan.models.black_box import BlackBoxLagrangianNetwork, IndefiniteMassMatrixError
from delan.models.feedforward import FeedForwardModel, NoDecompositionError
from delan.models.friction import JointFriction
from delan.models.serialization import MODEL_CLASSES, load_model, save_model
from delan.models.structured import DeepLagrangianNetwork

__all__ = [
    "BlackBoxLagrangianNetwork",
    "DeepLagrangianNetwork",
    "FeedForwardModel",
    "IndefiniteMassMatrixError",
    "JointFriction",
    "MODEL_CLASSES",
    "NoDecompositionError",
    "load_model",
    "save_model",
]
