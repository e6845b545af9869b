"""save_model / load_model: one atomic file with weights, class, config and format version."""

import os

import pytest
import torch

import delan
from delan.errors import RunError
from delan.models import (
    BlackBoxLagrangianNetwork,
    DeepLagrangianNetwork,
    FeedForwardModel,
    load_model,
    save_model,
    serialization,
)

F64 = torch.float64

BUILDERS = [
    lambda: DeepLagrangianNetwork(
        3, width=8, revolute=[True, False, True], friction=True, epsilon=1e-4, diagonal_shift=0.01, dtype=F64
    ),
    lambda: DeepLagrangianNetwork(2, width=8, depth=1, shared_trunk=False, activation="tanh"),
    lambda: BlackBoxLagrangianNetwork(2, width=8, revolute=[True, True], friction=True, dtype="float64"),
    lambda: FeedForwardModel(2, width=8, depth=3, activation="elu", activation_options={"alpha": 0.5}),
]


@pytest.mark.parametrize("build", BUILDERS)
def test_round_trip(tmp_path, build):
    torch.manual_seed(0)
    model = build()
    path = tmp_path / "sub" / "model.pt"
    delan.save_model(model, str(path))
    assert os.listdir(path.parent) == ["model.pt"]  # no temporary file left behind
    back = delan.load_model(str(path))
    assert type(back) is type(model) and back.config == model.config and not back.training
    dtype = next(model.parameters()).dtype
    q, qd, qdd = (torch.randn(4, model.n_dof, dtype=dtype) for _ in range(3))
    assert torch.equal(back.inverse_dynamics(q, qd, qdd), model.inverse_dynamics(q, qd, qdd))
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k


def test_overwrite_is_atomic(tmp_path):
    path = str(tmp_path / "m.pt")
    save_model(DeepLagrangianNetwork(2, width=8), path)
    save_model(DeepLagrangianNetwork(3, width=8), path)
    assert load_model(path).n_dof == 3
    assert os.listdir(tmp_path) == ["m.pt"]


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(RunError, match="does not exist"):
        load_model(str(tmp_path / "missing.pt"))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file at all")
    with pytest.raises(RunError, match="corrupt.pt"):
        load_model(str(corrupt))
    good = tmp_path / "good.pt"
    save_model(DeepLagrangianNetwork(2, width=8), str(good))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(RunError, match="truncated.pt"):
        load_model(str(truncated))

    def rewrite(name, **changes):
        payload = torch.load(str(good), weights_only=True)
        payload.update(changes)
        torch.save(payload, str(tmp_path / name))
        return str(tmp_path / name)

    with pytest.raises(RunError, match="version 99"):
        load_model(rewrite("v99.pt", version=99))
    with pytest.raises(RunError, match="unknown model class 'Mystery'"):
        load_model(rewrite("cls.pt", **{"class": "Mystery"}))
    with pytest.raises(RunError, match="not a DeLaN model file"):
        load_model(rewrite("fmt.pt", format="something-else"))
    with pytest.raises(RunError, match="does not match"):
        load_model(rewrite("cfg.pt", config=dict(DeepLagrangianNetwork(2, width=8).config, width=16)))
    torch.save([1, 2, 3], str(tmp_path / "list.pt"))
    with pytest.raises(RunError, match="not a DeLaN model file"):
        load_model(str(tmp_path / "list.pt"))
    with pytest.raises(ValueError, match="cannot save"):
        save_model(torch.nn.Linear(2, 2), str(tmp_path / "x.pt"))

    # a failed write leaves neither the target nor a temporary file
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(serialization.torch, "save", boom)
    with pytest.raises(OSError):
        save_model(DeepLagrangianNetwork(2, width=8), str(tmp_path / "new" / "m.pt"))
    assert os.listdir(tmp_path / "new") == []
