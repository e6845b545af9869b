"""The numbers of `evaluate_model`, not only its keys: the true system scores perfectly, a model
with a known error scores what a hand computation from the definitions gives, and the valid
prediction time equals an independent rollout with `delan.integrators.rollout`."""

import numpy as np
import pytest
import torch

from delan.data.generate import generate_dataset
from delan.dynamics import Dynamics, DynamicsTerms
from delan.evaluation import VPT_SUBSTEPS, VPT_THRESHOLD, evaluate_model
from delan.integrators import rollout
from delan.systems import make_system

ZERO = 1e-10


@pytest.fixture(scope="module")
def fourier():
    """Two 1 s trajectories at 100 Hz: the errors (no rollouts, so any rate will do)."""
    return generate_dataset("two-link", n_trajectories=2, duration=1.0, rate=100)


@pytest.fixture(scope="module")
def letters():
    """Two letters, 1 s at 170 Hz: fine enough that the zero-order hold of the recorded torques
    keeps even the true system within the VPT threshold (its error peaks below 7e-3; at 100 Hz it
    crosses 1e-2 after ~0.45 s) and as coarse as that allows, since VPT costs 80 forward
    dynamics per sample."""
    return generate_dataset("two-link", kind="characters", n_trajectories=2, duration=1.0, rate=170)


class Offset(Dynamics):
    """The true two-link arm with known errors: Coriolis c + a + q B^T, gravity g + e (so also
    tau is off by a + q B^T + e)."""

    n_dof = 2

    def __init__(self, a, B, e):
        self.true = make_system("two-link")
        self.a, self.B, self.e = (torch.as_tensor(np.asarray(x, float)) for x in (a, B, e))

    def terms(self, q, qd, qdd=None):
        t = self.true.terms(q, qd, qdd)
        dc = self.a + q @ self.B.T
        tau = None if t.tau is None else t.tau + dc + self.e
        return t._replace(coriolis=t.coriolis + dc, gravity=t.gravity + self.e, tau=tau)


def test_true_system_has_zero_error(fourier):
    res = evaluate_model(make_system("two-link"), fourier, rollouts=False)
    m = res["metrics"]
    for key in (
        "torque_mse",
        "inertial_mse",
        "coriolis_mse",
        "gravity_mse",
        "friction_mse",
        "power_mse",
        "forward_mse",
        "torque_nmse",
        "inertial_nmse",
        "coriolis_nmse",
        "gravity_nmse",
    ):
        assert m[key] <= ZERO, (key, m[key])
        for name in fourier.names:
            assert res["per_trajectory"][name][key] <= ZERO, (name, key)
    # no friction simulated: its truth is all zeros, so there is no scale for an nmse
    assert "constant" in res["unavailable"]["friction_nmse"]
    assert "skipped" in res["unavailable"]["vpt"]


def test_true_system_predicts_its_whole_recording(letters):
    res = evaluate_model(make_system("two-link"), letters)
    assert res["vpt_per_trajectory"] == {"a": 1.0, "b": 1.0}
    assert res["metrics"]["vpt"] == 1.0
    assert res["metrics"]["torque_nmse"] <= ZERO and res["metrics"]["forward_mse"] <= ZERO


