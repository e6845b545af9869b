"""No command destroys an input or ends in a traceback: the table of known failures.

Each case runs `delan ARGV` in-process inside a fresh workspace (a data file, a CSV log, a trained
run, a text file) and checks the exit code, that stderr is one line (no traceback, no numpy
reprs) holding the expected text, that every file present before has the same bytes after, and
that a refused command leaves no new file behind.
"""

import csv
import hashlib
import os
import shutil

import h5py
import numpy as np
import pytest

from delan.cli import main


@pytest.fixture(scope="module")
def made(tmp_path_factory, character_data):
    """A small data file and a run trained on it (two letters, one held out)."""
    d = tmp_path_factory.mktemp("made")
    data = character_data(2)
    run = str(d / "run")
    assert (
        main(["train", data, "-o", run, "--test", "a", "--epochs", "1", "--width", "8", "--depth", "1", "--quiet"]) == 0
    )
    return data, run


def _write_log(path, data, sep=",", bom=False, decimal=".", scale_tau=1.0):
    from delan.data import load_dataset

    tr = load_dataset(data)["a"]
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.writer(f, delimiter=sep)
        w.writerow(["t", "q0", "q1", "tau0", "tau1"])
        for i in range(len(tr)):
            row = [tr.t[i], *tr.q[i], *(tr.tau[i] * scale_tau)]
            w.writerow([repr(float(x)).replace(".", decimal) for x in row])


@pytest.fixture
def ws(made, tmp_path):
    """Paths of the workspace, by name (used as {name} in the argv of a case)."""
    data, run = made
    p = {
        "tmp": str(tmp_path),
        "data": str(tmp_path / "data.h5"),
        "run": str(tmp_path / "run"),
        "log": str(tmp_path / "log.csv"),
        "notes": str(tmp_path / "notes.txt"),
    }
    shutil.copy(data, p["data"])
    shutil.copytree(run, p["run"])
    _write_log(p["log"], data)
    with open(p["notes"], "w") as f:
        f.write("my notes\n")
    os.symlink(p["log"], str(tmp_path / "link.csv"))
    p["link"] = str(tmp_path / "link.csv")
    _write_log(str(tmp_path / "bom.csv"), data, bom=True)
    _write_log(str(tmp_path / "semicolon.csv"), data, sep=";", decimal=",")
    _write_log(str(tmp_path / "tabs.csv"), data, sep="\t")
    _write_log(str(tmp_path / "big_tau.csv"), data, scale_tau=1e300)
    # a log without a time column, for --rate
    with open(tmp_path / "no_t.csv", "w") as f:
        f.write("q0,q1,tau0,tau1\n" + "".join(f"{0.01 * i},{0.02 * i},{i},{-i}\n" for i in range(60)))
    # data files with complex q, and with |tau| beyond the plausible range
    for name, field, change in (
        ("complex", "q", lambda a: a * (1 + 1j)),
        ("big", "tau", lambda a: a * 1e300),
        ("ints", "q", lambda a: np.round(a).astype(np.int64)),
    ):
        path = str(tmp_path / f"{name}.h5")
        shutil.copy(data, path)
        with h5py.File(path, "a") as f:
            for g in f["trajectories"].values():
                a = g[field][()]
                del g[field]
                g.create_dataset(field, data=change(a))
        p[name] = path
    with open(tmp_path / "corrupt.h5", "wb") as f:
        f.write(open(data, "rb").read()[:3000])
    p["corrupt"] = str(tmp_path / "corrupt.h5")
    for name in ("bom", "semicolon", "tabs", "big_tau", "no_t"):
        p[name] = str(tmp_path / f"{name}.csv")
    return p


def _snapshot(root):
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            path = os.path.join(folder, f)
            if os.path.islink(path):
                continue
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


