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
