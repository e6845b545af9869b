"""delan export: every format x model kind reproduces the model, loaded WITHOUT delan's code.

Artefacts are loaded by the formats' own loaders only (torch.jit.load, torch.export.load,
onnxruntime.InferenceSession) and compared with the model's plain torch methods on random states
other than the ones the export checked itself: float32 to 1e-6 and float64 to 1e-12, relative to
the size of the torques (see delan.export.relative_errors), at a batch of 50 and at one state.
The float64 torques are also checked against the autograd reference (delan.reference).

ONNX and torch.export exports take seconds each (the exporters, not the model), so every artefact
is made once per module, and float64 ONNX / torch.export files only for the structured model.
"""

import copy
import json
import math
import os
import zipfile

import numpy as np
import pytest
import torch

from delan.errors import ExportError
from delan.export import (
    INPUTS,
    OUTPUTS,
    export_model,
    read_metadata,
    reference_outputs,
    relative_errors,
    solve_spd_unrolled,
)
from delan.models import BlackBoxLagrangianNetwork, DeepLagrangianNetwork, FeedForwardModel

SUFFIX = {"torchscript": ".pt", "onnx": ".onnx", "exported": ".pt2"}
TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


def _models():
    """Small models of every kind with what training may switch on: revolute joints (sin/cos
    features), learned friction, output scales; the black-box regularised so that H + r I is
    positive definite and its accelerations are finite (the NaN case is tested on its own)."""
    torch.manual_seed(0)
    out = {
        "structured": DeepLagrangianNetwork(
            2, width=8, depth=1, revolute=[True, False], friction=True, mass_scale=[2.0, 0.5], potential_scale=3.0
        ),
        "black-box": BlackBoxLagrangianNetwork(
            2, width=8, depth=1, revolute=[True, False], friction=True, regularisation=10.0
        ),
        "mlp": FeedForwardModel(2, width=8, depth=1, revolute=[True, False]),
    }
    with torch.no_grad():  # friction and biases away from their initial values
        for m in out.values():
            for p in m.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return {k: m.eval() for k, m in out.items()}


MODELS = _models()


def _states(model, batch, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    n = model.n_dof
    q = (torch.rand(batch, n, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    qd, qdd, tau = (2 * torch.randn(batch, n, generator=g, dtype=torch.float64) for _ in range(3))
    xs = tuple(x.to(dtype) for x in (q, qd, qdd, tau))
    return xs[:3] if isinstance(model, FeedForwardModel) else xs


def _load(path, fmt):
    """The artefact's entry point through its format's own loader (no delan code)."""
    if fmt == "torchscript":
        module = torch.jit.load(path)
        return lambda *x: module(*x)
    if fmt == "exported":
        module = torch.export.load(path).module()
        return lambda *x: module(*x)
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'delan[export]')")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda *x: tuple(torch.from_numpy(y) for y in session.run(None, {k: v.numpy() for k, v in zip(names, x)}))


def _as_tuple(y):
    return (y,) if isinstance(y, torch.Tensor) else tuple(y)


_MADE = {}


def _exported(tmp_path_factory, kind, fmt, dtype):
    """Export once per (kind, format, dtype) for the whole module."""
    key = (kind, fmt, dtype)
    if key not in _MADE:
        if fmt == "onnx":
            pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnx and onnxscript (delan[export])")
        model = copy.deepcopy(MODELS[kind]).to(dtype)
        path = str(tmp_path_factory.mktemp("export") / f"{kind}{SUFFIX[fmt]}")
        info = export_model(model, path, fmt)
        _MADE[key] = (model, path, info)
    return _MADE[key]


# every format x kind in float32; float64 for every kind in TorchScript (cheap to make) and for the
# structured model in the other two (each export there takes seconds)
CASES = (
    [(k, f, torch.float32) for f in ("torchscript", "exported", "onnx") for k in MODELS]
    + [(k, "torchscript", torch.float64) for k in MODELS]
    + [("structured", f, torch.float64) for f in ("exported", "onnx")]
)


@pytest.mark.parametrize("kind,fmt,dtype", CASES, ids=[f"{k}-{f}-{str(d)[6:]}" for k, f, d in CASES])
def test_artefact_reproduces_the_model(tmp_path_factory, kind, fmt, dtype):
    model, path, info = _exported(tmp_path_factory, kind, fmt, dtype)
    run = _load(path, fmt)
    states = _states(model, 50, seed=7, dtype=dtype)
    got = _as_tuple(run(*states))
    assert all(y.dtype == dtype for y in got)
    errors = relative_errors(model, states, got)
    assert errors and max(errors.values()) <= TOL[dtype], errors
    # one state per call (B = 1), the first five compared together (one state's own torque can be
    # near zero, which would make any scale-relative measure meaningless)
    singles = [_as_tuple(run(*(x[i : i + 1] for x in states))) for i in range(5)]
    errors = relative_errors(model, tuple(x[:5] for x in states), [torch.cat(ys) for ys in zip(*singles)])
    assert max(errors.values()) <= TOL[dtype], errors
    # the export's own check ran and agrees
    assert info["verified_states"] == 64 and max(info["max_relative_error"].values()) <= TOL[dtype]
    assert info["outputs"] == (["torque"] if kind == "mlp" else list(OUTPUTS))
    assert read_metadata(path)["model"] == kind and read_metadata(path)["dtype"] == str(dtype)[6:]


def test_float64_torque_matches_autograd(tmp_path_factory):
    """The exported torque is the Euler-Lagrange torque of the model's energies, as autograd
    computes it from the mass matrix and potential (or the Lagrangian) alone."""
    from delan.reference import model_inverse_dynamics

    for kind, fmt in (("structured", "torchscript"), ("black-box", "torchscript"), ("structured", "exported")):
        model, path, _ = _exported(tmp_path_factory, kind, fmt, torch.float64)
        q, qd, qdd, tau = _states(model, 20, seed=3, dtype=torch.float64)
        got = _as_tuple(_load(path, fmt)(q, qd, qdd, tau))[0]
        want = model_inverse_dynamics(model, q, qd, qdd).detach()
        assert float((got - want).abs().max() / want.abs().max()) < 1e-12, (kind, fmt)


def test_onnx_names_and_dynamic_batch(tmp_path_factory):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'delan[export]')")
    for kind in ("structured", "mlp"):
        _, path, _ = _exported(tmp_path_factory, kind, "onnx", torch.float32)
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        ins, outs = s.get_inputs(), s.get_outputs()
        want_in, want_out = (INPUTS, OUTPUTS) if kind != "mlp" else (INPUTS[:3], ("torque",))
        assert [i.name for i in ins] == list(want_in) and [o.name for o in outs] == list(want_out)
        assert all(i.type == "tensor(float)" and isinstance(i.shape[0], str) and i.shape[1] == 2 for i in ins)
        # asking for one output gives the same numbers as asking for all
        x = {i.name: np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32) for i in ins}
        assert np.array_equal(s.run(["torque"], x)[0], s.run(None, x)[0])


