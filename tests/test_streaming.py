"""Streaming training data from a file (delan.data.streaming) and `--max-memory`."""

from collections import Counter

import numpy as np
import pytest
import torch

from delan.data import load_dataset
from delan.data.streaming import StreamingSource, index_file, shard, training_segments
from delan.training import split_samples, validation_blocks


@pytest.fixture
def setup(character_data):
    path = character_data(4)  # 4 letters x 51 samples
    idx = index_file(path)
    test = [idx.names[0]]
    lengths = {k: v for k, v in idx.lengths.items() if k not in test}
    blocks = validation_blocks(lengths, 0.2, seed=3)
    return path, idx, test, lengths, blocks


def _source(path, lengths, blocks, **kw):
    kw = dict(dict(batch_size=16, dtype=torch.float64, chunk=7, window=3), **kw)
    return StreamingSource(path, training_segments(lengths, [], blocks), **kw)


def test_every_training_sample_once_per_epoch_and_none_held_out(setup):
    path, idx, test, lengths, blocks = setup
    src = _source(path, lengths, blocks)
    order = src.order(seed=11)
    counts = Counter(order)
    assert max(counts.values()) == 1
    expected = {(n, s) for n, T in lengths.items() for s in range(T) if not (blocks[n][0] <= s < blocks[n][1])}
    assert set(order) == expected
    assert not any(n in test for n, _ in order)
    # the batches hold exactly those samples: compare the q rows against the file
    ds = load_dataset(path)
    want = np.stack([ds[n].q[s] for n, s in order])
    got = torch.cat([b["q"] for _, b in src.batches(11)]).numpy()
    np.testing.assert_array_equal(got, want)
    # and, as a set, the in-memory training arrays
    train, _ = split_samples(ds.split(test)[1], [], blocks)
    key = lambda a: np.lexsort(a.T[::-1])  # noqa: E731
    np.testing.assert_array_equal(got[key(got)], train["q"][key(train["q"])])


def test_order_is_seeded_and_shuffled_across_chunks(setup):
    path, _, _, lengths, blocks = setup
    src = _source(path, lengths, blocks)
    assert src.order(5) == src.order(5)
    assert src.order(5) != src.order(6)
    a = torch.cat([b["tau"] for _, b in src.batches(5)])
    b = torch.cat([b["tau"] for _, b in _source(path, lengths, blocks, prefetch=False).batches(5)])
    assert torch.equal(a, b)  # the prefetch thread changes nothing


def test_batches_full_but_last_and_resume_from_inside_an_epoch(setup):
    path, _, _, lengths, blocks = setup
    src = _source(path, lengths, blocks)
    got = list(src.batches(7))
    sizes = [b["q"].shape[0] for _, b in got]
    assert all(s == 16 for s in sizes[:-1]) and sum(sizes) == src.n_samples
    assert [p for p, _ in got] == list(range(0, src.n_samples, 16))
    later = list(src.batches(7, start=48))
    assert [p for p, _ in later] == [p for p, _ in got if p >= 48]
    for (_, x), (_, y) in zip(later, [g for g in got if g[0] >= 48]):
        assert torch.equal(x["qdd"], y["qdd"])


def test_shard_splits_a_global_batch():
    b = {"q": torch.arange(10.0)[:, None], "step": 3}
    parts = [shard(b, r, 3) for r in range(3)]
    assert torch.equal(torch.cat([p["q"] for p in parts]), b["q"])
    assert [p["q"].shape[0] for p in parts] == [3, 3, 4] and parts[0]["step"] == 3


def test_missing_derivatives_are_refused(tmp_path):
    import h5py

    from delan.errors import DataError

    p = tmp_path / "noderiv.h5"
    t = np.arange(20) / 10.0
    with h5py.File(p, "w") as f:
        f.attrs.update(format="delan-trajectories", version=1, n_dof=1)
        g = f.create_group("trajectories/a")
        g["t"], g["q"], g["tau"] = t, np.sin(t)[:, None], np.zeros((20, 1))
    with pytest.raises(DataError, match="field 'qd' is not stored"):
        StreamingSource(str(p), training_segments({"a": 20}, [], {}), 4)


def _train(data, run_dir, **kw):
    from delan.training import TrainConfig, train_run

    cfg = dict(
        dict(
            data=data,
            epochs=12,
            width=16,
            batch_size=32,
            test=["a"],
            validation=0.2,
            seed=2,
            quiet=True,
            checkpoint_every=1,
        ),
        **kw,
    )
    stop = cfg.pop("stop_after", None)
    resume = cfg.pop("resume", False)
    return train_run(TrainConfig(**cfg), run_dir, resume=resume, stop_after=stop, progress=False)


def test_streamed_training_holds_out_the_same_data_and_learns_alike(character_data, tmp_path):
    data = character_data(4)
    mem = _train(data, str(tmp_path / "mem"))
    st = _train(data, str(tmp_path / "st"), max_memory=1e-5)  # 10 kB: the file (about 70 kB) is streamed
    assert mem.summary["data_mode"]["mode"] == "in memory" and st.summary["data_mode"]["mode"] == "streaming"
    for k in ("validation", "n_train_samples", "n_validation_samples", "train_trajectories", "test_trajectories"):
        assert st.summary[k] == mem.summary[k], k
    assert st.summary["friction"] == mem.summary["friction"]  # small data: the same statistics
    first = [mem.history[0]["val_loss"], st.history[0]["val_loss"]]
    last = [mem.history[-1]["val_loss"], st.history[-1]["val_loss"]]
    assert last[0] < 0.5 * first[0] and last[1] < 0.5 * first[1]  # both learn ...
    assert 0.33 < last[1] / last[0] < 3.0  # ... to a similar loss (another order, not the same weights)


def test_streamed_run_resumes_bit_for_bit(character_data, tmp_path):
    data = character_data(4)
    whole = _train(data, str(tmp_path / "whole"), epochs=4, max_memory=1e-5)
    _train(data, str(tmp_path / "paused"), epochs=4, max_memory=1e-5, stop_after=2)
    # the stored decision holds on resume, whatever the budget now
    again = _train(data, str(tmp_path / "paused"), epochs=4, resume=True)
    assert again.summary["data_mode"]["mode"] == "streaming"
    for k, v in whole.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[k], v), k


def test_cli_max_memory_streams_and_says_so(character_data, tmp_path, capsys, cli_fails):
    from delan.cli import main

    data = character_data(4)
    assert main(["train", data, "-o", str(tmp_path / "r"), "--epochs", "2", "--max-memory", "1e-5"]) == 0
    out = capsys.readouterr().out
    assert "data: streaming from the file (loading it whole would take about" in out
    cli_fails(
        ["train", data, "-o", str(tmp_path / "bad"), "--max-memory", "-1"],
        "--max-memory must be a positive number of GB",
    )
