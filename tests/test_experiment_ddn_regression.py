"""experiments/ddn_regression.py: the quick mode runs end to end, and type 1 training (through the
closed-form Jacobian) teaches the network the derivative."""

import importlib.util
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "ddn_regression.py"


@pytest.fixture(scope="module")
def experiment():
    spec = importlib.util.spec_from_file_location("ddn_regression_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_results(experiment, tmp_path, capsys):
    torch_threads = torch.get_num_threads()
    try:
        assert experiment.main(["--quick", "--out", str(tmp_path), "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(torch_threads)
    printed = capsys.readouterr().out
    assert "ddn_regression.json" in printed and "f seed" in printed

    results = json.loads((tmp_path / "ddn_regression.json").read_text())
    assert set(results) == {"1d", "2d"}
    for dim in ("1d", "2d"):
        assert set(results[dim]) == {"type1", "type2"}
        for loss in ("type1", "type2"):
            assert set(results[dim][loss]) == {"relu", "softplus", "tanh", "cos"}
            for act, errs in results[dim][loss].items():
                assert set(errs) == {"f", "J", "H"}
                assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in errs.values())
            # a ReLU network's Hessian is zero: its H error is the mean squared true Hessian
            assert results[dim][loss]["relu"]["H"] == pytest.approx(0.49 if dim == "1d" else 0.9975, rel=0.02)

    report = (tmp_path / "ddn_regression.md").read_text()
    figures = sorted((tmp_path / "figures").glob("ddn_regression_*.png"))
    assert len(figures) == 6
    for fig in figures:
        assert fig.stat().st_size > 1000 and f"figures/{fig.name}" in report
    assert "--quick" in report


def test_type1_loss_trains_the_derivative(experiment):
    """Same start, same data, same steps: the model trained on f and df/dx must end with a far
    smaller Jacobian error than the one trained on f alone (this fails if the parameter
    gradients through the closed-form Jacobian are wrong or missing)."""
    torch.set_num_threads(1)
    s = replace(experiment.QUICK["1d"], n_train=1024, batch=128, steps=300, lbfgs_iters=0, n_test=50)
    data = experiment.training_data("1d", s, torch.Generator().manual_seed(0), torch.float32)
    x_test = experiment.test_grid("1d", s, torch.float32)
    truth = experiment.target("1d", x_test.double())
    errs = {}
    for loss in ("type1", "type2"):
        net = experiment.make_network("1d", "tanh", s, seed=1)
        before = experiment.errors(experiment.predict(net, x_test), truth)
        experiment.train(net, loss, data, s, seed=2)
        errs[loss] = experiment.errors(experiment.predict(net, x_test), truth)
    assert errs["type1"]["J"] < 0.1 * before["J"]
    assert errs["type1"]["J"] < 0.3 * errs["type2"]["J"]


def test_report_quotes_the_trials_file(experiment):
    """The report's trial figures are read from the --trials output, none typed into the script."""
    fake = {
        key: dict(errors=dict(f=1.25e-7 * (i + 1), J=3.5e-4 + i * 1e-5), lbfgs_iterations=70 + 10 * i)
        for i, (key, *_) in enumerate(experiment.TRIALS)
    }
    text = experiment.trial_sentences(fake)
    assert "f error 1.2e-07 at batch 256, 2.5e-07 at batch 1024" in text["batch"]
    assert "after 110 to 120 of 500" in text["float32"]
    assert "J error of 4.1e-04" in text["relu"] and "reaches 4.2e-04" in text["relu"]
    assert "not measured" in experiment.trial_sentences(None)["lbfgs"]
