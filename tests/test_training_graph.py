"""CUDA-graph training steps (delan/training_graph.py) and their place in the trainer, on the CPU.

On a CPU nothing is captured: GraphedSteps runs every step eagerly through the same code the graph
records (gather by index, loss, backward, optimiser step, on-device sums). These tests hold that
code and the trainer's graph loop to the eager trainer bit for bit; tests/test_cuda.py holds the
captured graph to the eager steps on a GPU.
"""

import json
import os

import pytest
import torch

import delan
import delan.training as training
from delan.cli import main
from delan.dynamics import solve_spd, solve_spd_unchecked
from delan.errors import RunError, TrainingDiverged
from delan.training import TrainConfig, step_mode
from delan.training_graph import GraphedSteps

DATA = os.path.join(os.path.dirname(__file__), "..", "datasets", "two_link_characters.h5")


def _graph_mode(config, streaming, distributed):
    return {"mode": "cuda-graph", "why": "t"}


@pytest.fixture
def graph_loop(monkeypatch):
    """The trainer takes its CUDA-graph loop here on the CPU (GraphedSteps then captures nothing)."""
    monkeypatch.setattr(training, "step_mode", _graph_mode)


def _train(path, **kw):
    return delan.train(DATA, str(path), test=["a", "b"], progress=False, quiet=True, **kw)


def test_graph_loop_equals_the_eager_trainer_bit_for_bit(tmp_path, monkeypatch):
    # batch 200 leaves a smaller last minibatch in every epoch: it steps eagerly in the graph loop
    eager = _train(tmp_path / "eager", epochs=3, batch_size=200)
    monkeypatch.setattr(training, "step_mode", _graph_mode)
    graph = _train(tmp_path / "graph", epochs=3, batch_size=200)
    for (name, a), b in zip(eager.model.state_dict().items(), graph.model.state_dict().values()):
        assert torch.equal(a, b), name
    keys = [k for k in eager.history[0] if k.startswith(("train_", "val_"))]
    assert keys
    for a, b in zip(eager.history, graph.history):
        assert [a[k] for k in keys] == [b[k] for k in keys]
        assert a["step"] == b["step"]
    summary = json.load(open(tmp_path / "graph" / "summary.json"))
    assert summary["step_mode"] == {"mode": "cuda-graph", "why": "t", "captured": False}
    assert json.load(open(tmp_path / "eager" / "summary.json"))["step_mode"]["mode"] == "eager"


def test_graph_loop_resumes_to_the_same_weights(tmp_path, graph_loop):
    whole = _train(tmp_path / "whole", epochs=4, batch_size=256)
    delan.train(
        DATA,
        str(tmp_path / "paused"),
        test=["a", "b"],
        epochs=4,
        batch_size=256,
        progress=False,
        quiet=True,
        stop_after=2,
    )
    resumed = delan.train(DATA, str(tmp_path / "paused"), resume=True, progress=False, quiet=True)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_graph_loop_reports_a_loss_that_stops_being_finite_at_the_end_of_its_epoch(tmp_path, graph_loop):
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 1 .*not finite in this epoch"):
        _train(tmp_path / "run", epochs=2, batch_size=64, lr=1e12)
    summary = json.load(open(tmp_path / "run" / "summary.json"))
    assert summary["stop_reason"] == "diverged" and summary["diverged"]["epoch"] == 1
    assert os.path.exists(tmp_path / "run" / "model.pt")  # the weights the run started from


