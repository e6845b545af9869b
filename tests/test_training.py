"""The trainer: a short run writes its files, learns, is reproducible; bad options are refused."""

import json
import math
import os

import numpy as np
import pytest
import torch

from delan.errors import DataError, RunError
from delan.training import (
    DEFAULT_TIME_BUDGET,
    TrainConfig,
    choose_validation,
    learning_rate,
    split_samples,
    train_run,
    validation_blocks,
)


@pytest.fixture(scope="module")
def data_file(character_data):
    return character_data(6)


def tiny(data, **kw):
    base = dict(
        data=data,
        test=["a"],
        width=16,
        depth=1,
        epochs=3,
        batch_size=64,
        lr=3e-3,
        dtype="float64",
        validation=0.2,
        quiet=True,
    )
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
    assert "a" not in run.summary["validation"]["blocks"]


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
    # a step size too small to move any weight (w + 1e-300 update == w): the validation loss stays
    # the same, so after epoch 1 no epoch improves and the run stops after `patience` more epochs
    run = train_run(tiny(data_file, epochs=50, patience=2, lr=1e-300), str(tmp_path / "p"))
    assert run.summary["stop_reason"] == "early stopping"
    assert run.summary["epochs"] == 3 and run.summary["best_epoch"] == 1
    # the same run without patience goes on to its epoch limit
    run = train_run(tiny(data_file, epochs=5, lr=1e-300), str(tmp_path / "q"))
    assert run.summary["stop_reason"] == "epochs" and run.summary["epochs"] == 5


def test_diverging_loss_stops_and_keeps_checkpoint(data_file, tmp_path, monkeypatch):
    import delan.training as training

    real = training.make_loss

    def poisoned(config, train, model=None, **options):
        loss = real(config, train, model, **options)
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


def test_validation_names_are_whole_trajectories():
    names = list("abcdefghij")
    assert choose_validation(names, 0.2, seed=0) == []  # a fraction means time blocks
    assert choose_validation(names, ["c"], seed=0) == ["c"]
    with pytest.raises(DataError):
        choose_validation(names, ["zz"], seed=0)
    with pytest.raises(DataError, match="no trajectory to train on"):
        choose_validation(["a", "b"], ["a", "b"], seed=0)


def test_validation_blocks_come_from_every_trajectory():
    lengths = {"a": 100, "b": 250, "swing-up": 40, "tiny": 2}
    blocks = validation_blocks(lengths, 0.1, seed=3)
    assert set(blocks) == {"a", "b", "swing-up"}  # "tiny" cannot give a block and keep 2 samples
    for name, (a, b) in blocks.items():
        assert b - a == round(0.1 * lengths[name]) and 0 <= a < b <= lengths[name]
    assert validation_blocks(lengths, 0.1, seed=3) == blocks
    assert validation_blocks(lengths, 0.0, seed=3) == {}


def test_split_samples_partitions_each_trajectory(data_file):
    from delan.data import load_dataset

    ds = load_dataset(data_file)
    blocks = validation_blocks({tr.name: len(tr) for tr in ds}, 0.25, seed=0)
    train, val = split_samples(ds, [], blocks)
    assert len(train["q"]) + len(val["q"]) == ds.n_samples
    a, b = blocks[ds.names[1]]
    start = sum(b_ - a_ for a_, b_ in (blocks[n] for n in ds.names[:1]))
    np.testing.assert_array_equal(val["tau"][start : start + b - a], ds[ds.names[1]].tau[a:b])
    train, val = split_samples(ds, [ds.names[0]], {})
    np.testing.assert_array_equal(val["q"], ds[ds.names[0]].q)


def test_run_records_which_samples_validate(data_file, tmp_path):
    run = train_run(tiny(data_file, epochs=2), str(tmp_path / "run"))
    meta = json.load(open(tmp_path / "run" / "data.json"))
    v = meta["validation"]
    assert v["scheme"] == "time blocks" and set(v["blocks"]) == set(run.summary["train_trajectories"])
    assert v["n_samples"] == sum(b - a for a, b in (x["samples"] for x in v["blocks"].values()))
    assert meta["n_train_samples"] + v["n_samples"] + 51 == 6 * 51  # letter "a" (51 samples) is held out
    assert run.summary["best_epoch_fraction"] == run.summary["best_epoch"] / 2


def test_time_budget_alone_has_no_epoch_cap_and_neither_gets_the_default():
    c = TrainConfig(data="x.h5").validate()
    assert c.epochs is None and c.time_budget == DEFAULT_TIME_BUDGET
    c = TrainConfig(data="x.h5", epochs=5).validate()
    assert c.epochs == 5 and c.time_budget is None


def test_partial_loss_weights_keep_the_models_own_defaults(data_file):
    from delan.training import build_model, make_loss

    for kind, forward in (("structured", 1.0), ("black-box", 0.0)):
        config = tiny(data_file, model=kind, loss_weights={"power": 0.5}).validate()
        model = build_model(config, 2)
        batch = {k: torch.rand(8, 2, dtype=torch.float64) for k in ("q", "qd", "qdd", "tau")}
        _, parts = make_loss(config, batch, model)(model, batch)
        assert set(parts) == ({"inverse", "forward", "power"} if forward else {"inverse", "power"}), kind
    for kind, weights, want in (
        ("structured", {}, {"inverse", "forward", "power"}),
        ("mlp", {}, {"inverse"}),
        ("black-box", {"power": 0.0}, {"inverse"}),
        ("mlp", {"inverse": 2.0}, {"inverse"}),
    ):
        config = tiny(data_file, model=kind, loss_weights=weights).validate()
        model = build_model(config, 2)
        _, parts = make_loss(config, batch, model)(model, batch)
        assert set(parts) == want, (kind, weights)


