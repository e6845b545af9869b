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
