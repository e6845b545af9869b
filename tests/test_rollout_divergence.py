"""Rollouts that diverge stop at the last finite state and say when, instead of raising: in
`integrators.rollout(..., stop_on_divergence=True)`, in `evaluate_model`'s vpt and in
`delan simulate`."""

import json
import os

import numpy as np
import pytest
import torch

from delan.cli import main
from delan.data.generate import generate_dataset
from delan.dynamics import Dynamics, solve_spd
from delan.evaluation import evaluate_model, valid_prediction_times
from delan.integrators import rollout
from delan.systems import make_system


class GoesBad(Dynamics):
    """The true two-link arm, except that where q[0] < ``limit`` its forward dynamics fails:
    ``how`` = "indefinite" flips the mass matrix (the Cholesky raises, as for a black-box model
    whose d2L/dqd2 loses definiteness), "nan" returns NaN accelerations. ``terms`` stay exact, so
    the model scores perfectly on recorded samples and only its rollouts go wrong."""

    n_dof = 2

    def __init__(self, limit: float, how: str = "indefinite"):
        self.true, self.limit, self.how = make_system("two-link"), limit, how

    def terms(self, q, qd, qdd=None):
        return self.true.terms(q, qd, qdd)

    def forward_dynamics(self, q, qd, tau):
        t = self.true.terms(q, qd)
        bad = q[:, 0] < self.limit
        rhs = tau - t.coriolis - t.gravity - t.friction
        if self.how == "nan":
            qdd = solve_spd(t.H, rhs)
            return torch.where(bad.unsqueeze(-1), torch.full_like(qdd, float("nan")), qdd)
        return solve_spd(torch.where(bad[:, None, None], -t.H, t.H), rhs)


Q0 = torch.tensor([1.0, 0.0], dtype=torch.float64)  # swings down through q0 = 0 (zero torque)
QD0 = torch.zeros(2, dtype=torch.float64)
DT, STEPS = 0.01, 100


@pytest.mark.parametrize("how", ["indefinite", "nan"])
def test_rollout_stops_at_the_last_finite_state(how):
    model = GoesBad(limit=0.2, how=how)
    if how == "indefinite":  # plain behaviour is unchanged: the Cholesky error propagates
        with pytest.raises(torch.linalg.LinAlgError):
            rollout(model, Q0, QD0, None, DT, STEPS)
    ro = rollout(model, Q0, QD0, None, DT, STEPS, stop_on_divergence=True)
    K = len(ro.t) - 1
    assert 0 < K < STEPS and ro.diverged_at == pytest.approx(ro.t[-1].item() + DT)
    assert torch.isfinite(ro.q).all() and torch.isfinite(ro.qd).all() and ro.q[-1, 0] >= 0.2
    # what it kept is exactly the rollout of the good part
    ok = rollout(model.true, Q0, QD0, None, DT, K)
    assert torch.equal(ro.q, ok.q) and torch.equal(ro.qd, ok.qd)
    assert rollout(model.true, Q0, QD0, None, DT, STEPS, stop_on_divergence=True).diverged_at is None


def test_batch_rows_diverge_on_their_own():
    model = GoesBad(limit=-0.5)
    q0 = torch.tensor([[1.0, 0.0], [0.3, 0.0]], dtype=torch.float64)  # only the first swings past -0.5
    ro = rollout(model, q0, torch.zeros_like(q0), None, DT, STEPS, stop_on_divergence=True)
    assert ro.diverged_at[1] is None and 0 < ro.diverged_at[0] < STEPS * DT
    assert len(ro.t) == STEPS + 1
    alone = rollout(model, q0[1], torch.zeros(2, dtype=torch.float64), None, DT, STEPS)
    assert torch.allclose(ro.q[:, 1], alone.q, rtol=0, atol=1e-12)
    first = rollout(model, q0[0], torch.zeros(2, dtype=torch.float64), None, DT, STEPS, stop_on_divergence=True)
    K = len(first.t)
    assert first.diverged_at == pytest.approx(ro.diverged_at[0])
    assert torch.allclose(ro.q[:K, 0], first.q, rtol=0, atol=1e-12) and torch.isnan(ro.q[K:, 0]).all()


