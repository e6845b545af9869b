"""Real hardware logs: jittered clocks, measured velocities, torque spikes, the import summary.

The motivating case: a 2-DoF pendulum (our two-link arm) logged at ~500 Hz, 5000 samples per run,
some time stamps early by up to 1 ms, torque noise 0.02 N m with spikes, the elbow turning past 2 pi.
"""

import os
import re

import numpy as np
import pytest
import torch
from scipy.signal import savgol_filter

from delan.cli import main
from delan.data import load_dataset, load_log
from delan.data.derivatives import estimate_derivatives, hampel, local_polynomial_derivatives
from delan.errors import DataError
from delan.systems import make_system


def sines(t, seed=1):
    """Sums of sines (T, 2) and their exact first and second derivatives."""
    rng = np.random.default_rng(seed)
    A = np.array([[1.0, 0.4, 0.2], [0.8, 0.5, 0.3]])
    W = np.array([[1.3, 3.1, 5.7], [2.1, 4.3, 6.1]])  # rad/s
    P = rng.uniform(0, 2 * np.pi, (2, 3))
    ph = W * t[:, None, None] + P
    return ((A * np.sin(ph)).sum(-1), (A * W * np.cos(ph)).sum(-1), (-A * W**2 * np.sin(ph)).sum(-1))


def rel_rmse(estimate, truth):
    return float(np.sqrt(np.mean((estimate - truth) ** 2) / np.mean(truth**2)))


def test_jittered_clock_accuracy():
    """2 ms steps with +-0.5 ms random jitter, 5000 samples, 1e-5 rad noise, default filter
    (51 samples, order 3). Tolerances (relative RMSE = RMSE / RMS of the truth, all samples):
    qd < 5e-4, qdd < 1 %; pretending the clock is uniform must be >= 10x (qd) / >= 3x (qdd) worse."""
    rng = np.random.default_rng(0)
    t = np.arange(5000) * 2e-3 + rng.uniform(-0.5e-3, 0.5e-3, 5000)
    q, qd, qdd = sines(t)
    qn = q + rng.normal(scale=1e-5, size=q.shape)
    e_qd, e_qdd, info = estimate_derivatives(t, qn)
    assert info["method"] == "local-polynomial" and info["window"] == 51 and not info["clock"]["uniform"]
    clock = info["clock"]
    assert clock["jittered_steps"] > 4000 and 1e-3 < clock["step_min"] < clock["step_max"] < 3e-3
    dt = np.median(np.diff(t))
    u_qd = savgol_filter(qn, 51, 3, deriv=1, delta=dt, axis=0, mode="interp")
    u_qdd = savgol_filter(qn, 51, 3, deriv=2, delta=dt, axis=0, mode="interp")
    ours, naive = (rel_rmse(e_qd, qd), rel_rmse(e_qdd, qdd)), (rel_rmse(u_qd, qd), rel_rmse(u_qdd, qdd))
    print(
        f"\njittered clock, relative RMSE: local polynomial qd {ours[0]:.2e}, qdd {ours[1]:.2e}; "
        f"as if uniform (savgol) qd {naive[0]:.2e}, qdd {naive[1]:.2e}"
    )
    assert ours[0] < 5e-4 and ours[1] < 1e-2
    assert naive[0] > 10 * ours[0] and naive[1] > 3 * ours[1]


def test_uniform_clock_keeps_savgol_exactly():
    t = np.arange(2000) / 250.0
    q = sines(t)[0] + np.random.default_rng(2).normal(scale=1e-4, size=(2000, 2))
    qd, qdd, info = estimate_derivatives(t, q)
    assert info["method"] == "savitzky-golay" and info["clock"]["uniform"] and info["clock"]["jittered_steps"] == 0
    ref_qd = savgol_filter(q, 25, 3, deriv=1, delta=t[1] - t[0], axis=0, mode="interp")
    ref_qdd = savgol_filter(q, 25, 3, deriv=2, delta=t[1] - t[0], axis=0, mode="interp")
    np.testing.assert_allclose(qd, ref_qd, rtol=0, atol=1e-12)
    np.testing.assert_allclose(qdd, ref_qdd, rtol=0, atol=1e-12)
    # the general estimator on the same uniform clock is the same filter (to rounding)
    l_qd, l_qdd = local_polynomial_derivatives(t, q, 25, 3)
    np.testing.assert_allclose(l_qd, ref_qd, rtol=0, atol=1e-9 * np.abs(ref_qd).max())
    np.testing.assert_allclose(l_qdd, ref_qdd, rtol=0, atol=1e-9 * np.abs(ref_qdd).max())


