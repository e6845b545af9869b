"""CUDA: models and training on the GPU agree with the CPU (skipped without a CUDA device)."""

import os

import pytest
import torch

import delan
from delan.losses import Normaliser, delan_loss
from delan.models import BlackBoxLagrangianNetwork, DeepLagrangianNetwork, FeedForwardModel

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CASES = [
    (DeepLagrangianNetwork, dict(revolute=[True, False, True], friction=True)),
    (DeepLagrangianNetwork, dict(shared_trunk=False)),
    (BlackBoxLagrangianNetwork, dict(revolute=[True, True, False], friction=True)),
    (FeedForwardModel, {}),
]


@pytest.mark.parametrize("cls,options", CASES)
def test_model_on_cuda_matches_cpu(cls, options, tmp_path):
    torch.manual_seed(0)
    cpu = cls(3, width=16, dtype=torch.float64, **options)
    gpu = cls(3, width=16, dtype=torch.float64, device="cuda", **options)
    gpu.load_state_dict(cpu.state_dict())
    q, qd, qdd, tau = (torch.randn(64, 3, dtype=torch.float64) for _ in range(4))
    expected = cpu.inverse_dynamics(q, qd, qdd)
    cuda_args = [x.cuda() for x in (q, qd, qdd)]
    got = gpu.inverse_dynamics(*cuda_args)
    assert got.is_cuda
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-10, atol=1e-12)
    with torch.inference_mode():
        torch.testing.assert_close(gpu.inverse_dynamics(*cuda_args).cpu(), expected, rtol=1e-10, atol=1e-12)
    batch = tuple(x.cuda() for x in (q, qd, qdd, tau))
    loss, _ = delan_loss(gpu, batch, Normaliser.from_data(*batch))
    loss.backward()
    cpu_batch = (q, qd, qdd, tau)
    cpu_loss, _ = delan_loss(cpu, cpu_batch, Normaliser.from_data(*cpu_batch))
    cpu_loss.backward()
    torch.testing.assert_close(loss.cpu(), cpu_loss, rtol=1e-10, atol=1e-12)
    # the same parameters get gradients on both devices (a constant such as the black-box
    # Lagrangian's output bias gets none on either), equal to the CPU's, on the GPU
    with_grad = 0
    for (name, pc), pg in zip(cpu.named_parameters(), gpu.parameters()):
        assert (pc.grad is None) == (pg.grad is None), name
        if pc.grad is not None:
            with_grad += 1
            assert pg.grad.is_cuda, name
            torch.testing.assert_close(pg.grad.cpu(), pc.grad, rtol=1e-8, atol=1e-10, msg=name)
    assert with_grad > 0
    path = tmp_path / "m.pt"
    delan.save_model(gpu, str(path))
    back = delan.load_model(str(path), device="cuda")
    torch.testing.assert_close(back.inverse_dynamics(*cuda_args), gpu.inverse_dynamics(*cuda_args))


def test_structured_forward_dynamics_on_cuda_round_trips():
    torch.manual_seed(1)
    model = DeepLagrangianNetwork(4, width=16, dtype=torch.float64, device="cuda")
    q, qd, qdd = (torch.randn(32, 4, dtype=torch.float64, device="cuda") for _ in range(3))
    tau = model.inverse_dynamics(q, qd, qdd)
    torch.testing.assert_close(model.forward_dynamics(q, qd, tau), qdd, rtol=1e-9, atol=1e-9)


def test_train_evaluate_on_cuda(tmp_path):
    data = os.path.join(os.path.dirname(__file__), "..", "datasets", "two_link_characters.h5")
    run = delan.train(data, str(tmp_path / "run"), test=["a", "b"], epochs=3, device="cuda", progress=False)
    assert next(run.model.parameters()).is_cuda
    metrics = delan.evaluate(run, data)
    assert metrics["n_samples"] > 0 and all(
        v == v for k, v in metrics.items() if k.endswith("_mse") and isinstance(v, float)
    )