def test_dopri5_stops_too():
    ro = rollout(GoesBad(limit=0.2), Q0, QD0, None, DT, STEPS, method="dopri5", stop_on_divergence=True)
    assert ro.diverged_at is not None and len(ro.t) < STEPS + 1 and torch.isfinite(ro.q).all()


def test_evaluate_gives_the_time_reached_before_divergence():
    ds = generate_dataset("two-link", n_trajectories=2, duration=1.0, rate=100)
    # fails where only trajectory a goes: q0 below the lowest q0 of b, above a's minimum
    a, b = sorted(ds, key=lambda tr: tr.q[:, 0].min())
    limit = 0.5 * (a.q[:, 0].min() + b.q[:, 0].min())
    assert a.q[:, 0].min() < limit < b.q[:, 0].min()
    res = evaluate_model(GoesBad(limit), ds)
    per = res["per_trajectory"]
    assert res["metrics"]["forward_mse"] <= 1e-10 and np.isfinite(res["metrics"]["vpt"])
    assert "vpt_diverged_at" in per[a.name] and "vpt_diverged_at" not in per[b.name]
    vpt, at = per[a.name]["vpt"], per[a.name]["vpt_diverged_at"]
    assert 0 < vpt <= at < vpt + 0.01 + 1e-12  # diverged within the interval after the last time reached
    # it did diverge near where the recording first goes below the limit (not from another cause)
    t_enter = a.t[np.argmax(a.q[:, 0] < limit)] - a.t[0]
    assert abs(at - t_enter) < 0.05
    # the other trajectory of the batch is unaffected: the same alone (with the set's variance)
    q_var = np.concatenate([a.q, b.q]).var(0)
    assert res["vpt_per_trajectory"][b.name] == valid_prediction_times(GoesBad(limit), [b], q_var)[b.name][0]


@pytest.fixture(scope="module")
def exploding_run(tmp_path_factory, character_data, train_tiny):
    """A structured run made to blow up: the diagonal of L pushed to its floor (H ~ 1e-6 I) and
    the potential 100 times steeper, so the first steps of a rollout fling the state to 1e100+
    and then to inf (the trunk's outputs are L's diagonal first and V last)."""
    from delan.models import load_model, save_model

    data = character_data(4)
    run = train_tiny(data, tmp_path_factory.mktemp("blowup") / "run", "structured", "a", 1, dtype="float64")
    path = os.path.join(run, "model.pt")
    model = load_model(path)
    with torch.no_grad():
        out = model.trunk.output
        out.weight[:2] = 0.0
        out.bias[:2] = -50.0
        out.weight[-1] *= 100.0
    save_model(model, path)
    return data, run


def test_simulate_cli_notes_the_divergence(exploding_run, tmp_path, capsys):
    data, run = exploding_run
    js, plots = str(tmp_path / "r.json"), str(tmp_path / "plots")
    assert main(["simulate", run, "--data", data, "--trajectory", "a", "--json", js, "--plots", plots]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    notes = [line for line in out.splitlines() if "diverged" in line]
    assert len(notes) == 1 and notes[0].startswith("note:"), out
    r = json.load(open(js))
    assert r["diverged"] is True and 0 < r["diverged_at"] <= 1.0
    assert r["steps_done"] < r["steps"] and r["diverged_at"] == pytest.approx((r["steps_done"] + 1) * r["dt"])
    assert np.isfinite(r["last_q"]).all() and np.isfinite(r["last_qd"]).all() and len(r["last_q"]) == 2
    assert os.path.exists(os.path.join(plots, "rollout.png"))


def test_evaluate_cli_survives_the_divergence(exploding_run, tmp_path, capsys):
    data, run = exploding_run
    js = str(tmp_path / "m.json")
    assert main(["evaluate", run, data, "--json", js]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "vpt" in out
    m = json.load(open(js))
    assert np.isfinite(m["vpt"]) and set(m["vpt_per_trajectory"]) == {"a"}
    # and the rollouts can be skipped
    assert main(["evaluate", run, data, "--json", js, "--no-rollouts"]) == 0
    m = json.load(open(js))
    assert "vpt" not in m and "skipped" in m["unavailable"]["vpt"] and "torque_nmse" in m
    assert "n/a" in capsys.readouterr().out
