"""`delan demo` with a tiny time budget: the whole loop writes its figures."""

import json
import os

from delan.cli import main


def test_demo_fast(tmp_path, capsys):
    out = str(tmp_path / "demo")
    assert main(["demo", "--output", out, "--time-budget", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    for f in (
        "metrics.json",
        "rollout.json",
        "figures/decomposition.png",
        "figures/training.png",
        "figures/rollout.png",
        "run/model.pt",
    ):
        assert os.path.exists(os.path.join(out, f)), f
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["test"] == ["a", "e", "m", "s"] and "gravity_mse" in m
    assert out in text
    # a second demo into the same folder is refused rather than overwriting
    assert main(["demo", "--output", out, "--time-budget", "1"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["demo", "--output", out, "--time-budget", "-1"]) == 2