def test_torchscript_methods(tmp_path_factory):
    """inverse_dynamics, forward_dynamics and terms of the TorchScript module, each against the model."""
    model, path, info = _exported(tmp_path_factory, "structured", "torchscript", torch.float64)
    assert set(info["methods"]) == {"inverse_dynamics", "forward_dynamics", "terms"}
    m = torch.jit.load(path)
    q, qd, qdd, tau = _states(model, 30, seed=5, dtype=torch.float64)
    with torch.no_grad():
        torque, acc, H, c, g, f = reference_outputs(model, (q, qd, qdd, tau))
    assert torch.allclose(m.inverse_dynamics(q, qd, qdd), torque, rtol=0, atol=1e-12 * float(torque.abs().max()))
    assert torch.allclose(m.forward_dynamics(q, qd, tau), acc, rtol=1e-10, atol=1e-12)
    for got, want in zip(m.terms(q, qd), (H, c, g, f)):
        assert torch.allclose(got, want, rtol=0, atol=1e-12 * float(want.abs().max() + 1))
    mlp, mlp_path, mlp_info = _exported(tmp_path_factory, "mlp", "torchscript", torch.float64)
    assert set(mlp_info["methods"]) == {"inverse_dynamics"}
    x = _states(mlp, 5, seed=5, dtype=torch.float64)
    assert torch.equal(torch.jit.load(mlp_path).inverse_dynamics(*x), mlp.inverse_dynamics(*x).detach())


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_unrolled_solve(n):
    """The ONNX graph's Cholesky solve equals torch.linalg.solve, and marks exactly the samples
    whose matrix is not positive definite with NaN."""
    g = torch.Generator().manual_seed(n)
    A = torch.randn(6, n, n, generator=g, dtype=torch.float64)
    H = A @ A.transpose(-1, -2) + 0.1 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(6, n, generator=g, dtype=torch.float64)
    x = solve_spd_unrolled(H, b)
    want = torch.linalg.solve(H, b)
    assert float((x - want).abs().max() / want.abs().max()) < 1e-12
    H[2] = -H[2]  # negative definite
    H[4, -1, -1] = -1.0  # fails at the last pivot only
    x = solve_spd_unrolled(H, b)
    bad = torch.isnan(x).any(-1)
    assert bad.tolist() == [False, False, True, False, True, False] and torch.isnan(x[bad]).all()
    assert torch.allclose(x[~bad], want[~bad], rtol=1e-12, atol=0)