def test_joint_types_reach_the_model(data_file, tmp_path):
    run = train_run(tiny(data_file, epochs=1, joint_types="R,R"), str(tmp_path / "r"))
    assert run.model.config["revolute"] == [True, True] and run.summary["joint_types"] == ["revolute", "revolute"]
    run = train_run(tiny(data_file, epochs=1, model="mlp", joint_types="revolute"), str(tmp_path / "m"))
    assert run.model.config["revolute"] == [True, True]
    with pytest.raises(DataError, match="joint"):
        train_run(tiny(data_file, epochs=1, joint_types="R,R,R"), str(tmp_path / "bad"))


def test_friction_option(data_file, tmp_path):
    from delan.training import build_model

    assert build_model(tiny(data_file).validate(), 2).friction_model is None
    assert build_model(tiny(data_file).validate(), 2, friction=True).friction_model is not None
    assert build_model(tiny(data_file, friction=False).validate(), 2, friction=True).friction_model is None
    run = train_run(tiny(data_file, epochs=1, model="black-box", friction=True), str(tmp_path / "bb"))
    assert run.model.friction_model is not None
    with pytest.raises(RunError, match="mlp baseline has no friction"):
        train_run(tiny(data_file, model="mlp", friction=True), str(tmp_path / "m"))
    assert not os.path.exists(tmp_path / "m")


@pytest.mark.parametrize("with_friction", [False, True])
def test_friction_is_decided_from_the_data(tmp_path, with_friction):
    """Unless told, friction is learned exactly when the data show Coulomb steps."""
    from delan.data import save_dataset
    from delan.data.generate import generate_dataset

    path = str(tmp_path / "d.h5")
    save_dataset(
        generate_dataset("two-link", n_trajectories=3, duration=2.0, rate=250, friction=with_friction, seed=3), path
    )
    run = train_run(tiny(path, epochs=1, test=["fourier_000"]), str(tmp_path / "r"))
    assert (run.model.friction_model is not None) == with_friction
    record = run.summary["friction"]
    assert record["learned"] == with_friction and record["decided"] == "from the data"
    assert (max(record["coulomb_evidence"]) >= record["threshold"]) == with_friction
    with open(tmp_path / "r" / "data.json") as f:
        assert json.load(f)["friction"] == record
    told = train_run(tiny(path, epochs=1, test=["fourier_000"], friction=not with_friction), str(tmp_path / "t"))
    assert (told.model.friction_model is not None) == (not with_friction)
    assert told.summary["friction"]["decided"] == "by the friction option"


def test_coulomb_evidence_separates_friction_from_none():
    from delan.data.generate import generate_dataset
    from delan.friction import coulomb_evidence

    for friction in (False, True):
        ds = generate_dataset("two-link", n_trajectories=4, duration=3.0, rate=500, friction=friction, seed=5)
        ev = coulomb_evidence([tr.qd for tr in ds], [tr.tau for tr in ds])
        assert ev.shape == (2,)
        assert (ev.min() > 2.0) if friction else (np.abs(ev).max() < 0.5), (friction, ev)


def test_run_files_get_the_users_permissions(data_file, tmp_path):
    old = os.umask(0o022)
    try:
        train_run(tiny(data_file, epochs=1), str(tmp_path / "run"))
    finally:
        os.umask(old)
    for name in ("config.json", "checkpoint.pt", "model.pt", "summary.json", "log.csv"):
        assert os.stat(tmp_path / "run" / name).st_mode & 0o777 == 0o644, name


@pytest.mark.parametrize(
    "field,value",
    [
        ("epochs", -1),
        ("epochs", 0),
        ("lr", -1e-3),
        ("batch_size", 0),
        ("model", "transformer"),
        ("dtype", "float16"),
        ("time_budget", 0.0),
        ("validation", 1.5),
        ("schedule", "linear"),
    ],
)
def test_bad_options_refused_before_anything_is_written(data_file, tmp_path, field, value):
    with pytest.raises(RunError):
        train_run(tiny(data_file, **{field: value}), str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x")


def test_existing_run_dir_not_overwritten(data_file, tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "precious.txt").write_text("keep")
    with pytest.raises(RunError, match="`resume`"):
        train_run(tiny(data_file), str(d))
    assert (d / "precious.txt").read_text() == "keep"


def test_unknown_test_names(data_file, tmp_path):
    with pytest.raises(DataError, match="unknown trajectory"):
        train_run(tiny(data_file, test=["nope"]), str(tmp_path / "x"))


def test_mlp_baseline_trains(data_file, tmp_path):
    run = train_run(tiny(data_file, model="mlp"), str(tmp_path / "mlp"))
    assert np.isfinite(run.summary["best_loss"])


def test_output_scales_follow_the_datas_inertias():
    """The structured model's output scales come from the data: within an order of magnitude of
    the true mean diagonal of H, and they follow a change of units (x 1000 torque: x 1000 mass)."""
    from delan.data.generate import generate_dataset
    from delan.training import output_scales

    ds = generate_dataset("n-link", n_dof=3, n_trajectories=3, duration=2.0, rate=100.0, seed=0)
    arrays = ds.concatenate()
    s = output_scales(arrays)
    true = np.diagonal(arrays["H"], axis1=1, axis2=2).mean(0)
    ratio = np.array(s["mass_scale"]) / true
    assert np.all((ratio > 0.1) & (ratio < 10)), ratio
    assert math.isclose(s["potential_scale"], float(np.sqrt(np.mean(arrays["tau"].std(0) ** 2))))
    scaled = output_scales(dict(arrays, tau=arrays["tau"] * 1000.0))
    np.testing.assert_allclose(scaled["mass_scale"], 1000.0 * np.array(s["mass_scale"]), rtol=1e-6)
