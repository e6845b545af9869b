"""Trajectory training (delan.rollout_loss): exact on the true system, gradients, window
boundaries, the trainer's options and resume."""

import json
import os

import numpy as np
import pytest
import torch

from delan.cli import main
from delan.integrators import rollout
from delan.rollout_loss import RolloutLoss, add_windows, rollout_windows, split_segments, window_arrays, window_tensors
from delan.systems import make_system

D = torch.float64


def _zoh_recording(system, n=21, dt=0.04, seed=0, fine=32):
    """q, qd at t_k = k dt of the true system under a piecewise-constant torque, integrated with
    `fine` RK4 steps per interval (the 'exact' trajectory)."""
    rng = np.random.default_rng(seed)
    tau = rng.normal(scale=2.0, size=(n, 2))
    q, qd = torch.tensor([0.3, -0.4], dtype=D), torch.tensor([0.5, 0.2], dtype=D)
    qs, qds = [q], [qd]
    for k in range(n - 1):
        tk = torch.as_tensor(tau[k], dtype=D)
        ro = rollout(system, q, qd, lambda t, a, b, tk=tk: tk, dt / fine, fine, "rk4")
        q, qd = ro.q[-1], ro.qd[-1]
        qs.append(q)
        qds.append(qd)
    return {"t": np.arange(n) * dt, "q": torch.stack(qs).numpy(), "qd": torch.stack(qds).numpy(), "tau": tau}


@pytest.fixture(scope="module")
def true_two_link():
    return make_system("two-link")


def test_loss_vanishes_on_exact_data_as_substeps_grow(true_two_link):
    seg = _zoh_recording(true_two_link)
    w = window_tensors([seg], 6, D, "cpu")
    batch = dict(w, q=torch.as_tensor(seg["q"]), qd=torch.as_tensor(seg["qd"]))
    losses = []
    for s in (1, 2, 4):
        value, n = RolloutLoss.from_data(seg["q"], seg["qd"], substeps=s)(true_two_link, batch)
        assert n == len(seg["t"]) - 6
        losses.append(float(value))
    # RK4: state error O(h^4), squared O(h^8): each halving of the step divides the loss by ~256
    assert losses[0] < 1e-5
    assert losses[1] < losses[0] / 50 and losses[2] < losses[1] / 50
    assert losses[2] < 1e-9


def test_batched_windows_equal_the_library_rk4(true_two_link):
    seg = _zoh_recording(true_two_link, n=12)
    K, s = 4, 3
    w = window_tensors([seg], K, D, "cpu")
    ok = torch.nonzero(w["win_ok"])[:, 0]
    q0, qd0 = torch.as_tensor(seg["q"])[ok], torch.as_tensor(seg["qd"])[ok]
    qh, qdh = rollout_windows(true_two_link, q0, qd0, w["win_tau"][ok], w["win_dt"][ok], substeps=s)
    for row, i in enumerate(ok.tolist()):  # one window at a time, interval by interval
        q, qd = q0[row], qd0[row]
        for k in range(K):
            tk = torch.as_tensor(seg["tau"][i + k], dtype=D)
            ro = rollout(true_two_link, q, qd, lambda t, a, b, tk=tk: tk, 0.04 / s, s, "rk4")
            q, qd = ro.q[-1], ro.qd[-1]
            assert torch.allclose(qh[row, k], q, atol=1e-12) and torch.allclose(qdh[row, k], qd, atol=1e-12)


def test_gradient_matches_finite_differences():
    from delan.models import DeepLagrangianNetwork

    torch.manual_seed(0)
    model = DeepLagrangianNetwork(2, width=8, depth=1, dtype=D)
    seg = _zoh_recording(make_system("two-link"), n=8)
    w = window_tensors([seg], 3, D, "cpu")
    batch = dict(w, q=torch.as_tensor(seg["q"]), qd=torch.as_tensor(seg["qd"]))
    loss = RolloutLoss.from_data(seg["q"], seg["qd"], substeps=2)
    params = list(model.parameters())
    grads = torch.autograd.grad(loss(model, batch)[0], params)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):  # directional derivatives along random directions of all parameters
        v = [torch.randn(p.shape, generator=gen, dtype=D) for p in params]
        eps, vals = 1e-6, []
        for sign in (1, -1):
            with torch.no_grad():
                for p, d in zip(params, v):
                    p.add_(sign * eps * d)
                vals.append(float(loss(model, batch)[0]))
                for p, d in zip(params, v):
                    p.sub_(sign * eps * d)
        fd = (vals[0] - vals[1]) / (2 * eps)
        analytic = float(sum((g * d).sum() for g, d in zip(grads, v)))
        assert abs(fd - analytic) <= 1e-6 * max(1.0, abs(fd)), (fd, analytic)