# (case, argv with {name} placeholders, exit code, text in the one stderr line (or stdout for exit 0))
CASES = [
    # inputs destroyed before
    ("import onto its own log", "data import {log} -o {log}", 2, "is the log being imported; writing it would destroy"),
    ("import onto a link to its log", "data import {log} -o {link}", 2, "writing it would destroy the input"),
    (
        "evaluate --json onto the data file",
        "evaluate {run} {data} --test a --json {data}",
        2,
        "writing it would destroy the input",
    ),
    (
        "evaluate --json onto a run file",
        "evaluate {run} {data} --test a --json {run}/config.json",
        2,
        "is the file config.json of the run directory",
    ),
    (
        "simulate --json onto the model",
        "simulate {run} --system two-link --json {run}/model.pt",
        2,
        "is the file model.pt of the run directory",
    ),
    ("generate onto a CSV log", "generate pendulum -o {log} --trajectories 1", 2, "is not a DeLaN data file"),
    ("import onto a text file", "data import {log} -o {notes}", 2, "is not a DeLaN data file"),
    ("evaluate --json onto a text file", "evaluate {run} {data} --test a --json {notes}", 2, "is not a JSON document"),
    # tracebacks before
    (
        "--json into a missing folder",
        "evaluate {run} {data} --test a --json {tmp}/missing/m.json",
        2,
        "folder {tmp}/missing does not exist",
    ),
    ("--plots onto an existing file", "evaluate {run} {data} --test a --plots {data}", 2, "exists and is not a folder"),
    ("--json onto a folder", "evaluate {run} {data} --test a --json {tmp}", 2, "is a folder; give a file name"),
    ("simulate --plots onto a file", "simulate {run} --system two-link --plots {log}", 2, "is not a folder"),
    (
        "simulate --plots into a missing folder",
        "simulate {run} --system two-link --plots {tmp}/a/b",
        2,
        "does not exist",
    ),
    ("import tau of 1e300", "data import {big_tau} -o {tmp}/out.h5", 2, "beyond the plausible range |tau| <= 1e+06"),
    ("train on tau of 1e300", "train {big} -o {tmp}/r --epochs 1", 2, "beyond the plausible range |tau| <= 1e+06"),
    (
        "train --width 1000000",
        "train {data} -o {tmp}/r --width 1000000 --epochs 1",
        2,
        "a model of --width 1000000, --depth 2",
    ),
    ("generate --rate 1e9", "generate two-link -o {tmp}/g.h5 --rate 1e9", 2, "rate (--rate) 1e+09 Hz"),
    (
        "generate --seed -1",
        "generate two-link -o {tmp}/g.h5 --seed -1",
        2,
        "seed must be a non-negative integer (--seed), got -1",
    ),
    ("generate n-link --n-dof 0", "generate n-link -o {tmp}/g.h5 --n-dof 0", 2, "(--n-dof), got 0"),
    (
        "simulate 1e8 steps of 1e-9 s",
        "simulate {run} --data {data} --trajectory a --steps 100000000 --dt 1e-9",
        2,
        "a rollout of 1e+08 steps (--steps 100000000) would need about",
    ),
    (
        "simulate --dt 1e-9 over a recording",
        "simulate {run} --data {data} --trajectory a --dt 1e-9",
        2,
        "(--dt 1e-09 s: 999999999 steps) would need about",
    ),
    # accepted what it should refuse
    ("complex q in a file", "data info {complex}", 2, "field 'q': expected real floating-point numbers"),
    ("integer q in a file", "data info {ints}", 2, "got integers (dtype int64)"),
    ("import --rate nan", "data import {no_t} -o {tmp}/o.h5 --rate nan", 2, "--rate is NaN"),
    ("generate --rate nan", "generate two-link -o {tmp}/g.h5 --rate nan", 2, "--rate is NaN"),
    ("simulate --q0 nan", "simulate {run} --system two-link --q0 nan,0", 2, "--q0: item 1 is NaN"),
    (
        "simulate --q0 with --data",
        "simulate {run} --data {data} --trajectory a --q0 1,1",
        2,
        "--q0 applies to --system only",
    ),
    ("train --lr nan", "train {data} -o {tmp}/r --lr nan --epochs 1", 2, "--lr is NaN"),
    ("UTF-8 BOM CSV", "data import {bom} -o {tmp}/bom.h5", 0, "wrote"),
    ("semicolon CSV with decimal commas", "data import {semicolon} -o {tmp}/semi.h5", 0, "wrote"),
    ("tab separated CSV", "data import {tabs} -o {tmp}/tabs.h5", 0, "wrote"),
    ("info flags implausible values", "data info {big}", 0, "warning: trajectory 'a': field 'tau'"),
    ("import large values when forced", "data import {big_tau} -o {tmp}/forced.h5 --allow-large-values", 0, "wrote"),
    # wording
    (
        "window not above polyorder",
        "data import {log} -o {tmp}/o.h5 --window 3 --polyorder 3",
        2,
        "--window 3 must be larger than --polyorder 3",
    ),
    ("even window", "data import {log} -o {tmp}/o.h5 --window 4", 2, "--window must be a positive odd number"),
    ("corrupt HDF5", "data info {corrupt}", 2, "not a readable HDF5 file (truncated or corrupt?)"),
    ("simulate --dt nan", "simulate {run} --system two-link --dt nan", 2, "--dt is NaN"),
    # the rules still allow the ordinary things
    (
        "evaluate writes json and plots",
        "evaluate {run} {data} --test a --json {tmp}/m.json --plots {tmp}/figs --no-rollouts",
        0,
        "metrics written to",
    ),
    ("import replaces a data file", "data import {log} -o {big}", 0, "wrote"),
]