def test_hampel_removes_spikes_and_leaves_clean_samples():
    rng = np.random.default_rng(4)
    t = np.arange(5000) * 2e-3
    clean = np.stack([2 * np.sin(2 * np.pi * t), 0.5 * np.cos(3 * t)], -1) + rng.normal(scale=0.02, size=(5000, 2))
    spiky = clean.copy()
    where = [rng.choice(np.arange(5, 4995), 15, replace=False) for _ in range(2)]
    for j, idx in enumerate(where):
        spiky[idx, j] += rng.choice([-1, 1], 15) * rng.uniform(0.5, 2.0, 15)
    out, mask = hampel(spiky)
    spikes = np.zeros_like(mask)
    for j, idx in enumerate(where):
        spikes[idx, j] = True
        assert np.abs(out[idx, j] - clean[idx, j]).max() < 0.1  # replaced by the local median
    assert mask[spikes].all()  # every spike
    # clean samples untouched, bit for bit; here one (a -3 sigma noise sample on the steep part of
    # the sine, 5 samples from a spike that moves the median up one rank) is replaced as well
    extra = np.argwhere(mask & ~spikes)
    assert len(extra) <= 1 and all(np.abs(where[j] - i).min() <= 5 for i, j in extra)
    np.testing.assert_array_equal(out[~mask], spiky[~mask])


def test_hampel_scale_on_pure_noise():
    """Why the scale is not the textbook window MAD: on white Gaussian noise 11-sample MADs are
    often small by chance, and ordinary samples cross 5 scaled MADs; ours replaces (almost) none."""
    from numpy.lib.stride_tricks import sliding_window_view

    x = np.random.default_rng(0).normal(size=(50000, 1))
    W = sliding_window_view(x[:, 0], 11)
    med = np.median(W, -1)
    textbook = np.mean(np.abs(x[5:-5, 0] - med) > 5 * 1.4826 * np.median(np.abs(W - med[:, None]), -1))
    ours = hampel(x)[1].mean()
    print(
        f"\nwhite noise, 50000 samples, window 11, 5 scaled MADs: textbook Hampel replaces {100 * textbook:.2f} %, "
        f"ours {100 * ours:.4f} %"
    )
    assert textbook > 0.002 and ours < 1e-4


def pendulum_log(path, qd_column=False, spikes=12, seed=7):
    """Write a CSV log of the two-link pendulum: ~500 Hz with 10 % of the stamps early by
    0.2-1 ms, 5000 samples, tau noise 0.02 N m plus spikes, the elbow turning past 2 pi."""
    rng = np.random.default_rng(seed)
    T = 5000
    t = np.arange(T) * 2e-3
    early = rng.random(T) < 0.1
    early[0] = False
    t = t - early * rng.uniform(0.2e-3, 1.0e-3, T)
    w = np.array([1.3, 3.1, 2.3])
    q = np.stack([0.8 * np.sin(w[0] * t) + 0.3 * np.sin(w[1] * t + 1), 1.2 * t + 0.4 * np.sin(w[2] * t)], -1)
    qd = np.stack(
        [0.8 * w[0] * np.cos(w[0] * t) + 0.3 * w[1] * np.cos(w[1] * t + 1), 1.2 + 0.4 * w[2] * np.cos(w[2] * t)], -1
    )
    qdd = np.stack(
        [
            -0.8 * w[0] ** 2 * np.sin(w[0] * t) - 0.3 * w[1] ** 2 * np.sin(w[1] * t + 1),
            -0.4 * w[2] ** 2 * np.sin(w[2] * t),
        ],
        -1,
    )
    arm = make_system("two-link")
    tau = arm.inverse_dynamics(*(torch.as_tensor(x) for x in (q, qd, qdd))).numpy()
    noisy = tau + rng.normal(scale=0.02, size=tau.shape)
    measured = noisy.copy()
    idx = [rng.choice(np.arange(10, T - 10), spikes, replace=False) for _ in range(2)]
    for j in range(2):
        measured[idx[j], j] += rng.choice([-1, 1], spikes) * rng.uniform(0.5, 3.0, spikes)
    cols = [t, q[:, 0], q[:, 1]] + ([qd[:, 0], qd[:, 1]] if qd_column else []) + [measured[:, 0], measured[:, 1]]
    header = (
        ["t", "q_shoulder", "q_elbow"]
        + (["qd_shoulder", "qd_elbow"] if qd_column else [])
        + ["tau_shoulder", "tau_elbow"]
    )
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in np.column_stack(cols):
            f.write(",".join(f"{x:.17g}" for x in r) + "\n")
    return dict(t=t, q=q, qd=qd, qdd=qdd, noisy=noisy, spikes=idx)


