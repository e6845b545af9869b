"""Data files written in pieces (delan.data.chunked) equal the ones written whole."""

import numpy as np
import pytest

from delan.data import load_dataset, save_dataset
from delan.data.chunked import generate_to_file
from delan.data.generate import generate_dataset
from delan.fingerprint import data_fingerprint


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_generated_in_pieces_equals_whole(tmp_path, noise):
    kw = dict(kind="fourier", n_trajectories=3, duration=1.0, rate=50.0, noise=noise, n_dof=3, seed=4)
    whole, pieces = str(tmp_path / "whole.h5"), str(tmp_path / "pieces.h5")
    save_dataset(generate_dataset("n-link", **kw), whole)
    info = generate_to_file(pieces, "n-link", piece=7, **kw)  # 51 samples: 7 full pieces and a short one
    assert info["samples"] == 3 * 51
    a, b = load_dataset(whole), load_dataset(pieces)
    assert a.names == b.names and a.attrs == b.attrs and a.joint_types == b.joint_types
    for x, y in zip(a, b):
        for k, v in x.fields().items():
            if noise:  # the RMS is summed in pieces: equal up to its last bit
                np.testing.assert_allclose(y.fields()[k], v, rtol=1e-13, atol=1e-15)
            else:
                np.testing.assert_array_equal(y.fields()[k], v)
    if not noise:
        assert data_fingerprint(whole) == data_fingerprint(pieces)


def test_bad_piece_size(tmp_path):
    from delan.errors import DataError

    with pytest.raises(DataError, match="--piece-samples"):
        generate_to_file(str(tmp_path / "x.h5"), "pendulum", piece=0)


def test_piece_writing_checks_the_disk_not_the_memory(tmp_path, monkeypatch, capsys):
    from delan.cli import main

    monkeypatch.setenv("DELAN_MEMORY_LIMIT", "1M")  # a whole-array file of this size is refused ...
    out = str(tmp_path / "p.h5")
    assert main(["generate", "pendulum", "--duration", "60", "--piece-samples", "1000", "-o", out]) == 0
    assert "in pieces of 1000 samples" in capsys.readouterr().out  # ... in pieces it is written
    assert main(["generate", "pendulum", "--rate", "1e9", "--piece-samples", "1000", "-o", out]) == 2
    assert "more than its" in capsys.readouterr().err  # but not one larger than the free disk space