def test_indefinite_black_box_gives_nan_where_the_model_refuses(tmp_path):
    """A black-box Lagrangian that is not convex in qd somewhere: the artefact's acceleration is
    NaN exactly at the states where the model's forward_dynamics raises, finite elsewhere."""
    from delan.errors import IndefiniteMassMatrixError

    torch.manual_seed(0)
    model = BlackBoxLagrangianNetwork(2, width=8, depth=1).double().eval()
    q, qd, qdd, tau = _states(model, 40, seed=9, dtype=torch.float64)
    # a regularisation r that makes H + r I positive definite at about half of the states
    with torch.no_grad():
        lowest = torch.linalg.eigvalsh(model.terms(q, qd).H)[:, 0]
    r = float(-lowest.median())
    assert r > 0, "the test needs a Lagrangian that is not convex in qd"
    model = BlackBoxLagrangianNetwork(2, width=8, depth=1, regularisation=r).double().eval()
    torch.manual_seed(0)
    model.load_state_dict(BlackBoxLagrangianNetwork(2, width=8, depth=1).double().state_dict())
    path = str(tmp_path / "bb.pt")
    export_model(model, path, "torchscript")
    m = torch.jit.load(path)
    acc = m.forward_dynamics(q, qd, tau)
    refused = []
    for i in range(40):
        try:
            model.forward_dynamics(q[i : i + 1], qd[i : i + 1], tau[i : i + 1])
            refused.append(False)
        except IndefiniteMassMatrixError:
            refused.append(True)
    assert 0 < sum(refused) < 40, "the test needs both kinds of states"
    assert torch.isnan(acc).any(-1).tolist() == refused


def test_float_constants_stay_float64_in_onnx(tmp_path_factory):
    """The ONNX exporter would store 0.01 (friction smoothing) as a float32 constant: check the
    friction near the smoothing velocity, where tanh is not saturated and the error would show."""
    model, path, _ = _exported(tmp_path_factory, "structured", "onnx", torch.float64)
    run = _load(path, "onnx")
    q, qd, qdd, tau = _states(model, 8, seed=2, dtype=torch.float64)
    qd = qd * 0.01  # |qd / smoothing| ~ 1
    f = _as_tuple(run(q, qd, qdd, tau))[5]
    want = model.friction(q, qd).detach()
    assert float((f - want).abs().max() / want.abs().max()) < 1e-13


def test_export_leaves_the_model_and_the_process_intact(tmp_path):
    """Exporting does not change the model (dtype, parameters, gradients) nor poison caches that
    later eager calls use (torch.export used to leave fake tensors in ddn's index cache)."""
    import ddn.jet

    ddn.jet._DEVICE_CACHE.clear()
    ddn.jet._pair_indices_cpu.cache_clear()
    torch.manual_seed(1)
    model = BlackBoxLagrangianNetwork(2, width=8, depth=1, revolute=[True, False])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _states(model, 3, seed=0, dtype=torch.float32)
    export_model(model, str(tmp_path / "m.pt2"), "exported", dtype="float64")
    tau = model.inverse_dynamics(*x[:3])
    assert type(tau) is torch.Tensor and torch.isfinite(tau).all()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad and p.dtype == torch.float32 for p in model.parameters())


def test_a_bad_artefact_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    """The check after writing catches an artefact that does not reproduce the model."""
    import delan.export as ex

    other = DeepLagrangianNetwork(2, width=8, depth=1).eval()
    writer = ex._WRITERS["torchscript"]
    monkeypatch.setitem(ex._WRITERS, "torchscript", lambda m, path, meta: writer(other, path, meta))
    target = tmp_path / "m.pt"
    with pytest.raises(ExportError, match="does not reproduce the model"):
        export_model(MODELS["structured"], str(target), "torchscript")
    assert os.listdir(tmp_path) == []


def test_refusals(tmp_path, monkeypatch):
    import delan.export as ex
    from delan.models import BlackBoxHamiltonianNetwork

    with pytest.raises(ExportError, match="Newton's method"):
        export_model(BlackBoxHamiltonianNetwork(2, width=8, depth=1), str(tmp_path / "h.pt"), "torchscript")
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export_model(MODELS["mlp"], str(tmp_path / "m"), "tflite")
    with pytest.raises(ExportError, match="float32 or float64"):
        export_model(MODELS["mlp"], str(tmp_path / "m.pt"), "torchscript", dtype="float16")
    monkeypatch.setattr(ex, "_importable", lambda name: name not in ("onnx", "onnxscript"))
    with pytest.raises(ExportError, match=r"needs the packages onnx and onnxscript: pip install 'delan\[export\]'"):
        export_model(MODELS["mlp"], str(tmp_path / "m.onnx"), "onnx")
    assert os.listdir(tmp_path) == []


