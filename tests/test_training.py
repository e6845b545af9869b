"""The trainer: a short run writes its files, learns, is reproducible; bad options are refused."""
import json
import math
import os

import numpy as np
import pytest
import torch

from delan.errors import DataError, RunError
from delan.training import TrainConfig, choose_validation, learning_rate, train_run


@pytest.fixture(scope="module")
def data_file(character_data):
    return character_data(6)


def tiny(data, **kw):
    base = dict(data=data, test=["a"], width=16, depth=1, epochs=3, batch_size=64, lr=3e-3,
                dtype="float64", validation=0.2, quiet=True)
    base.update(kw)
    return TrainConfig(**base)


def test_run_writes_its_files_and_learns(data_file, tmp_path):
    run = train_run(tiny(data_file, epochs=6), str(tmp_path / "run"))
    for name in ("config.json", "log.csv", "log.jsonl", "checkpoint.pt", "model.pt", "summary.json"):
        assert os.path.exists(tmp_path / "run" / name), name
    rows = [json.loads(x) for x in open(tmp_path / "run" / "log.jsonl")]
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert "val_loss" in rows[0]
    header = open(tmp_path / "run" / "log.csv").readline().strip().split(",")
    assert header[:4] == ["epoch", "step", "time", "lr"]
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["test"] == ["a"] and config["seed"] == 0
    assert "a" not in run.summary["train_trajectories"] + run.summary["validation_trajectories"]


def test_same_seed_same_weights(data_file, tmp_path):
    a = train_run(tiny(data_file), str(tmp_path / "a"))
    b = train_run(tiny(data_file), str(tmp_path / "b"))
    c = train_run(tiny(data_file, seed=1), str(tmp_path / "c"))
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), k
    assert any(not torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), c.model.state_dict().values()))


def test_time_budget_and_early_stopping(data_file, tmp_path):
    run = train_run(tiny(data_file, epochs=100000, time_budget=1.0), str(tmp_path / "t"))
    assert run.summary["stop_reason"] == "time budget" and run.summary["seconds"] < 10
    run = train_run(tiny(data_file, epochs=200, patience=1, lr=0.5), str(tmp_path / "p"))
    assert run.summary["stop_reason"] in ("early stopping", "epochs")


def test_diverging_loss_stops_and_keeps_checkpoint(data_file, tmp_path, monkeypatch):
    import delan.training as training

    real = training.make_loss

    def poisoned(config, train):
        loss = real(config, train)
        calls = {"n": 0}

        def f(model, batch):
            total, parts = loss(model, batch)
            calls["n"] += 1
            if model.training and calls["n"] > 12:
                total = total * float("nan")
            return total, parts
        return f

    monkeypatch.setattr(training, "make_loss", poisoned)
    run_dir = tmp_path / "nan"
    with pytest.raises(RunError, match="diverged"):
        train_run(tiny(data_file, epochs=50, checkpoint_every=1, validation=0.0), str(run_dir))
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["epoch"] >= 1
    assert all(torch.isfinite(v).all() for v in state["model_state"].values())


def test_learning_rate_schedules():
    c = TrainConfig(lr=1.0, schedule="cosine", lr_final=0.01)
    assert learning_rate(c, 0.0) == 1.0 and math.isclose(learning_rate(c, 1.0), 0.01)
    c.schedule = "exponential"
    assert math.isclose(learning_rate(c, 0.5), 0.1)
    c.schedule = "constant"
    assert learning_rate(c, 0.7) == 1.0


def test_validation_split_by_trajectory():
    names = list("abcdefghij")
    v = choose_validation(names, 0.2, seed=0)
    assert len(v) == 2 and set(v) <= set(names)
    assert choose_validation(names, 0.2, seed=0) == v
    assert choose_validation(names, ["c"], seed=0) == ["c"]
    assert choose_validation(["a", "b"], 0.5, seed=0) == []
    with pytest.raises(DataError):
        choose_validation(names, ["zz"], seed=0)


@pytest.mark.parametrize("field,value", [("epochs", -1), ("epochs", 0), ("lr", -1e-3), ("batch_size", 0),
                                         ("model", "transformer"), ("dtype", "float16"), ("time_budget", 0.0),
                                         ("validation", 1.5), ("schedule", "linear")])
def test_bad_options_refused_before_anything_is_written(data_file, tmp_path, field, value):
    with pytest.raises(RunError):
        train_run(tiny(data_file, **{field: value}), str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x")


def test_existing_run_dir_not_overwritten(data_file, tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "precious.txt").write_text("keep")
    with pytest.raises(RunError, match="--resume"):
        train_run(tiny(data_file), str(d))
    assert (d / "precious.txt").read_text() == "keep"


def test_unknown_test_names(data_file, tmp_path):
    with pytest.raises(DataError, match="unknown trajectory"):
        train_run(tiny(data_file, test=["nope"]), str(tmp_path / "x"))


def test_mlp_baseline_trains(data_file, tmp_path):
    run = train_run(tiny(data_file, model="mlp"), str(tmp_path / "mlp"))
    assert np.isfinite(run.summary["best_loss"])