# -- issue 12: steps replayed from a CUDA graph, compiled inference ------------------------------
def _graph_parts(n, batch, dtype, seed=0):
    from delan.dynamics import solve_spd_unchecked
    from delan.training import TrainConfig, build_model, make_loss, make_optimizer

    config = TrainConfig(device="cuda", dtype="float64" if dtype == torch.float64 else "float32")
    g = torch.Generator().manual_seed(seed)
    rows = 3 * batch + batch // 2  # three full minibatches and a smaller last one per epoch
    train = {k: torch.randn(rows, n, generator=g, dtype=dtype) for k in ("q", "qd", "qdd", "tau")}
    torch.manual_seed(seed)
    model = build_model(config, n, None, None, False)
    loss = make_loss(config, train, model, solve=solve_spd_unchecked)
    return model, make_optimizer(config, model), loss, {k: v.cuda() for k, v in train.items()}


@pytest.mark.parametrize("n,batch,dtype,rtol", [(7, 8192, torch.float32, 1e-6), (3, 1000, torch.float64, 1e-13)])
def test_graphed_training_steps_equal_eager_steps(n, batch, dtype, rtol):
    """The must-show's step (structured DeLaN, n_dof 7, B 8192, float32) replayed from a CUDA graph
    computes what the eager step computes: the same weights and loss sums after the same steps."""
    from delan.training_graph import GraphedSteps

    runs = []
    for capture in (False, True):
        model, opt, loss, train = _graph_parts(n, batch, dtype)
        steps = GraphedSteps(model, opt, loss, train, batch, capture=capture)
        gen = torch.Generator(device="cuda").manual_seed(1)
        for epoch in range(3):  # 3 eager warm-up steps, then the capture and 6 replays
            steps.set_lr(1e-2 / (epoch + 1))  # the graph reads the learning rate each replay
            perm = torch.randperm(train["q"].shape[0], device="cuda", generator=gen)
            for i in range(0, train["q"].shape[0], batch):
                steps.step(perm[i : i + batch])
        assert steps.captured == capture and steps.note is None
        runs.append((model, steps.take_sums()))
    (eager, eager_sums), (graph, graph_sums) = runs
    for (name, a), b in zip(eager.state_dict().items(), graph.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=rtol, atol=rtol * float(a.abs().max()), msg=name)
    assert graph_sums.keys() == eager_sums.keys()
    for k in eager_sums:
        assert graph_sums[k] == pytest.approx(eager_sums[k], rel=max(rtol, 1e-12)), k


def test_train_with_cuda_graph_equals_eager_training(tmp_path):
    data = os.path.join(os.path.dirname(__file__), "..", "datasets", "two_link_characters.h5")
    runs = {}
    for step in ("eager", "cuda-graph"):
        runs[step] = delan.train(
            data,
            str(tmp_path / step),
            test=["a", "b"],
            epochs=3,
            batch_size=200,
            device="cuda",
            step=step,
            progress=False,
        )
    summary = runs["cuda-graph"].summary["step_mode"]
    assert summary["mode"] == "cuda-graph" and summary["captured"] is True, summary
    for (name, a), b in zip(runs["eager"].model.state_dict().items(), runs["cuda-graph"].model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    auto = delan.train(data, str(tmp_path / "auto"), test=["a", "b"], epochs=1, device="cuda", progress=False)
    assert auto.summary["step_mode"]["mode"] == "cuda-graph"


@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_compiled_inverse_dynamics_equals_eager_on_cuda(dtype, rtol):
    torch.manual_seed(0)
    model = DeepLagrangianNetwork(7, dtype=dtype, device="cuda").requires_grad_(False)
    fast = delan.compile_dynamics(model)
    q, qd, qdd = (torch.randn(262144, 7, dtype=dtype, device="cuda") for _ in range(3))
    with torch.inference_mode():
        ref = model.inverse_dynamics(q, qd, qdd)
        got = fast(q, qd, qdd)
    assert float((got - ref).norm() / ref.norm()) <= rtol
