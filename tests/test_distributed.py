"""Data-parallel training (delan.distributed): 2 gloo processes give the weights of one process on
the same global batches, and a run stopped with one world size resumes with another."""

import os
import socket

import pytest
import torch
import torch.distributed as dist

from delan.models import load_model
from delan.training import TrainConfig, train_run

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch built without gloo"
)

# batch 40 does not divide the training samples: the last batch is short, and with 2 ranks it
# splits unevenly (the weighted slices must still give the global batch's gradient)
CONFIG = dict(
    width=16, depth=2, batch_size=40, dtype="float64", validation=0.1, seed=5, lr=3e-3, quiet=True, checkpoint_every=1
)


def _config(data: str, epochs: int) -> TrainConfig:
    return TrainConfig(data=data, epochs=epochs, **CONFIG)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, jobs) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    import json

    from delan import distributed
    from delan.data import streaming

    seen = []  # the rows this rank steps on: its slices only
    whole = streaming.shard

    def counting(batch, r, w):
        part = whole(batch, r, w)
        seen.append((part["q"].shape[0], batch["q"].shape[0]))
        return part

    streaming.shard = counting
    distributed.init_from_env("cpu")
    try:
        for data, run_dir, resume, stop_after in jobs:
            seen.clear()
            train_run(_config(data, 4), run_dir, resume=resume, stop_after=stop_after, progress=False)
            n = json.load(open(os.path.join(run_dir, "summary.json")))["n_train_samples"]
            epochs = (stop_after or 4) - (2 if resume else 0)
            assert sum(g for _, g in seen) == epochs * n  # every global batch, once
            assert [s for s, _ in seen] == [(rank + 1) * g // world - rank * g // world for _, g in seen]
    finally:
        distributed.shutdown()


def _params(run_dir: str):
    return dict(load_model(os.path.join(run_dir, "model.pt")).named_parameters())


def _max_rel(a: str, b: str) -> float:
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    with torch.no_grad():
        return max(float((pa[k] - pb[k]).abs().max() / pb[k].abs().max().clamp_min(1e-12)) for k in pa)


def test_two_gloo_ranks_match_one_process_and_resume_across_world_sizes(character_data, tmp_path):
    import torch.multiprocessing as mp

    data = character_data(4)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    paused, back = str(tmp_path / "paused"), str(tmp_path / "back")
    train_run(_config(data, 4), one, progress=False)  # the reference: one process, 4 epochs
    train_run(_config(data, 4), paused, stop_after=2, progress=False)  # one process, paused after 2 epochs
    jobs = [
        (data, two, False, None),  # 2 ranks from scratch
        (data, paused, True, None),  # 2 ranks resume the 1-process run
        (data, back, False, 2),
    ]  # 2 ranks, paused after 2 epochs ...
    mp.start_processes(_worker, args=(2, _free_port(), jobs), nprocs=2, start_method="spawn")
    assert not os.path.exists(os.path.join(back, "model.pt"))
    train_run(_config(data, 4), back, resume=True, progress=False)  # ... resumed by one process

    # same global batches, seed and order: equal up to the order of floating-point sums
    for run in (two, paused, back):
        assert _max_rel(run, one) <= 1e-6, run

    import json

    summary = json.load(open(os.path.join(paused, "summary.json")))
    assert summary["world_size"] == 2 and summary["epochs"] == 4 and summary["finished"]
    rows = [json.loads(x) for x in open(os.path.join(paused, "log.jsonl"))]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]  # rank 0 alone wrote the log, once per epoch
    ref = [json.loads(x) for x in open(os.path.join(one, "log.jsonl"))]
    for r, s in zip(rows, ref):
        assert r["train_loss"] == pytest.approx(s["train_loss"], rel=1e-9)
        assert r["val_loss"] == pytest.approx(s["val_loss"], rel=1e-9)


def test_shard_weights_give_the_global_gradient():
    """The weighting ParallelLoss applies: sum over slices of (slice / global) x slice-mean
    gradient is the global mean's gradient, whatever the slice sizes."""
    from delan.data.streaming import shard

    torch.manual_seed(0)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(11, 3, dtype=torch.float64)
    (g,) = torch.autograd.grad(((x @ w) ** 2).mean(), w)
    total = torch.zeros(3, dtype=torch.float64)
    for r in range(3):
        part = shard({"q": x}, r, 3)["q"]
        (gr,) = torch.autograd.grad(((part @ w) ** 2).mean() * (3 * len(part) / 11), w)
        total += gr / 3  # what DDP's average does
    torch.testing.assert_close(total, g, rtol=1e-12, atol=0)