def test_robot_log_import_cli(tmp_path, capsys):
    src, out = tmp_path / "pendulum.csv", tmp_path / "pendulum.h5"
    truth = pendulum_log(src)
    assert truth["q"][:, 1].max() > 2 * np.pi
    assert main(["data", "import", str(src), "-o", str(out), "--despike", "--joint-types", "R,R"]) == 0
    text = capsys.readouterr().out
    assert "joint types: revolute, revolute" in text
    assert re.search(
        r"pendulum: 5000 samples; clock jittered: 500 Hz, median step 2 ms, steps 1(\.\d+)?–3 ms, "
        r"std 0\.\d+ ms, \d+ of 4999 steps > 1 % off the median\n",
        text,
    )
    assert "pendulum: qd, qdd estimated (local polynomial fits on the actual time stamps: window 51 samples" in text
    assert "pendulum: tau despiked (Hampel: window 11 samples, 5 scaled MADs): replaced 12, 12 of 5000 samples" in text
    ds = load_dataset(out)
    tr = ds["pendulum"]
    assert ds.joint_types == ["revolute", "revolute"] and ds.revolute_mask() == [True, True]
    assert tr.meta["despike"]["replaced"] == [12, 12] and tr.meta["sources"] == {"qd": "estimated", "qdd": "estimated"}
    assert tr.meta["derivatives"]["method"] == "local-polynomial"
    # spikes gone, every other torque sample exactly as logged
    for j in range(2):
        np.testing.assert_array_less(np.abs(tr.tau[truth["spikes"][j], j] - truth["noisy"][truth["spikes"][j], j]), 0.1)
        keep = np.setdiff1d(np.arange(5000), truth["spikes"][j])
        np.testing.assert_array_equal(tr.tau[keep, j], truth["noisy"][keep, j])
    assert rel_rmse(tr.qd, truth["qd"]) < 1e-3 and rel_rmse(tr.qdd, truth["qdd"]) < 1e-2
    assert main(["data", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert re.search(r"rate: 500 Hz \(jittered: steps 1(\.\d+)?–3 ms\);", info)
    assert "joint types: revolute, revolute" in info
    assert "tau despiked on import in 1 trajectories: replaced 12, 12" in info


def test_measured_velocity_kept(tmp_path, capsys):
    src, out = tmp_path / "withqd.csv", tmp_path / "withqd.h5"
    truth = pendulum_log(src, qd_column=True, spikes=0)
    assert main(["data", "import", str(src), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "withqd: qd measured; qdd estimated (local polynomial fits on the actual time stamps" in text
    tr = load_dataset(out)["withqd"]
    np.testing.assert_array_equal(tr.qd, truth["qd"])
    assert tr.meta["sources"] == {"qd": "measured", "qdd": "estimated"}
    assert tr.meta["derivatives"]["estimated"] == ["qdd"] and tr.meta["derivatives"]["measured"] == ["qd"]
    assert rel_rmse(tr.qdd, truth["qdd"]) < 1e-2
    # both given: nothing estimated
    np.savez(tmp_path / "both.npz", t=truth["t"], q=truth["q"], qd=truth["qd"], qdd=truth["qdd"], tau=truth["noisy"])
    assert main(["data", "import", str(tmp_path / "both.npz"), "-o", str(tmp_path / "both.h5")]) == 0
    assert "both: qd, qdd measured" in capsys.readouterr().out
    tr = load_dataset(tmp_path / "both.h5")["both"]
    assert tr.meta == {"sources": {"qd": "measured", "qdd": "measured"}}
    assert main(["data", "info", str(out)]) == 0
    assert "qdd estimated (local-polynomial) in 1 trajectories" in capsys.readouterr().out


def test_info_prints_each_rate_once(tmp_path, capsys):
    rng = np.random.default_rng(5)
    for name, t in [
        ("a", np.arange(3000) * 2e-3 + rng.uniform(-0.2e-3, 0.2e-3, 3000)),
        ("b", np.arange(2000) * 2e-3 + rng.uniform(-0.2e-3, 0.2e-3, 2000)),
        ("c", np.arange(500) / 250.0),
        ("d", np.arange(400) / 250.0),
    ]:
        q = sines(t)[0]
        np.savez(tmp_path / f"{name}.npz", t=t, q=q, tau=q)
    from delan.data import Dataset, save_dataset

    trs = [load_log(str(tmp_path / f"{n}.npz"))[n] for n in "abcd"]
    save_dataset(Dataset(trs), tmp_path / "mixed.h5")
    assert main(["data", "info", str(tmp_path / "mixed.h5")]) == 0
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if "rate:" in x)
    assert re.search(r"rate: 250 Hz, 500 Hz \(jittered: steps 1\.6\d*–2\.\d+ ms\);", line), line
    assert line.count("500") == 1


def test_time_not_increasing_names_index(tmp_path, cli_fails):
    src = tmp_path / "back.csv"
    rows = ["t,q0,tau0", "0,0,0", "0.002,0.1,0", "0.004,0.2,0", "0.003,0.3,0", "0.008,0.4,0"]
    src.write_text("\n".join(rows) + "\n")
    with pytest.raises(
        DataError,
        match=r"back.csv: trajectory 'back': field 't': time must be strictly increasing "
        r"\(t\[3\] = 0.003 <= t\[2\] = 0.004\)",
    ):
        load_log(str(src))
    cli_fails(
        ["data", "import", str(src), "-o", str(tmp_path / "back.h5")], "field 't': time must be strictly increasing"
    )
    assert sorted(os.listdir(tmp_path)) == ["back.csv"]


def test_despike_options_checked(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("t,q0,tau0\n" + "\n".join(f"{k * 0.01},{k * 0.01},0" for k in range(30)) + "\n")
    with pytest.raises(DataError, match=r"x.csv: despike window must be an odd number of samples >= 3, got 4"):
        load_log(str(src), despike=True, despike_window=4)
    ds = load_log(str(src), despike=True)
    assert ds["x"].meta["despike"]["replaced"] == [0]
