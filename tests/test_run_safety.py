"""Run directories cannot be mixed up or lose work: data fingerprints, one run per directory,
SIGINT/SIGTERM checkpoints, divergence keeps a loadable model, format versions, umask."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import delan
from delan.cli import main
from delan.errors import RunError, TrainingDiverged
from delan.runlock import LOCK_FILE, RunLock
from delan.training import load_checkpoint, load_run, read_config

FAST = dict(width=16, depth=1, batch_size=64, dtype="float64", quiet=True, progress=False)
CLI_FAST = ["--width", "16", "--depth", "1", "--batch-size", "64", "--dtype", "float64", "--quiet"]


@pytest.fixture(scope="module")
def data(character_data):
    return character_data(4)  # letters a-d, 51 samples each


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    """A finished run holding out "a"."""
    return delan.train(data, str(tmp_path_factory.mktemp("fin") / "run"), test=["a"], epochs=1, **FAST)


def _other_data(path, ds):
    from delan.data import save_dataset

    save_dataset(ds, path)
    return str(path)


def _renamed(ds, names):
    """A dataset of the trajectories ``names`` of ``ds`` under new names (same arrays)."""
    from delan.data import Dataset, Trajectory

    trs = [Trajectory("copy_" + n, ds[n].t, ds[n].q, ds[n].qd, ds[n].qdd, ds[n].tau, ds[n].truth) for n in names]
    return Dataset(trs, ds.n_dof, ds.joint_names, ds.system, joint_types=ds.joint_types)


def _shifted(ds):
    """The same trajectories with slightly different torques."""
    from delan.data import Dataset, Trajectory

    trs = [Trajectory(tr.name, tr.t, tr.q, tr.qd, tr.qdd, tr.tau * 1.001, tr.truth) for tr in ds]
    return Dataset(trs, ds.n_dof, ds.joint_names, ds.system, joint_types=ds.joint_types)


# -- 1. the data a run was trained on ----------------------------------------------------------
def test_run_records_data_path_and_fingerprint(finished_run, data):
    from delan.fingerprint import data_fingerprint

    meta = json.load(open(os.path.join(finished_run.path, "data.json")))
    rec = meta["data_file"]
    assert rec["path"] == os.path.abspath(data) and os.path.isabs(rec["path"])
    assert rec["fingerprint"] == data_fingerprint(data)["fingerprint"] and rec["fingerprint"].startswith("sha256:")
    assert set(rec["trajectories"]) == {"a", "b", "c", "d"}
    assert read_config(finished_run.path).data == os.path.abspath(data)


def test_resume_under_another_relative_path_and_refusal_of_other_data(data, tmp_path, monkeypatch, cli_fails):
    from delan.data import load_dataset

    run = str(tmp_path / "run")
    delan.train(data, run, test=["a"], epochs=3, stop_after=1, **FAST)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(data, moved / "copy.h5")
    monkeypatch.chdir(moved)
    res = delan.train("copy.h5", run, resume=True, stop_after=2, progress=False)  # relative, other path, same data
    assert res.summary["epochs"] == 2
    # the CLI too (it used to compare paths)
    assert main(["train", "copy.h5", "-o", run, "--resume", "--quiet"]) == 0
    assert load_run(run)[0].data == os.path.abspath(data)  # the record keeps the original path
    # other content under another path: refused, naming both files
    shifted = _other_data(moved / "other.h5", _shifted(load_dataset(data)))
    (tmp_path / "run" / "model.pt").unlink()
    err = cli_fails(["train", shifted, "-o", run, "--resume", "--quiet"], "holds other data")
    assert os.path.abspath(data) in err and shifted in err
    with pytest.raises(RunError, match="holds other data"):
        delan.train(shifted, run, resume=True, progress=False)


def test_resume_refuses_a_data_file_changed_in_place(data, tmp_path):
    from delan.data import load_dataset

    mine = str(tmp_path / "mine.h5")
    shutil.copy(data, mine)
    run = str(tmp_path / "run")
    delan.train(mine, run, test=["a"], epochs=3, stop_after=1, **FAST)
    _other_data(mine, _shifted(load_dataset(data)))
    with pytest.raises(RunError, match="has changed since the run started"):
        delan.train(mine, run, resume=True, progress=False)


def test_evaluate_default_is_the_held_out_set_by_content(finished_run, data, tmp_path, cli_fails, capsys):
    from delan.data import load_dataset

    ds = load_dataset(data)
    assert delan.evaluate(finished_run, rollouts=False)["test"] == ["a"]  # data omitted: the run's own
    copy = str(tmp_path / "copy.h5")
    shutil.copy(data, copy)
    assert delan.evaluate(finished_run.path, copy, rollouts=False)["test"] == ["a"]  # same content elsewhere
    assert main(["evaluate", finished_run.path, "--no-rollouts"]) == 0
    assert "on " + os.path.abspath(data) + ": a" in capsys.readouterr().out
    # other data: all of it, unless it holds trajectories the run trained on
    fresh = _other_data(tmp_path / "fresh.h5", _shifted(ds))
    assert delan.evaluate(finished_run, fresh, rollouts=False)["test"] == ["a", "b", "c", "d"]
    mixed = _other_data(tmp_path / "mixed.h5", _renamed(ds, ["a", "c"]))  # "a" held out, "c" trained on
    err = cli_fails(["evaluate", finished_run.path, mixed], "copy_c")
    assert "was trained on" in err and os.path.abspath(data) in err
    assert delan.evaluate(finished_run, mixed, test=["copy_c"], rollouts=False)["test"] == ["copy_c"]  # asked for
    assert delan.evaluate(finished_run, _other_data(tmp_path / "ok.h5", _renamed(ds, ["a"])), rollouts=False)[
        "test"
    ] == ["copy_a"]


def test_evaluate_never_defaults_to_training_trajectories(data, tmp_path, cli_fails):
    from delan.data import load_dataset

    run = delan.train(data, str(tmp_path / "all"), epochs=1, **FAST)  # nothing held out
    cli_fails(["evaluate", run.path, data], "held no trajectory out")
    assert delan.evaluate(run, data, test=["b"], rollouts=False)["test"] == ["b"]
    # the training file changed in place since: the held-out names may mean other trajectories now
    mine = str(tmp_path / "mine.h5")
    shutil.copy(data, mine)
    run = delan.train(mine, str(tmp_path / "r"), test=["a"], epochs=1, **FAST)
    _other_data(mine, _shifted(load_dataset(data)))
    cli_fails(["evaluate", run.path, mine], "has changed since")


def test_old_run_without_fingerprint_falls_back_to_its_path(finished_run, data, tmp_path, cli_fails):
    old = tmp_path / "old"
    shutil.copytree(finished_run.path, old)
    meta = json.load(open(old / "data.json"))
    del meta["data_file"], meta["format"], meta["version"]
    (old / "data.json").write_text(json.dumps(meta))
    assert delan.evaluate(str(old), data, rollouts=False)["test"] == ["a"]
    copy = str(tmp_path / "copy.h5")
    shutil.copy(data, copy)
    cli_fails(["evaluate", str(old), copy], "no content fingerprint")


# -- 2. one run per directory ------------------------------------------------------------------
def _delan(*argv):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "delan", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _wait_for_epochs(run, proc, n=1, timeout=90.0):
    log = os.path.join(run, "log.jsonl")
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            pytest.fail(f"training ended early: {proc.communicate()}")
        if os.path.exists(log) and len(open(log).readlines()) >= n:
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail("training did not start in time")


LONG = ["--test", "a", "--epochs", "100000", "--checkpoint-every", "100000", "--schedule", "constant"] + CLI_FAST


def test_second_run_on_the_same_directory_is_refused_then_sigterm_checkpoints(data, tmp_path):
    run = str(tmp_path / "run")
    first = _delan("train", data, "-o", run, *LONG)
    try:
        _wait_for_epochs(run, first)
        holder = json.load(open(os.path.join(run, LOCK_FILE)))
        assert holder["pid"] == first.pid and holder["since"]
        # a second run, also with --force (it must not delete the first one's files); --resume
        # takes the same lock (test_busy_directory_is_left_alone_even_with_force)
        others = [_delan("train", data, "-o", run, *LONG, *extra) for extra in ([], ["--force"])]
        for second in others:
            _, err = second.communicate(timeout=120)
            lines = err.strip().splitlines()
            assert second.returncode == 2 and len(lines) == 1, err
            assert f"in use by another training run (pid {first.pid}, since {holder['since']})" in lines[0], err
        assert os.path.exists(os.path.join(run, "config.json")) and os.path.exists(os.path.join(run, LOCK_FILE))
        assert first.poll() is None  # the first run is unaffected
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "--resume" in lines[0] and "Traceback" not in err
    assert not os.path.exists(os.path.join(run, LOCK_FILE)) and not os.path.exists(os.path.join(run, "model.pt"))
    saved = load_checkpoint(os.path.join(run, "checkpoint.pt"))
    assert json.load(open(os.path.join(run, "summary.json")))["stop_reason"] == "interrupted"
    done = saved["epoch"]
    res = delan.train(data, run, resume=True, epochs=done + 2, progress=False)
    epochs = [json.loads(x)["epoch"] for x in open(os.path.join(run, "log.jsonl"))]
    assert res.summary["finished"] and res.summary["epochs"] == done + 2
    assert epochs == list(range(1, done + 3))
    assert res.history[-1]["step"] > saved["step"]


def test_sigint_in_a_subprocess_checkpoints_and_resumes_where_it_stopped(data, tmp_path):
    run = str(tmp_path / "run")
    proc = _delan("train", data, "-o", run, *LONG)
    try:
        _wait_for_epochs(run, proc, n=2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("delan train: ") and "SIGINT" in lines[0], err
    assert f"delan train {os.path.abspath(data)} -o {run} --resume" in lines[0]
    saved = load_checkpoint(os.path.join(run, "checkpoint.pt"))
    assert saved["epoch"] >= 2
    # resume continues from the saved epoch and step, and ends as an uninterrupted run would
    k = saved["epoch"] + 2
    res = delan.train(data, run, resume=True, epochs=k, progress=False)
    assert res.summary["epochs"] == k
    rows = [json.loads(x) for x in open(os.path.join(run, "log.jsonl"))]
    assert [r["epoch"] for r in rows] == list(range(1, k + 1))
    whole = delan.train(
        data, str(tmp_path / "whole"), test=["a"], epochs=k, schedule="constant", checkpoint_every=100000, **FAST
    )
    for (name, a), b in zip(whole.model.state_dict().items(), res.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_sigint_inside_an_epoch_checkpoints_that_step_and_resume_is_exact(data, tmp_path, loss_hook):
    """The signal arrives during a step (a real SIGINT to this process): the step finishes, the
    checkpoint holds the place inside the epoch, and the resumed run ends bit for bit like one
    that was never interrupted."""
    calls = [0]

    def hook():
        calls[0] += 1
        if calls[0] == 13 and torch.is_grad_enabled():  # a training step inside epoch 2
            signal.raise_signal(signal.SIGINT)

    opts = dict(FAST, batch_size=16, epochs=4, checkpoint_every=100)
    loss_hook(hook)
    with pytest.raises(delan.errors.TrainingInterrupted, match="inside epoch 2") as info:
        delan.train(data, str(tmp_path / "cut"), test=["a"], **opts)
    assert info.value.exit_code == 130
    loss_hook(None)
    saved = load_checkpoint(str(tmp_path / "cut" / "checkpoint.pt"))
    assert saved["epoch"] == 1 and saved["partial"]["pos"] > 0 and saved["version"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    resumed = delan.train(data, str(tmp_path / "cut"), resume=True, progress=False)
    whole = delan.train(data, str(tmp_path / "whole"), test=["a"], **opts)
    assert resumed.summary["steps"] == whole.summary["steps"]
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_signal_while_the_data_loads_leaves_nothing_behind(data, tmp_path, monkeypatch):
    import delan.fingerprint as fingerprint

    original = fingerprint.data_fingerprint

    def slow_fingerprint(path):
        signal.raise_signal(signal.SIGINT)
        return original(path)

    monkeypatch.setattr(fingerprint, "data_fingerprint", slow_fingerprint)
    with pytest.raises(delan.errors.TrainingInterrupted, match="nothing was written"):
        delan.train(data, str(tmp_path / "run"), test=["a"], epochs=2, **FAST)
    assert not (tmp_path / "run").exists()


def test_stale_locks_are_taken_over(data, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    run = tmp_path / "run"
    delan.train(data, str(run), test=["a"], epochs=2, stop_after=1, **FAST)
    # a lock file left by a run killed with SIGKILL (its flock went with it)
    import socket

    (run / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": "then"}))
    assert delan.train(data, str(run), resume=True, stop_after=2, progress=False).summary["epochs"] == 2
    assert not (run / LOCK_FILE).exists()
    # a flock still held (by another process) for a recorded pid that is gone
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, json, os, socket, sys, time\n"
                f"fd = os.open({str(run / LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                f"holder = {{'pid': {dead.pid}, 'host': socket.gethostname(), 'since': 'then'}}\n"
                "os.write(fd, json.dumps(holder).encode())\n"
                "print('locked', flush=True)\n"
                "time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        lock = RunLock(str(run)).acquire()
        assert lock.previous["pid"] == dead.pid
        lock.release()
    finally:
        holder.kill()
        holder.wait()


def test_busy_directory_is_left_alone_even_with_force(finished_run, data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run.path, run)
    before = sorted(os.listdir(run))
    with RunLock(str(run)):
        with pytest.raises(RunError, match=f"in use by another training run \\(pid {os.getpid()}"):
            delan.train(data, str(run), test=["a"], epochs=1, force=True, **FAST)
        with pytest.raises(RunError, match="in use by another training run"):
            delan.train(data, str(run), resume=True, epochs=2, progress=False)
        assert sorted(os.listdir(run)) == sorted(before + [LOCK_FILE])
    assert sorted(os.listdir(run)) == before


# -- 4. divergence -----------------------------------------------------------------------------
def test_lr_1e6_diverges_with_one_line_and_a_loadable_model(data, tmp_path, capsys):
    run = str(tmp_path / "run")
    code = main(
        [
            "train",
            data,
            "-o",
            run,
            "--test",
            "a",
            "--lr",
            "1e6",
            "--epochs",
            "20",
            "--checkpoint-every",
            "1",
            "--batch-size",
            "512",
            "--width",
            "16",
            "--depth",
            "1",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "training diverged at epoch" in err and "--lr" in err
    summary = json.load(open(os.path.join(run, "summary.json")))
    assert summary["stop_reason"] == "diverged"
    config, model = load_run(run)  # a loadable model
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # in float32 the first step already sends the validation loss to inf: no epoch was good, so
    # model.pt holds the initial weights, and there was no checkpoint yet to keep
    assert "validation loss is inf" in err and "no checkpoint had been written yet" in err
    assert summary["model_epoch"] == 0 and not os.path.exists(os.path.join(run, "checkpoint.pt"))
    assert delan.evaluate(run, rollouts=False)["n_samples"] == 51


@pytest.mark.parametrize("where", ["training", "validation"])
def test_a_failed_cholesky_is_a_divergence(data, tmp_path, loss_hook, where):
    calls = {"training": 0, "validation": 0}

    def hook():
        part = "training" if torch.is_grad_enabled() else "validation"
        calls[part] += 1
        if part == where and calls[part] == (5 if where == "training" else 3):  # in epoch 2 or 3
            torch.linalg.cholesky(-torch.eye(2, dtype=torch.float64))  # raises LinAlgError

    loss_hook(hook)
    run = str(tmp_path / "run")
    with pytest.raises(TrainingDiverged, match="not positive-definite") as info:
        delan.train(data, run, test=["a"], epochs=5, checkpoint_every=1, **FAST)
    summary = json.load(open(os.path.join(run, "summary.json")))
    ck = load_checkpoint(os.path.join(run, "checkpoint.pt"))  # the last good checkpoint is kept
    message = str(info.value)
    assert len(message.splitlines()) == 1 and f"the last good checkpoint (epoch {ck['epoch']}) is kept" in message
    assert summary["stop_reason"] == "diverged" and ck["epoch"] == summary["diverged"]["checkpoint_epoch"] >= 1
    assert "validation failed" in str(info.value) if where == "validation" else "validation" not in str(info.value)
    _, model = load_run(run)  # model.pt: the best model so far
    best = ck["best"]["state"] if where == "training" else None
    if best is not None:
        for (name, a), b in zip(model.state_dict().items(), best.values()):
            assert torch.equal(a, b), name


# -- 5. format versions --------------------------------------------------------------------------
def test_unknown_format_versions_are_refused_naming_file_and_version(finished_run, data, tmp_path, cli_fails):
    run = tmp_path / "run"
    shutil.copytree(finished_run.path, run)
    cfg = json.load(open(run / "config.json"))
    assert cfg["format"] == "delan-run-config" and cfg["version"] == 1
    (run / "config.json").write_text(json.dumps(dict(cfg, version=99)))
    cli_fails(["evaluate", str(run), data], f"{run / 'config.json'}: run configuration format version 99")
    cli_fails(["train", data, "-o", str(run), "--resume"], "version 99")
    (run / "config.json").write_text(json.dumps(cfg))
    # checkpoint
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save(dict(ck, version=99), run / "checkpoint.pt")
    cli_fails(
        ["train", data, "-o", str(run), "--resume", "--epochs", "3"],
        f"{run / 'checkpoint.pt'}: checkpoint format version 99",
    )
    # data.json
    meta = json.load(open(run / "data.json"))
    (run / "data.json").write_text(json.dumps(dict(meta, version=99)))
    cli_fails(["evaluate", str(run), data], f"{run / 'data.json'}: run data record format version 99")
    # model.pt
    (run / "data.json").write_text(json.dumps(meta))
    payload = torch.load(run / "model.pt", weights_only=True)
    torch.save(dict(payload, version=99), run / "model.pt")
    cli_fails(["evaluate", str(run), data], f"{run / 'model.pt'}: model format version 99")


# -- 6. permissions ------------------------------------------------------------------------------
def test_run_files_follow_the_umask(data, tmp_path, loss_hook):
    calls = [0]

    def hook():
        calls[0] += 1
        if calls[0] == 2:
            signal.raise_signal(signal.SIGTERM)

    loss_hook(hook)
    old = os.umask(0o027)
    try:
        with pytest.raises(delan.errors.TrainingInterrupted) as info:
            delan.train(data, str(tmp_path / "run"), test=["a"], epochs=3, **dict(FAST, batch_size=16))
    finally:
        os.umask(old)
    assert info.value.exit_code == 143
    run = tmp_path / "run"
    assert os.stat(run).st_mode & 0o777 == 0o750
    names = sorted(os.listdir(run))
    assert names == ["checkpoint.pt", "config.json", "data.json", "log.csv", "log.jsonl", "summary.json"]
    for name in names:
        assert os.stat(run / name).st_mode & 0o777 == 0o640, name
