import os

import pytest
import torch

# Tests are about exactness, not speed: one thread keeps them predictable on shared CI cores.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def character_data(tmp_path_factory):
    """``make(n)``: path of a small two-link character data file (n letters, 1 s at 50 Hz),
    made once per session for the trainer and CLI tests."""
    made = {}

    def make(n_trajectories: int) -> str:
        if n_trajectories not in made:
            from delan.data import save_dataset
            from delan.data.generate import generate_dataset

            path = str(tmp_path_factory.mktemp("data") / f"chars{n_trajectories}.h5")
            ds = generate_dataset("two-link", kind="characters", n_trajectories=n_trajectories, duration=1.0, rate=50.0)
            save_dataset(ds, path)
            made[n_trajectories] = path
        return made[n_trajectories]

    return make


@pytest.fixture(scope="session")
def train_tiny():
    """``train(data, out, model, test, epochs, dtype=None)``: `delan train` of a width-16, depth-1
    ``model`` into the run directory ``out``, holding out ``test`` (comma-separated names);
    asserts it succeeds and returns ``out`` as a string."""

    def train(data, out, model: str, test: str, epochs: int, dtype=None) -> str:
        from delan.cli import main

        argv = ["train", data, "-o", str(out), "--test", test, "--model", model, "--epochs", str(epochs)]
        argv += ["--width", "16", "--depth", "1"] + (["--dtype", dtype] if dtype else []) + ["--quiet"]
        assert main(argv) == 0
        return str(out)

    return train


@pytest.fixture
def cli_fails(capsys):
    """``check(argv, pattern)``: `delan argv` exits non-zero with one stderr line containing
    ``pattern`` and no traceback; returns that line."""

    def check(argv, pattern):
        from delan.cli import main

        code = main(argv)
        err = capsys.readouterr().err
        assert code != 0
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert pattern in err, err
        return err

    return check


@pytest.fixture
def loss_hook(monkeypatch):
    """``loss_hook(hook)``: from then on the trainer calls ``hook()`` before every loss it computes
    (training steps run with gradients enabled, validation without); ``loss_hook(None)`` removes it."""
    import delan.training as training

    real = training.make_loss

    def install(hook):
        if hook is None:
            monkeypatch.setattr(training, "make_loss", real)
            return

        def make_loss(*args, **options):
            loss = real(*args, **options)

            def hooked(model, batch):
                hook()
                return loss(model, batch)

            return hooked

        monkeypatch.setattr(training, "make_loss", make_loss)

    return install