def test_read_metadata_tells_artefacts_from_other_files(tmp_path, tmp_path_factory):
    for fmt in ("torchscript", "exported", "onnx"):
        _, path, _ = _exported(tmp_path_factory, "mlp", fmt, torch.float32)
        meta = read_metadata(path)
        assert meta["artefact"] == fmt and meta["inputs"] == ["q", "qd", "qdd"] and meta["n_dof"] == 2
    text = tmp_path / "notes.txt"
    text.write_text("delan_export " + json.dumps({"format": "delan-export"}))
    other_zip = tmp_path / "other.pt"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("x/extra/other.json", "{}")
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(plain))
    assert read_metadata(str(other_zip)) is None and read_metadata(str(plain)) is None
    assert read_metadata(str(tmp_path / "missing")) is None
    onnx = pytest.importorskip("onnx")
    assert read_metadata(str(text)) is None  # not an ONNX model, whatever it mentions
    foreign = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])],
            "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
    )
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    assert read_metadata(str(tmp_path / "foreign.onnx")) is None


# --------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def runs(tmp_path_factory, character_data):
    """A trained structured run with friction and output scales, and an mlp run."""
    from delan.cli import main

    d = tmp_path_factory.mktemp("runs")
    data = character_data(2)
    out = {}
    for kind, extra in (("structured", ["--friction", "--output-scales"]), ("mlp", [])):
        out[kind] = str(d / kind)
        assert (
            main(
                [
                    "train",
                    data,
                    "-o",
                    out[kind],
                    "--model",
                    kind,
                    "--epochs",
                    "1",
                    "--width",
                    "8",
                    "--depth",
                    "1",
                    "--quiet",
                    *extra,
                ]
            )
            == 0
        )
    return out


def test_cli_export(runs, tmp_path, capsys):
    from delan.cli import main

    out = str(tmp_path / "model.pt")
    assert main(["export", runs["structured"], "-o", out]) == 0  # format from the extension
    text = capsys.readouterr().out
    assert "as torchscript" in text and "forward(q, qd, qdd, tau)" in text and "mass_matrix (B, 2, 2)" in text
    assert "methods: inverse_dynamics(q, qd, qdd), forward_dynamics(q, qd, tau), terms(q, qd)" in text
    assert "checked against the model on 64 random states" in text
    meta = read_metadata(out)
    assert meta["model"] == "structured" and meta["friction"] is True and meta["revolute"] == [True, True]
    # the trained model, not a fresh one: the artefact's torque is the run's
    from delan.training import load_run

    _, model = load_run(runs["structured"])
    x = _states(model, 10, seed=1, dtype=torch.float32)
    assert max(relative_errors(model, x, torch.jit.load(out)(*x)).values()) <= 1e-6
    # an earlier export is replaced
    assert main(["export", runs["mlp"], "-o", out, "--format", "torchscript", "--dtype", "float64"]) == 0
    text = capsys.readouterr().out
    assert "inverse dynamics only" in text and "-> torque (B, 2)" in text
    assert read_metadata(out)["model"] == "mlp" and read_metadata(out)["dtype"] == "float64"


def test_cli_export_refusals(runs, tmp_path, cli_fails):
    run = runs["structured"]
    model_file = os.path.join(run, "model.pt")
    before = open(model_file, "rb").read()
    cli_fails(["export", run, "-o", model_file], "is the file model.pt of the run directory")
    assert open(model_file, "rb").read() == before
    cli_fails(["export", str(tmp_path / "nope"), "-o", str(tmp_path / "m.pt")], "nope")
    cli_fails(["export", run, "-o", str(tmp_path / "m.xyz")], "give --format")
    cli_fails(["export", run, "-o", str(tmp_path / "no" / "m.pt")], "does not exist")
    notes = tmp_path / "notes.pt"
    notes.write_text("my notes\n")
    cli_fails(["export", run, "-o", str(notes)], "is not an artefact of delan export; not replacing it")
    assert notes.read_text() == "my notes\n"
    assert sorted(os.listdir(tmp_path)) == ["notes.pt"]


def test_cli_bad_format(runs, tmp_path, capsys):
    from delan.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["export", runs["structured"], "-o", str(tmp_path / "m.pt"), "--format", "tflite"])
    assert exc.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