def test_known_error_by_hand(fourier):
    a, B, e = [0.3, -0.2], [[0.5, 0.0], [0.1, -0.4]], [0.05, 0.1]
    res = evaluate_model(Offset(a, B, e), fourier, rollouts=False)
    trs = list(fourier)
    cat = lambda f: np.concatenate([f(tr) for tr in trs])  # noqa: E731
    var_tau = cat(lambda tr: tr.tau).var(0)
    var_c = cat(lambda tr: tr.truth["tau_coriolis"]).var(0)
    var_g = cat(lambda tr: tr.truth["tau_gravity"]).var(0)

    def expected(trajs):
        q = np.concatenate([tr.q for tr in trajs])
        qd = np.concatenate([tr.qd for tr in trajs])
        H = np.concatenate([tr.truth["H"] for tr in trajs])
        dc = np.asarray(a) + q @ np.asarray(B).T  # (N, 2) Coriolis error
        dg = np.broadcast_to(np.asarray(e), dc.shape)  # gravity error
        dtau = dc + dg
        dqdd = np.linalg.solve(H, -dtau[..., None])[..., 0]  # forward dynamics error H^-1 (-dtau)
        return {
            "torque_mse": np.mean(np.sum(dtau**2, 1)),
            "coriolis_mse": np.mean(np.sum(dc**2, 1)),
            "gravity_mse": np.mean(np.sum(dg**2, 1)),
            "inertial_mse": 0.0,
            "forward_mse": np.mean(np.sum(dqdd**2, 1)),
            # model: qd^T (H qdd + c + g) with its c, g; data: qd^T tau (no friction)
            "power_mse": np.mean(np.sum(qd * dtau, 1) ** 2),
            "torque_nmse": np.mean(np.sum(dtau**2 / var_tau, 1)),
            "coriolis_nmse": np.mean(np.sum(dc**2 / var_c, 1)),
            "gravity_nmse": np.mean(np.sum(dg**2 / var_g, 1)),
        }

    want = expected(trs)
    assert want["torque_mse"] > 0.01 and want["forward_mse"] > 0.01  # the offsets matter
    for key, value in want.items():
        assert res["metrics"][key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
    # per trajectory: its own samples, the set's variances
    for tr in trs:
        for key, value in expected([tr]).items():
            assert res["per_trajectory"][tr.name][key] == pytest.approx(value, rel=1e-10, abs=1e-12), (tr.name, key)


def independent_vpt(model, trajectories):
    """VPT from the definition, one trajectory and one recorded interval at a time."""
    var = np.concatenate([tr.q for tr in trajectories]).var(0)
    out = {}
    for tr in trajectories:
        t = tr.t - tr.t[0]
        q, qd = torch.as_tensor(tr.q[0]), torch.as_tensor(tr.qd[0])
        out[tr.name] = float(t[-1])
        for k in range(len(t) - 1):
            tau = torch.as_tensor(tr.tau[k])
            ro = rollout(model, q, qd, lambda *_, tau=tau: tau, (t[k + 1] - t[k]) / VPT_SUBSTEPS, VPT_SUBSTEPS, "rk4")
            q, qd = ro.q[-1], ro.qd[-1]
            if np.sum((q.numpy() - tr.q[k + 1]) ** 2 / var) >= VPT_THRESHOLD:
                out[tr.name] = float(t[k + 1])
                break
    return out


def test_vpt_of_a_perturbed_system(letters):
    model = make_system("two-link", masses=(2.0, 1.15))  # the forearm 15 % too heavy
    res = evaluate_model(model, letters)
    want = independent_vpt(model, list(letters))
    for name, vpt in res["vpt_per_trajectory"].items():
        assert 0 < vpt < 1.0, (name, vpt)
        assert vpt == pytest.approx(want[name], abs=1e-12), name
    assert res["metrics"]["vpt"] == pytest.approx(np.mean(list(want.values())), abs=1e-12)


def test_vpt_follows_a_jittered_clock(fourier):
    """Each recorded interval gets its own 20 RK4 steps; trajectories on different grids are
    rolled out separately and still agree with the definition."""
    from delan.data import Trajectory

    a, b = list(fourier)
    rng = np.random.default_rng(0)
    t = a.t + np.r_[0.0, rng.uniform(-0.3, 0.3, len(a.t) - 1) * np.diff(a.t).mean()]
    assert np.all(np.diff(t) > 0)
    jittered = Trajectory("jittered", t, a.q, a.qd, a.qdd, a.tau, a.truth)
    trs = [jittered, b]
    model = make_system("two-link")
    res = evaluate_model(model, trs)
    want = independent_vpt(model, trs)
    assert res["vpt_per_trajectory"] == pytest.approx(want, abs=1e-12)
    assert 0 < want["jittered"] < t[-1] - t[0]


class FreeMass(Dynamics):
    """A unit mass on a frictionless rail: qdd = tau, nothing else."""

    n_dof = 1

    def terms(self, q, qd, qdd=None):
        z = torch.zeros_like(q)
        H = torch.ones(q.shape[0], 1, 1, dtype=q.dtype)
        T, V = 0.5 * (qd * qd).sum(-1), z.sum(-1)
        return DynamicsTerms(H, z, z, z, T, V, None if qdd is None else qdd, None if qdd is None else qdd)


def ramp(name="ramp", rate=10.0, duration=2.0, a=1.0, b=3.0):
    """tau = a + b t on the free mass, sampled exactly: q = a t^2/2 + b t^3/6."""
    from delan.data import Trajectory

    t = np.arange(int(rate * duration) + 1) / rate
    tau = (a + b * t)[:, None]
    return Trajectory(name, t, (a * t**2 / 2 + b * t**3 / 6)[:, None], (a * t + b * t**2 / 2)[:, None], tau, tau)


def test_vpt_linear_hold_follows_a_torque_ramp_exactly():
    """A cubic q(t) is integrated exactly by RK4 under the linearly held ramp, so the linear hold
    never leaves the recording; the zero-order hold lags by b dt / 2 per unit time and leaves it
    early. Both are checked against the definition computed by hand."""
    from delan.evaluation import valid_prediction_times

    tr = ramp()
    # exact up to rounding: not even a 1e-20 normalised error
    lin = valid_prediction_times(FreeMass(), [tr], hold="linear", threshold=1e-20)
    assert lin["ramp"] == (2.0, None)
    zoh = valid_prediction_times(FreeMass(), [tr], hold="zero")
    # the zero-order hold: qdd = a + b t_k on [t_k, t_k+1), so the error at t_k is
    # b/2 * sum_i dt^2 (k - i) + ... - computed here by exact piecewise integration
    dt, q, qd, var = 0.1, 0.0, 0.0, tr.q.var()
    want = 2.0
    for k in range(len(tr.t) - 1):
        acc = 1.0 + 3.0 * tr.t[k]
        q, qd = q + qd * dt + acc * dt**2 / 2, qd + acc * dt
        if (q - tr.q[k + 1, 0]) ** 2 / var >= VPT_THRESHOLD:
            want = float(tr.t[k + 1])
            break
    assert zoh["ramp"][0] == pytest.approx(want, abs=1e-9) and want < 2.0
    with pytest.raises(ValueError, match="hold"):
        valid_prediction_times(FreeMass(), [tr], hold="cubic")