def test_torchrun_group_killed_with_sigterm_resumes_in_one_process(tmp_path):
    """SIGTERM to torchrun (as a cluster scheduler sends it) reaches both ranks: they stop on the
    same step, rank 0 writes a mid-epoch checkpoint, and one process finishes the run from it."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from delan.data import save_dataset
    from delan.data.generate import generate_dataset

    data = str(tmp_path / "d.h5")
    save_dataset(generate_dataset("two-link", n_trajectories=8, duration=5.0), data)
    run = tmp_path / "run"
    train = ["-m", "delan", "train", data, "-o", str(run), "--epochs", "150", "--quiet", "--seed", "1"]
    group = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port())]
        + train,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = run / "log.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and group.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 4:  # header + 3 epochs
            break
        time.sleep(0.2)
    assert group.poll() is None, group.communicate()[0][-2000:]
    group.send_signal(signal.SIGTERM)
    output = group.communicate(timeout=60)[0]
    assert group.returncode != 0
    assert "SIGTERM: training stopped after step" in output and "--resume" in output, output[-2000:]
    stopped = json.loads((run / "summary.json").read_text())
    assert stopped["stop_reason"] == "interrupted" and not stopped["finished"]
    assert stopped["world_size"] == 2 and 3 <= stopped["epochs"] < 150
    assert (run / "checkpoint.pt").exists() and not (run / ".delan.lock").exists()

    resumed = subprocess.run([sys.executable, *train, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    done = json.loads((run / "summary.json").read_text())
    assert done["finished"] and done["epochs"] == 150 and "world_size" not in done
    rows = [json.loads(x) for x in open(run / "log.jsonl")]
    assert [r["epoch"] for r in rows] == list(range(1, 151))  # no epoch lost or repeated


def _signalled_worker(rank: int, world: int, port: int, data: str, run_dir: str, where: str, results) -> None:
    """One rank of a 2-rank run in which rank 0 alone sends itself SIGTERM at ``where``: a point at
    which the other rank has not seen a signal (as when torchrun's SIGTERM reaches the ranks at
    slightly different times). Puts (rank, outcome) on ``results``."""
    import datetime
    import signal

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    import delan.training as training
    from delan import distributed
    from delan.errors import TrainingInterrupted

    def kill_self():
        os.kill(os.getpid(), signal.SIGTERM)

    if rank == 0 and where == "setup":  # the data has loaded; the run directory is not written yet
        build = training._build

        def building(*args, **kwargs):
            run = build(*args, **kwargs)
            kill_self()
            return run

        training._build = building
    elif rank == 0 and where == "epoch end":  # after epoch 2 was scored, before the checkpoint rule
        end = training._end_epoch

        def ending(run, *args):
            end(run, *args)
            if run.epoch == 2:
                kill_self()

        training._end_epoch = ending
    elif rank == 0 and where == "inside a step":  # after the ranks agreed to step on, mid-epoch
        make = training.make_optimizer

        def making(*args, **kwargs):
            opt = make(*args, **kwargs)
            real, calls = opt.step, [0]

            def step(*a, **k):
                calls[0] += 1
                if calls[0] == 7:  # the second step of epoch 2 (5 steps per epoch)
                    kill_self()
                return real(*a, **k)

            opt.step = step
            return opt

        training.make_optimizer = making
    # a short timeout: a rank left waiting in a collective fails the test instead of hanging it
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=30))
    distributed.init_from_env("cpu")
    try:
        train_run(_config(data, 6), run_dir, progress=False)
        results.put((rank, "finished"))
    except TrainingInterrupted as exc:
        results.put((rank, str(exc)))
    except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
        results.put((rank, f"{type(exc).__name__}: {exc}"))
    finally:
        distributed.shutdown()


@pytest.mark.parametrize("where", ["setup", "epoch end", "inside a step"])
def test_a_signal_on_one_rank_stops_every_rank_at_the_same_point(character_data, tmp_path, where):
    """The ranks decide together whether a signal stops the run (any rank's signal counts), so a
    SIGTERM that reaches one rank first stops both at the same step, with nothing left waiting."""
    import json

    import torch.multiprocessing as mp

    data = character_data(4)
    run_dir = str(tmp_path / "run")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_signalled_worker, args=(r, 2, port, data, run_dir, where, results))
        for port in [_free_port()]
        for r in range(2)
    ]
    for p in procs:
        p.start()
    outcomes = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert outcomes[0] == outcomes[1], outcomes  # the same stop, the same message
    assert outcomes[0].startswith("SIGTERM: "), outcomes[0]
    if where == "setup":
        assert "nothing was written" in outcomes[0] and not os.path.exists(run_dir)
        return
    stopped = json.load(open(os.path.join(run_dir, "summary.json")))
    assert stopped["stop_reason"] == "interrupted" and stopped["world_size"] == 2
    # inside a step: the signal came after the ranks agreed on step 7, so both stop after step 8
    at = "the end of epoch 2" if where == "epoch end" else "step 8, inside epoch 2"
    assert at in outcomes[0], outcomes[0]
    train_run(_config(data, 6), run_dir, resume=True, progress=False)  # one process goes on from it
    rows = [json.loads(x) for x in open(os.path.join(run_dir, "log.jsonl"))]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