@pytest.mark.parametrize("case,argv,code,text", CASES, ids=[c[0] for c in CASES])
def test_case(case, argv, code, text, ws, capsys):
    before = _snapshot(ws["tmp"])
    got = main(argv.format(**ws).split())
    out, err = capsys.readouterr()
    after = _snapshot(ws["tmp"])
    if os.environ.get("DELAN_CASE_TABLE"):  # print the table row: case, exit code, first stderr line, new files
        import sys

        first = (err.strip().splitlines() or [""])[0].replace(ws["tmp"] + "/", "").replace(ws["tmp"], "TMP")
        new = sorted(set(after) - set(before))
        print(f"| {case} | {got} | {first} | {', '.join(new) if new else 'none'} |", file=sys.__stderr__)
    assert got == code, (got, err)
    assert "Traceback" not in err and "np.float" not in err + out
    expected = text.format(**ws)
    if code == 0:
        assert err == "" or "warning" in err, err
        assert expected in out, out
    else:
        assert len(err.strip().splitlines()) == 1, err
        assert expected in err, err
        assert set(after) == set(before), sorted(set(after) ^ set(before))  # a refusal leaves nothing
    changed = [f for f in before if f in after and before[f] != after[f]]
    # only a declared output may change: an existing data file replaced on purpose
    allowed = {os.path.relpath(ws["big"], ws["tmp"])} if case == "import replaces a data file" else set()
    assert set(changed) <= allowed, changed


def test_json_replaced_only_when_json(ws, capsys):
    """An earlier --json result is replaced; the data file given as DATA never is."""
    js = os.path.join(ws["tmp"], "m.json")
    argv = ["evaluate", ws["run"], ws["data"], "--test", "a", "--json", js, "--no-rollouts"]
    assert main(argv) == 0
    first = open(js).read()
    assert main(argv) == 0
    assert open(js).read() == first
    capsys.readouterr()