def test_step_mode_takes_the_graph_only_where_it_applies():
    cuda = dict(device="cuda")
    assert step_mode(TrainConfig(**cuda), False, False)["mode"] == "cuda-graph"
    assert step_mode(TrainConfig(**cuda, step="eager"), False, False) == {
        "mode": "eager",
        "why": "asked for (step eager)",
    }
    cases = [
        (dict(), False, False, "the device is cpu"),
        (dict(cuda, model="hamiltonian"), False, False, "hamiltonian model's losses"),
        (dict(cuda, rollout_horizon=4), False, False, "rollout loss"),
        (dict(cuda), True, False, "streamed"),
        (dict(cuda), False, True, "distributed"),
    ]
    for options, streaming, distributed, why in cases:
        auto = step_mode(TrainConfig(**options), streaming, distributed)
        assert auto["mode"] == "eager" and why in auto["why"], (options, auto)
        with pytest.raises(RunError, match=f"`step` cuda-graph does not apply here: .*{why}"):
            step_mode(TrainConfig(**options, step="cuda-graph"), streaming, distributed)


def test_step_option_is_checked(tmp_path, capsys):
    with pytest.raises(RunError, match="`step` must be one of auto, eager, cuda-graph, got 'fast'"):
        TrainConfig(data=DATA, step="fast").validate()
    code = main(["train", DATA, "-o", str(tmp_path / "run"), "--step", "cuda-graph", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code != 0 and "does not apply here: the device is cpu" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "run")
    with pytest.raises(SystemExit):
        main(["train", DATA, "-o", str(tmp_path / "run"), "--step", "fast"])


def test_graphed_steps_sum_the_loss_parts_per_sample_and_zero_them(tmp_path):
    torch.manual_seed(0)
    n, N = 2, 50
    train = {k: torch.randn(N, n, dtype=torch.float64) for k in ("q", "qd", "qdd", "tau")}
    model = delan.DeepLagrangianNetwork(n, width=8, dtype=torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=0.0)  # lr 0: the loss stays the model's at the start
    loss_fn = training.make_loss(TrainConfig(), train, model)
    steps = GraphedSteps(model, opt, loss_fn, train, batch_size=20)
    perm = torch.randperm(N)
    for i in range(0, N, 20):
        steps.step(perm[i : i + 20])
    sums = steps.take_sums()
    total, parts = loss_fn(model, train)
    assert sums["loss"] == pytest.approx(float(total.detach()) * N, rel=1e-12)
    assert set(sums) == {"loss", *parts}
    for k, v in parts.items():
        assert sums[k] == pytest.approx(float(v) * N, rel=1e-12), k
    assert all(v == 0.0 for v in steps.take_sums().values())
    assert not steps.captured
    with pytest.raises(ValueError, match="warmup must be >= 1"):
        GraphedSteps(model, opt, loss_fn, train, batch_size=20, warmup=0)


def test_unchecked_solve_equals_the_checked_one_and_gives_nan_where_it_would_raise():
    torch.manual_seed(0)
    A = torch.randn(5, 3, 3, dtype=torch.float64)
    H = A @ A.transpose(-1, -2) + 0.1 * torch.eye(3, dtype=torch.float64)
    rhs = torch.randn(5, 3, dtype=torch.float64)
    assert torch.equal(solve_spd_unchecked(H, rhs), solve_spd(H, rhs))
    H[2] = -torch.eye(3, dtype=torch.float64)  # not positive definite
    with pytest.raises(RuntimeError):
        solve_spd(H, rhs)
    x = solve_spd_unchecked(H, rhs)
    assert torch.isnan(x[2]).all() and torch.isfinite(x[[0, 1, 3, 4]]).all()


@pytest.mark.parametrize("loop", ["eager", "cuda-graph"])
def test_an_error_in_a_step_stops_the_run_with_one_line_naming_where(tmp_path, monkeypatch, loss_hook, loop):
    if loop == "cuda-graph":
        monkeypatch.setattr(training, "step_mode", _graph_mode)
    calls = [0]

    def hook():
        calls[0] += 1
        if calls[0] == 3 and torch.is_grad_enabled():
            raise ValueError("the batch went wrong\nsecond line")

    loss_hook(hook)
    with pytest.raises(RunError) as info:
        _train(tmp_path / "run", epochs=2, batch_size=256)
    assert str(info.value) == "training stopped at epoch 1 (step 2): the batch went wrong"
