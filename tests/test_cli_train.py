"""`delan train`: a run from the command line; bad input gives one line, exit 2, nothing written."""

import json
import os

import pytest

from delan.cli import main


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    from delan.data import save_dataset
    from delan.data.generate import generate_dataset

    path = str(tmp_path_factory.mktemp("data") / "chars.h5")
    save_dataset(generate_dataset("two-link", kind="characters", n_trajectories=5, duration=1.0, rate=50.0), path)
    return path


FAST = ["--width", "16", "--depth", "1", "--batch-size", "64", "--quiet"]


def test_train_stop_and_resume(data_file, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", data_file, "-o", out, "--test", "a,b", "--epochs", "4", "--stop-after", "2"] + FAST) == 0
    assert "resume" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(out, "model.pt"))
    assert main(["train", data_file, "-o", out, "--resume", "--quiet"]) == 0
    assert os.path.exists(os.path.join(out, "model.pt"))
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["test"] == ["a", "b"] and cfg["epochs"] == 4 and cfg["width"] == 16
    assert len(open(os.path.join(out, "log.csv")).readlines()) == 5  # header + 4 epochs


def test_bad_input(data_file, tmp_path, cli_fails):
    out = str(tmp_path / "bad")
    cli_fails(["train", str(tmp_path / "missing.h5"), "-o", out] + FAST, "no such file")
    cli_fails(["train", data_file, "-o", out, "--test", "zz"] + FAST, "unknown trajectory")
    cli_fails(["train", data_file, "-o", out, "--epochs", "-3"] + FAST, "--epochs")
    cli_fails(["train", data_file, "-o", out, "--lr", "0"] + FAST, "--lr")
    cli_fails(["train", data_file, "-o", out, "--activation", "nonsense"] + FAST, "nonsense")
    assert not os.path.exists(out) or not os.listdir(out)
    not_h5 = tmp_path / "x.h5"
    not_h5.write_text("not hdf5")
    cli_fails(["train", str(not_h5), "-o", out] + FAST, "x.h5")


def test_existing_run_dir_refused(data_file, tmp_path, cli_fails):
    out = tmp_path / "used"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    cli_fails(["train", data_file, "-o", str(out)] + FAST, "--force")
    assert (out / "notes.txt").read_text() == "mine"
    cli_fails(["train", data_file, "-o", str(tmp_path / "never"), "--resume"], "run directory")


def test_resume_with_changed_option_refused(data_file, tmp_path, cli_fails):
    out = str(tmp_path / "r")
    assert main(["train", data_file, "-o", out, "--epochs", "2", "--stop-after", "1"] + FAST) == 0
    cli_fails(["train", data_file, "-o", out, "--resume", "--width", "32"], "--width")


def test_default_budget_is_announced_and_options_reach_the_run(data_file, tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = [
        "train",
        data_file,
        "-o",
        out,
        "--test",
        "a",
        "--stop-after",
        "1",
        "--joint-types",
        "R,R",
        "--no-friction",
        "--loss-weights",
        "power=0.5",
        "--forward-norm",
        "joint",
    ] + FAST
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "training for 120 s (the default" in printed and "joints: revolute, revolute" in printed
    assert "friction:" not in printed  # told, not decided: nothing to report
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["time_budget"] == 120.0 and cfg["epochs"] is None and cfg["friction"] is False
    assert cfg["joint_types"] == "R,R" and cfg["loss_weights"] == {"power": 0.5} and cfg["forward_norm"] == "joint"
    meta = json.load(open(os.path.join(out, "data.json")))
    assert meta["joint_types"] == ["revolute", "revolute"] and meta["validation"]["scheme"] == "time blocks"


def test_friction_decision_is_printed(data_file, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", data_file, "-o", out, "--test", "a", "--epochs", "1"] + FAST) == 0
    printed = capsys.readouterr().out
    meta = json.load(open(os.path.join(out, "data.json")))["friction"]
    word = "learned" if meta["learned"] else "not learned"
    assert f"friction: {word}, decided from the data" in printed
    assert ", ".join(f"{x:g}" for x in meta["coulomb_evidence"]) in printed


def test_bad_new_options(data_file, tmp_path, cli_fails):
    out = str(tmp_path / "bad")
    cli_fails(["train", data_file, "-o", out, "--joint-types", "R,X"] + FAST, "joint")
    cli_fails(["train", data_file, "-o", out, "--joint-types", "R,R,R"] + FAST, "joint")
    cli_fails(["train", data_file, "-o", out, "--loss-weights", "forward"] + FAST, "--loss-weights")
    cli_fails(["train", data_file, "-o", out, "--loss-weights", "torque=1"] + FAST, "unknown loss weight")
    cli_fails(["train", data_file, "-o", out, "--model", "mlp", "--friction"] + FAST, "mlp baseline has no friction")
    assert not os.path.exists(out)  # refused before the run directory is made