def test_internal_error_is_one_line(monkeypatch, capsys, ws):
    """Anything not a DelanError: one line naming the type, exit 1; --debug adds the traceback."""
    import delan.cli.data as data_cli

    def boom(args):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(data_cli, "run_info", boom)
    assert main(["data", "info", ws["data"]]) == 1
    err = capsys.readouterr().err
    assert err == (
        "delan data: internal error: RuntimeError: something broke; second line (run with --debug for the traceback)\n"
    )
    assert main(["--debug", "data", "info", ws["data"]]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("delan data: internal error")
    assert main(["data", "info", ws["data"], "--debug"]) == 1  # also after the command
    assert "Traceback" in capsys.readouterr().err


def test_model_input_errors_are_user_errors(monkeypatch, capsys, ws):
    """IndefiniteMassMatrixError and NoDecompositionError are not DelanErrors, but input errors: exit 2."""
    import delan.cli.data as data_cli
    from delan.models import IndefiniteMassMatrixError, NoDecompositionError

    for exc in (
        IndefiniteMassMatrixError("H is not positive definite at sample 3"),
        NoDecompositionError("the mlp has no mass matrix"),
    ):
        monkeypatch.setattr(data_cli, "run_info", lambda args, exc=exc: (_ for _ in ()).throw(exc))
        assert main(["data", "info", ws["data"]]) == 2
        err = capsys.readouterr().err
        assert err.startswith("delan data: error: ") and err.count("\n") == 1


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"delan {version('delan')}"


def _all_help(capsys):
    """--help text of every command and sub-command: {name: text}."""
    from delan.cli import build_parser

    parser = build_parser()
    texts = {}
    names = [a for a in parser._subparsers._group_actions[0].choices]  # noqa: SLF001
    for name in names:
        argvs = [[name]] + ([[name, "import"], [name, "info"]] if name == "data" else [])
        for argv in argvs:
            with pytest.raises(SystemExit):
                main(argv + ["--help"])
            texts[" ".join(argv)] = capsys.readouterr().out
    return texts


def test_help_texts_complete(capsys):
    import re

    for name, text in _all_help(capsys).items():
        usage, _, rest = text.partition("\n\n")
        description = rest.split("\n\n")[0]
        assert not description.startswith(("positional arguments", "options")), f"{name}: no description"
        joined = re.sub(r"\s+", " ", text)
        for option_help in re.split(r" (?=-{1,2}[a-z])", joined):
            assert option_help.count("(default") <= 1, f"{name}: {option_help}"
        # every option has help text: an option line is never alone without words after it
        for line in text.splitlines():
            m = re.match(r"^  (-{1,2}[\w-]+)(?: [A-Z_.|,{}\w-]+)?(?:, -{1,2}[\w-]+(?: [A-Z_.|,{}\w-]+)?)?$", line)
            if m:
                nxt = text.splitlines()[text.splitlines().index(line) + 1]
                assert nxt.startswith(" " * 8) and nxt.strip(), f"{name}: {line!r} has no help"


def test_rollout_error_axis_is_labelled(monkeypatch):
    """The rollout figure's error panel mixes rad and rad/s: the axis and both curves say so."""
    from delan import plotting

    captured = {}
    monkeypatch.setattr(plotting, "_save", lambda fig, path: captured.setdefault("fig", fig) and path)
    t = np.linspace(0, 1, 11)
    q = np.zeros((11, 2))
    plotting.plot_rollout(
        {
            "t": t,
            "q": q,
            "q_ref": q,
            "position_error": np.ones(11),
            "velocity_error": np.ones(11),
            "threshold": 0.1,
            "valid_time": 1.0,
            "energy": t,
            "method": "rk4",
            "dt": 0.1,
        },
        "x.png",
    )
    ax = captured["fig"].axes[1]
    assert "rad/s" in ax.get_ylabel() and "rad" in ax.get_ylabel()
    labels = [line.get_label() for line in ax.get_lines()]
    assert any("[rad" in x and "rad/s" not in x for x in labels) and any("rad/s" in x for x in labels)


def test_memory_limit_from_the_environment(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DELAN_MEMORY_LIMIT", "1M")
    assert main(["generate", "two-link", "-o", str(tmp_path / "g.h5")]) == 2
    err = capsys.readouterr().err
    assert "more than the limit of 1 MB (DELAN_MEMORY_LIMIT)" in err and os.listdir(tmp_path) == []
    monkeypatch.setenv("DELAN_MEMORY_LIMIT", "lots")
    assert main(["generate", "two-link", "-o", str(tmp_path / "g.h5")]) == 2
    assert "DELAN_MEMORY_LIMIT='lots'" in capsys.readouterr().err
