"""The constructor options every learned model shares: one set of network options with one set of
defaults, recorded in the config, and unknown options refused as Python refuses them."""

import pytest
import torch

import delan
from delan.errors import IndefiniteMassMatrixError
from delan.models.base import NETWORK_DEFAULTS, checked_cholesky

MODELS = [
    delan.DeepLagrangianNetwork,
    delan.BlackBoxLagrangianNetwork,
    delan.DeepHamiltonianNetwork,
    delan.BlackBoxHamiltonianNetwork,
    delan.FeedForwardModel,
]


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_network_options_defaults_and_config(cls):
    model = cls(2, width=8, gain=0.5, revolute=[True, False], dtype="float64")
    cfg = model.config
    assert cfg["n_dof"] == 2 and cfg["dtype"] == "float64" and cfg["revolute"] == [True, False]
    for key, default in NETWORK_DEFAULTS.items():
        assert cfg[key] == {"width": 8, "gain": 0.5}.get(key, default), key
    # the config rebuilds the same architecture: the same parameter shapes
    again = cls(**cfg)
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]
    # ... and the option reached the network: weight matrices of width 8, none of the default 64
    widths = {n for p in model.parameters() if p.dim() == 2 for n in p.shape}
    assert 8 in widths and NETWORK_DEFAULTS["width"] not in widths


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_unknown_option_is_a_type_error(cls):
    with pytest.raises(TypeError, match=rf"{cls.__name__}\(\) got an unexpected keyword argument 'widht'"):
        cls(2, widht=8)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_activation_must_be_a_name(cls):
    with pytest.raises(ValueError, match="activation must be a registry name"):
        cls(2, activation=torch.nn.Tanh())


def test_checked_cholesky_counts_the_bad_states():
    M = torch.eye(2, dtype=torch.float64).repeat(3, 1, 1)
    M[1] = -M[1]
    with pytest.raises(IndefiniteMassMatrixError, match="1 of 3 states"):
        checked_cholesky(M, "M is not positive definite at {bad} of {total} states")
    M[1] = -M[1]
    assert torch.equal(checked_cholesky(M, "unused"), M)