def test_windows_stay_inside_segments():
    segs = []
    for j, m in enumerate((5, 3, 10)):  # q encodes (segment, sample)
        i = np.arange(m, dtype=float)
        segs.append(
            {"t": 0.1 * i, "q": np.stack([100.0 * j + i, i], -1), "qd": np.zeros((m, 2)), "tau": np.stack([i, -i], -1)}
        )
    K = 3
    w = window_arrays(segs, K)
    assert w["win_q"].shape == (18, K, 2) and w["win_dt"].shape == (18, K)
    expect_ok = np.concatenate([np.arange(m) + K <= m - 1 for m in (5, 3, 10)])
    assert (w["win_ok"] == expect_ok).all()
    starts = np.concatenate([s["q"] for s in segs])
    for i in np.nonzero(w["win_ok"])[0]:
        seg_id, idx = divmod(starts[i, 0], 100.0)
        assert (w["win_q"][i, :, 0] == 100.0 * seg_id + idx + 1 + np.arange(K)).all()  # next K, same segment
        assert (w["win_tau"][i, :, 0] == idx + np.arange(K)).all()  # held from the start
        assert np.allclose(w["win_dt"][i], 0.1)
    with pytest.raises(ValueError, match="horizon"):
        window_arrays(segs, 0)


def test_split_segments_match_split_samples_and_skip_validation_blocks():
    from delan.data.schema import Dataset, Trajectory
    from delan.training import split_samples, to_tensors

    trs = []
    for j, name in enumerate("abc"):  # q names its trajectory and sample
        i = np.arange(21, dtype=float)
        q = np.stack([1000.0 * j + i, i], -1)
        trs.append(Trajectory(name, 0.05 * i, q, np.zeros_like(q), np.zeros_like(q), np.ones_like(q)))
    ds = Dataset(trs, 2, ["j1", "j2"])
    blocks = {"a": (5, 9), "b": (0, 4)}
    train_a, val_a = split_samples(ds, ["c"], blocks)
    train_s, val_s = split_segments(ds, ["c"], blocks)
    assert np.array_equal(np.concatenate([s["q"] for s in train_s]), train_a["q"])
    assert np.array_equal(np.concatenate([s["q"] for s in val_s]), val_a["q"])
    train, val = to_tensors(train_a, D, "cpu"), to_tensors(val_a, D, "cpu")
    add_windows(train, val, ds, ["c"], blocks, 2)
    # every window's targets follow its start in the same trajectory, never inside a validation block
    held = {("a", i) for i in range(5, 9)} | {("b", i) for i in range(4)} | {("c", i) for i in range(len(ds["c"]))}
    where = {tuple(np.round(tr.q[i], 12)): (tr.name, i) for tr in ds for i in range(len(tr))}
    for i in torch.nonzero(train["win_ok"])[:, 0].tolist():
        name, idx = where[tuple(np.round(train["q"][i].numpy(), 12))]
        for k in range(2):
            assert where[tuple(np.round(train["win_q"][i, k].numpy(), 12))] == (name, idx + k + 1)
            assert (name, idx + k + 1) not in held


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    from delan.data import save_dataset
    from delan.data.generate import generate_dataset

    path = str(tmp_path_factory.mktemp("data") / "chars.h5")
    save_dataset(generate_dataset("two-link", kind="characters", n_trajectories=4, duration=1.0, rate=25.0), path)
    return path


FAST = [
    "--width",
    "8",
    "--depth",
    "1",
    "--batch-size",
    "32",
    "--quiet",
    "--rollout-horizon",
    "3",
    "--rollout-windows",
    "8",
    "--rollout-start",
    "0.5",
    "--validation",
    "0.3",
]


def test_train_with_rollout_logs_it_and_resumes_to_the_same_weights(data_file, tmp_path):
    from delan.training import load_run

    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    assert main(["train", data_file, "-o", full, "--test", "a", "--epochs", "4"] + FAST) == 0
    rows = [json.loads(x) for x in open(os.path.join(full, "log.jsonl"))]
    assert ["train_rollout" in r for r in rows] == [False, False, True, True]  # from half of the run on
    assert all("val_rollout" in r for r in rows[2:]) and rows[-1]["best_epoch"] >= 3
    cfg = json.load(open(os.path.join(full, "config.json")))
    assert cfg["rollout_horizon"] == 3 and cfg["rollout_windows"] == 8 and cfg["rollout_weight"] == 1.0
    assert main(["train", data_file, "-o", cut, "--test", "a", "--epochs", "4", "--stop-after", "3"] + FAST) == 0
    assert main(["train", data_file, "-o", cut, "--resume", "--quiet"]) == 0
    a, b = load_run(full)[1].state_dict(), load_run(cut)[1].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rollout_options_are_checked(data_file, tmp_path, cli_fails):
    out = str(tmp_path / "bad")
    base = ["train", data_file, "-o", out, "--epochs", "1", "--quiet"]
    cli_fails(base + ["--rollout-horizon", "0"], "--rollout-horizon must be an integer >= 1")
    cli_fails(base + ["--rollout-horizon", "4", "--rollout-weight", "-1"], "--rollout-weight must be a number >= 0")
    cli_fails(base + ["--rollout-horizon", "4", "--rollout-weight", "nan"], "--rollout-weight")
    cli_fails(base + ["--rollout-horizon", "4", "--rollout-substeps", "0"], "--rollout-substeps")
    cli_fails(base + ["--rollout-horizon", "4", "--rollout-start", "1"], "--rollout-start")
    cli_fails(base + ["--rollout-horizon", "4", "--model", "mlp"], "mlp baseline has no forward dynamics")
    assert not os.path.exists(out) or not os.listdir(out)
    with pytest.raises(SystemExit) as exc:  # not an integer: argparse's own one-line error
        main(base + ["--rollout-horizon", "2.5"])
    assert exc.value.code == 2
