"""A run stopped after k epochs and resumed ends with exactly the weights of an uninterrupted run."""

import json

import pytest
import torch

from delan.errors import RunError
from delan.training import TrainConfig, train_run


@pytest.fixture(scope="module")
def data_file(character_data):
    return character_data(5)


def config(data, **kw):
    base = dict(
        data=data,
        test=["e"],
        width=16,
        depth=2,
        epochs=8,
        batch_size=32,
        lr=3e-3,
        dtype="float64",
        validation=0.25,
        schedule="cosine",
        checkpoint_every=3,
        quiet=True,
        patience=50,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("stop_at", [3, 5])
def test_resume_is_exact(data_file, tmp_path, stop_at):
    whole = train_run(config(data_file), str(tmp_path / "whole"))
    part = train_run(config(data_file), str(tmp_path / "part"), stop_after=stop_at)
    assert not part.summary["finished"] and part.summary["epochs"] == stop_at
    assert not (tmp_path / "part" / "model.pt").exists()
    resumed = train_run(config(data_file), str(tmp_path / "part"), resume=True)
    assert resumed.summary["finished"] and resumed.summary["epochs"] == 8
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k  # bit-identical in float64 on CPU
    rows = lambda d: [json.loads(x) for x in open(d / "log.jsonl")]  # noqa: E731
    w, r = rows(tmp_path / "whole"), rows(tmp_path / "part")
    assert [x["epoch"] for x in r] == list(range(1, 9))
    assert [x["train_loss"] for x in w] == [x["train_loss"] for x in r]
    assert whole.summary["best_epoch"] == resumed.summary["best_epoch"]


def test_killed_after_checkpoint_drops_later_log_rows(data_file, tmp_path):
    """A run killed after epoch 4 (checkpoint at 3) restarts at 3 and rewrites epoch 4."""
    part = train_run(config(data_file), str(tmp_path / "k"), stop_after=4)
    # simulate the kill: the checkpoint of epoch 4 is lost, epoch 3's remains
    train_run(config(data_file), str(tmp_path / "ref"), stop_after=3)
    (tmp_path / "ref" / "checkpoint.pt").replace(tmp_path / "k" / "checkpoint.pt")
    assert len(open(tmp_path / "k" / "log.jsonl").readlines()) == 4
    resumed = train_run(config(data_file), str(tmp_path / "k"), resume=True)
    whole = train_run(config(data_file), str(tmp_path / "whole"))
    assert part.summary["epochs"] == 4
    assert len(open(tmp_path / "k" / "log.jsonl").readlines()) == 8
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_refuses_corrupt_checkpoint_and_changed_options(data_file, tmp_path):
    train_run(config(data_file), str(tmp_path / "c"), stop_after=3)
    with pytest.raises(RunError, match="cannot change `lr`"):
        train_run(config(data_file, lr=1e-2), str(tmp_path / "c"), resume=True)
    ck = tmp_path / "c" / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:200])
    with pytest.raises(RunError, match="corrupt"):
        train_run(config(data_file), str(tmp_path / "c"), resume=True)
    with pytest.raises(RunError, match="no checkpoint|not a run|no such run"):
        train_run(config(data_file), str(tmp_path / "nothing"), resume=True)
