"""Export a trained model for control loops outside Python: TorchScript, ONNX or torch.export.

One artefact holds inverse dynamics, forward dynamics and the terms of the equation of motion,
loadable without this package (libtorch ``torch::jit::load``, ONNX Runtime, ``torch.export.load``).

Inputs and outputs (every format; B is free, n = the model's joints, dtype fixed at export)::

    inputs   q, qd, qdd, tau                                   each (B, n)
    outputs  torque        tau = H qdd + c + g + f             (B, n)     inverse dynamics of (q, qd, qdd)
             acceleration  qdd = H^-1 (tau - c - g - f)        (B, n)     forward dynamics of (q, qd, tau)
             mass_matrix   H(q)                                (B, n, n)
             coriolis      c(q, qd)                            (B, n)
             gravity       g(q)                                (B, n)
             friction      f(qd) (zeros when not learned)      (B, n)

How several functions live in one artefact
------------------------------------------
* **The entry point is the same in every format**: ``forward(q, qd, qdd, tau)`` returns the tuple
  (torque, acceleration, mass_matrix, coriolis, gravity, friction) in that order. ONNX and
  ``torch.export`` have one entry point per file (an ONNX model is one graph; a saved
  ExportedProgram is one program), and one evaluation of the model's terms gives every output
  (H, c, g, f are shared: torque = H qdd + c + g + f, acceleration by a solve with the same H), so
  one graph with all outputs costs little more than inverse dynamics alone: the extra work is H
  itself and a Cholesky solve of an n x n matrix (benchmarks/export_latency.py measures it).
  Separate graphs or programs would mean several files, or network passes repeated per function.
  In ONNX the outputs are named as above, the inputs q, qd, qdd, tau.
* **TorchScript** also has one method per function, so a C++ loop calls only what it needs:
  ``inverse_dynamics(q, qd, qdd) -> tau`` (the model's own inverse-dynamics path, its cheapest),
  ``forward_dynamics(q, qd, tau) -> qdd`` and ``terms(q, qd) -> (H, c, g, f)``.
* **The mlp baseline** (``FeedForwardModel``) has no mass matrix, no terms and no forward
  dynamics: its artefact has inputs q, qd, qdd and the one output torque (``forward`` and, in
  TorchScript, ``inverse_dynamics``).

Forward dynamics solves with H (H + r I for the black-box model, as its ``forward_dynamics``) by
Cholesky. ONNX has no Cholesky operator, so the ONNX graph factorises column by column in
elementwise operations and small products (:func:`solve_spd_unrolled`; n is fixed at export);
TorchScript and torch.export use ``torch.linalg.cholesky_ex`` and ``cholesky_solve``. Where H is
not positive definite (a black-box Lagrangian that is not convex in qd there) the acceleration of
that sample is NaN in every format: a deployed artefact cannot raise per sample.

dtypes: float32 (default) and float64 in all three formats. ONNX Runtime has no float64
Softplus, so float64 ONNX graphs write softplus as max(x, 0) + log(1 + exp(-|x|)); and the ONNX
exporter stores Python float constants as float32 before casting them, so for float64 they are
stored as float64 here (see :func:`_onnx_float64_constants`).

The artefacts are built by tracing the model's plain torch calls (no fast path); after writing,
:func:`verify_export` loads the file with the format's own loader and compares every output with
the model on random states, so a file that does not reproduce the model is never left behind.

Metadata (model kind, n_dof, dtype, input and output names, revolute joints, delan version) is
stored as JSON under the key ``delan_export``: a TorchScript extra file ``delan_export.json``, a
``torch.export.save`` extra file of that name, an ONNX ``metadata_props`` entry.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import os
import warnings
import zipfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from delan.errors import ExportError

FORMATS = ("torchscript", "onnx", "exported")
# model kinds that export (model_kind's names); the structured Hamiltonian is the structured DeLaN
# in (q, qd), whose terms it inherits
KINDS = ("structured", "black-box", "mlp", "hamiltonian")
INPUTS = ("q", "qd", "qdd", "tau")
OUTPUTS = ("torque", "acceleration", "mass_matrix", "coriolis", "gravity", "friction")
INVERSE_INPUTS = ("q", "qd", "qdd")
INVERSE_OUTPUTS = ("torque",)
METADATA_KEY = "delan_export"
METADATA_FORMAT = "delan-export"
# what verify_export accepts: guards against a broken artefact, not precision claims (the tests
# check 1e-6 in float32 and 1e-12 in float64)
VERIFY_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9}
SINGLE_STATES = 4


# --------------------------------------------------------------------------- the exported module
def solve_spd_unrolled(H: Tensor, rhs: Tensor) -> Tensor:
    """Solve H x = rhs for symmetric positive definite H (B, n, n), rhs (B, n) -> x (B, n).

    Cholesky factorisation column by column, then the two triangular solves, written in
    elementwise operations, sums and slices with n fixed by H's shape, so the graph exports to
    formats without a linear-algebra operator (ONNX). Samples whose H is not positive definite
    (a pivot <= 0) get NaN in every entry.
    """
    n = H.shape[-1]
    nan = torch.full_like(H[:, 0, :1], float("nan"))
    rows = torch.arange(n, device=H.device)
    cols: List[Tensor] = []  # column j of L, (B, n), zero above the diagonal
    for j in range(n):
        v = H[:, :, j]
        if j:
            prev = torch.stack(cols, -1)  # (B, n, j)
            v = v - (prev * prev[:, j : j + 1, :]).sum(-1)  # H_ij - sum_k<j L_ik L_jk
        pivot = v[:, j : j + 1]
        d = torch.sqrt(torch.where(pivot > 0, pivot, nan))
        cols.append(v / d * (rows >= j).to(H.dtype))
    L = torch.stack(cols, -1)  # (B, n, n) lower triangular
    y: List[Tensor] = []  # L y = rhs
    for j in range(n):
        s = rhs[:, j : j + 1]
        if j:
            s = s - (L[:, j, :j] * torch.cat(y, -1)).sum(-1, keepdim=True)
        y.append(s / L[:, j, j : j + 1])
    x: List[Tensor] = [rhs[:, :1]] * n  # L^T x = y, from the last row up
    for j in reversed(range(n)):
        s = y[j]
        if j < n - 1:
            s = s - (L[:, j + 1 :, j] * torch.cat(x[j + 1 :], -1)).sum(-1, keepdim=True)
        x[j] = s / L[:, j, j : j + 1]
    return torch.cat(x, -1)


def _solve_spd_linalg(H: Tensor, rhs: Tensor) -> Tensor:
    """As :func:`solve_spd_unrolled` (NaN rows where H is not positive definite), by torch.linalg."""
    L, info = torch.linalg.cholesky_ex(H)
    x = torch.cholesky_solve(rhs.unsqueeze(-1), L).squeeze(-1)
    return torch.where((info == 0).unsqueeze(-1), x, torch.full_like(x, float("nan")))


class ExportedDynamics(nn.Module):
    """The module every format is made from (see the module docstring for the functions).

    Args:
        model: a DeepLagrangianNetwork, BlackBoxLagrangianNetwork or FeedForwardModel.
        unrolled_solve: forward dynamics by :func:`solve_spd_unrolled` (for ONNX) instead of
            torch.linalg.
    """

    def __init__(self, model: nn.Module, unrolled_solve: bool = False):
        super().__init__()
        self.model = model
        self.inverse_only = bool(getattr(model, "inverse_only", False))
        self.unrolled_solve = bool(unrolled_solve)
        # the black-box model solves with H + r I (its forward_dynamics); the structured one with H
        self.regularisation = float(getattr(model, "regularisation", 0.0))

    def forward(self, q: Tensor, qd: Tensor, qdd: Tensor, tau: Optional[Tensor] = None):
        """(torque, acceleration, mass_matrix, coriolis, gravity, friction); the mlp: torque."""
        if self.inverse_only:
            return self.model.inverse_dynamics(q, qd, qdd)
        H, c, g, f = self.terms(q, qd)
        torque = (H @ qdd.unsqueeze(-1)).squeeze(-1) + c + g + f
        return torque, self._solve(H, tau - c - g - f), H, c, g, f

    def inverse_dynamics(self, q: Tensor, qd: Tensor, qdd: Tensor) -> Tensor:
        """tau (B, n) by the model's own inverse-dynamics path."""
        return self.model.inverse_dynamics(q, qd, qdd)

    def forward_dynamics(self, q: Tensor, qd: Tensor, tau: Tensor) -> Tensor:
        """qdd (B, n); NaN rows where H is not positive definite."""
        H, c, g, f = self.terms(q, qd)
        return self._solve(H, tau - c - g - f)

    def terms(self, q: Tensor, qd: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """(H (B, n, n), c, g, f (B, n)) from one evaluation of the model's terms."""
        t = self.model.terms(q, qd)
        return t.H, t.coriolis, t.gravity, t.friction

    def _solve(self, H: Tensor, rhs: Tensor) -> Tensor:
        if self.regularisation:
            H = H + self.regularisation * torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
        return solve_spd_unrolled(H, rhs) if self.unrolled_solve else _solve_spd_linalg(H, rhs)


# --------------------------------------------------------------------------- export
def _kind(model: nn.Module) -> str:
    from delan.evaluation import model_kind

    kind = model_kind(model)
    if kind == "black-box-hamiltonian":
        raise ExportError(
            "cannot export a black-box-hamiltonian model: it finds the momentum of a velocity by "
            "Newton's method run until it converges, a loop whose length depends on the state, which "
            "a traced graph (TorchScript, ONNX, torch.export) cannot hold; export a structured, "
            "hamiltonian, black-box or mlp model"
        )
    if kind not in KINDS:
        raise ExportError(
            f"cannot export a {type(model).__name__}: the kinds `delan train` makes that export are {', '.join(KINDS)}"
        )
    return kind


def names(model: nn.Module) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(input names, output names) of the artefact of ``model`` (the mlp: inverse dynamics only)."""
    if getattr(model, "inverse_only", False):
        return INVERSE_INPUTS, INVERSE_OUTPUTS
    return INPUTS, OUTPUTS


def metadata(model: nn.Module, fmt: str, dtype: torch.dtype) -> Dict[str, Any]:
    """The JSON metadata stored in the artefact under :data:`METADATA_KEY`."""
    from delan.version import version

    ins, outs = names(model)
    config = getattr(model, "config", {}) or {}
    meta: Dict[str, Any] = {
        "format": METADATA_FORMAT,
        "version": 1,
        "artefact": fmt,
        "model": _kind(model),
        "n_dof": int(model.n_dof),
        "dtype": str(dtype).replace("torch.", ""),
        "inputs": list(ins),
        "outputs": list(outs),
        "entry": "forward",
        "revolute": config.get("revolute"),
        "friction": bool(config.get("friction", False)),
        "delan": version(),
    }
    if fmt == "torchscript":
        meta["methods"] = (
            {"inverse_dynamics": ["q", "qd", "qdd"]}
            if outs == INVERSE_OUTPUTS
            else {"inverse_dynamics": ["q", "qd", "qdd"], "forward_dynamics": ["q", "qd", "tau"], "terms": ["q", "qd"]}
        )
    return meta


def random_states(
    model: nn.Module, batch: int = 64, seed: int = 0, dtype: Optional[torch.dtype] = None
) -> Tuple[Tensor, ...]:
    """Random (q, qd, qdd, tau), each (batch, n), in the model's dtype (or ``dtype``): q uniform in
    [-pi, pi], qd and qdd standard normal, tau the model's torque at another standard-normal
    acceleration (so forward dynamics meets torques of the model's own scale). The mlp: (q, qd, qdd)."""
    p = next(model.parameters())
    dtype = dtype or p.dtype
    gen = torch.Generator().manual_seed(seed)
    n = model.n_dof
    kw = dict(generator=gen, dtype=torch.float64)
    q = (torch.rand(batch, n, **kw) * 2 - 1) * math.pi
    qd, qdd, qdd2 = (torch.randn(batch, n, **kw) for _ in range(3))
    q, qd, qdd, qdd2 = (x.to(dtype=dtype, device=p.device) for x in (q, qd, qdd, qdd2))
    if getattr(model, "inverse_only", False):
        return q, qd, qdd
    with torch.no_grad():
        tau = model.inverse_dynamics(q, qd, qdd2)
    return q, qd, qdd, tau


def _prepared(model: nn.Module, dtype: Optional[torch.dtype]) -> nn.Module:
    """A frozen copy of ``model`` in eval mode on the CPU, in ``dtype`` (default: the model's)."""
    _kind(model)
    m = copy.deepcopy(model).cpu().eval()
    if dtype is not None:
        if dtype not in (torch.float32, torch.float64):
            raise ExportError(f"cannot export in {dtype}: give float32 or float64")
        m = m.to(dtype)
    dt = next(m.parameters()).dtype
    if dt not in (torch.float32, torch.float64):
        raise ExportError(f"the model's parameters are {dt}; export in float32 or float64 (--dtype)")
    for p in m.parameters():
        p.requires_grad_(False)
    return m


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence what the exporters print about themselves (progress lines, deprecation notes,
    tracer warnings about the model's Python-side input checks, which the verification covers)."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _example(model: nn.Module, batch: int = 3) -> Tuple[Tensor, ...]:
    return random_states(model, batch=batch, seed=1)


def _torchscript(model: nn.Module, path: str, meta: Dict[str, Any]) -> None:
    wrapper = ExportedDynamics(model)
    x = _example(model)
    if wrapper.inverse_only:
        methods = {"forward": x, "inverse_dynamics": x}
    else:
        q, qd, qdd, tau = x
        methods = {"forward": x, "inverse_dynamics": (q, qd, qdd), "forward_dynamics": (q, qd, tau), "terms": (q, qd)}
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace_module(wrapper, methods, check_trace=False)
        torch.jit.save(traced, path, _extra_files={f"{METADATA_KEY}.json": json.dumps(meta)})


def _dynamic(n_inputs: int):
    batch = torch.export.Dim("batch")
    return tuple({0: batch} for _ in range(n_inputs))


def _exported(model: nn.Module, path: str, meta: Dict[str, Any]) -> None:
    wrapper = ExportedDynamics(model)
    x = _example(model)
    with _quiet(), torch.no_grad():
        try:
            program = torch.export.export(wrapper, x, dynamic_shapes=_dynamic(len(x)))
        except Exception as exc:  # noqa: BLE001 - the exporter's many error types, as one line
            raise ExportError(
                f"torch.export cannot trace this {meta['model']} model "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from None
        torch.export.save(program, path, extra_files={f"{METADATA_KEY}.json": json.dumps(meta)})


@contextlib.contextmanager
def _onnx_float64_constants(enabled: bool) -> Iterator[None]:
    """Store Python float constants of a float64 graph as float64.

    The ONNX exporter (torch.onnx, dynamo) makes a FLOAT constant of every Python float whose
    operator gives no dtype (e.g. ``x / 0.01``) and casts it: 0.01 becomes 0.009999999776..., an
    error of ~1e-8 in a float64 model. This patches the exporter's dtype choice for Python floats
    while a float64 model is exported; where a torch version lacks the hook, nothing is patched
    and :func:`verify_export` refuses an imprecise file.
    """
    try:
        from onnxscript import ir
        from torch.onnx._internal.exporter import _building
    except ImportError:
        enabled = False
    original = getattr(_building, "_determine_input_dtype", None) if enabled else None
    if original is None:
        yield
        return

    def determine(param, arg, type_binding):
        dtype = original(param, arg, type_binding)
        if isinstance(arg, float) and dtype == ir.DataType.FLOAT:
            return ir.DataType.DOUBLE
        return dtype

    _building._determine_input_dtype = determine
    try:
        yield
    finally:
        _building._determine_input_dtype = original


def _onnx_softplus_plain():
    """aten.softplus as max(x, 0) + log(1 + exp(-|x|)) with torch's beta and threshold, for
    float64 graphs (ONNX Runtime's Softplus kernel is float32 only)."""
    from onnxscript import opset18 as op

    def softplus(self, beta: float = 1.0, threshold: float = 20.0):
        ax = op.Mul(self, op.CastLike(beta, self)) if beta != 1.0 else self
        y = op.Add(
            op.Max(ax, op.CastLike(0.0, self)), op.Log(op.Add(op.CastLike(1.0, self), op.Exp(op.Neg(op.Abs(ax)))))
        )
        if beta != 1.0:
            y = op.Div(y, op.CastLike(beta, self))
        return op.Where(op.Greater(ax, op.CastLike(threshold, self)), self, y)

    return softplus


def _onnx(model: nn.Module, path: str, meta: Dict[str, Any]) -> None:
    missing = [m for m in ("onnx", "onnxscript") if not _importable(m)]
    if missing:
        raise ExportError(
            f"--format onnx needs the package{'s' if len(missing) > 1 else ''} {' and '.join(missing)}: "
            f"pip install 'delan[export]'"
        )
    wrapper = ExportedDynamics(model, unrolled_solve=True)
    x = _example(model)
    ins, outs = names(model)
    double = x[0].dtype == torch.float64
    table = {torch.ops.aten.softplus.default: _onnx_softplus_plain()} if double else None
    with _quiet(), torch.no_grad(), _onnx_float64_constants(double):
        try:
            program = torch.onnx.export(
                wrapper,
                x,
                dynamo=True,
                dynamic_shapes=_dynamic(len(x)),
                input_names=list(ins),
                output_names=list(outs),
                custom_translation_table=table,
                optimize=True,
                verbose=False,
            )
        except Exception as exc:  # noqa: BLE001 - the exporter's many error types, as one line
            raise ExportError(
                f"the ONNX exporter cannot translate this {meta['model']} model "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0]})"
            ) from None
        program.model.metadata_props[METADATA_KEY] = json.dumps(meta)
        program.save(path, external_data=False)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


_WRITERS = {"torchscript": _torchscript, "onnx": _onnx, "exported": _exported}


def export_model(
    model: nn.Module, path: str, fmt: str, dtype: Union[None, str, torch.dtype] = None, verify: bool = True
) -> Dict[str, Any]:
    """Write ``model`` as a ``fmt`` artefact (see the module docstring) to ``path``, atomically.

    Args:
        model: a DeepLagrangianNetwork, BlackBoxLagrangianNetwork or FeedForwardModel (not changed).
        path: the file to write (conventionally .pt for torchscript, .onnx, .pt2 for exported).
        fmt: "torchscript", "onnx" or "exported".
        dtype: float32 or float64 (default: the model's).
        verify: load the written file and compare it with the model (:func:`verify_export`);
            a file that does not reproduce the model is removed and ExportError raised.
    Returns:
        The metadata stored in the file, plus ``path`` and, when verified, ``max_relative_error``
        {output: error} and ``verified_states``.
    """
    from delan.models.base import resolve_dtype

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    try:
        dtype = resolve_dtype(dtype)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    m = _prepared(model, dtype)
    dtype = next(m.parameters()).dtype
    meta = metadata(m, fmt, dtype)
    path = os.fspath(path)
    from delan.fileio import atomic_path

    # written and checked under a temporary name: a failed export or check leaves nothing behind
    with atomic_path(path) as tmp:
        _WRITERS[fmt](m, tmp, meta)
        out = dict(meta)
        if verify:
            errors, n_states, checked = verify_export(m, tmp, fmt)
            out["max_relative_error"] = errors
            out["verified_states"] = n_states
            out["verified_with"] = checked
            worst = max(errors.values()) if errors else 0.0
            tol = VERIFY_TOLERANCE[dtype]
            if not worst <= tol:
                bad = ", ".join(f"{k} {v:.2g}" for k, v in errors.items() if not v <= tol)
                raise ExportError(
                    f"the {fmt} artefact does not reproduce the model on random states "
                    f"(relative error {bad} > {tol:g}); nothing written"
                )
    out["path"] = path
    return out


# --------------------------------------------------------------------------- loading and checking
def load_artefact(path: str, fmt: str) -> Callable[..., Tuple[Tensor, ...]]:
    """A callable running the artefact's entry point on torch tensors (B, n) -> tuple of tensors,
    loaded with the format's own loader only (what a user without delan would do)."""
    if fmt == "torchscript":
        module = torch.jit.load(path)
        return lambda *x: _as_tuple(module(*x))
    if fmt == "exported":
        with _quiet():
            module = torch.export.load(path).module()
        return lambda *x: _as_tuple(module(*x))
    if fmt == "onnx":
        import numpy as np
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        in_names = [i.name for i in session.get_inputs()]
        return lambda *x: tuple(
            torch.from_numpy(np.asarray(y))
            for y in session.run(None, {k: v.detach().cpu().numpy() for k, v in zip(in_names, x)})
        )
    raise ExportError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")


def _as_tuple(y) -> Tuple[Tensor, ...]:
    return (y,) if isinstance(y, Tensor) else tuple(y)


def reference_outputs(model: nn.Module, states: Sequence[Tensor]) -> Tuple[Tensor, ...]:
    """What the artefact's entry point should return, from the model's own plain torch methods:
    inverse_dynamics, forward_dynamics (NaN where it raises for a sample's indefinite H),
    mass_matrix and terms (the black-box model's H at (q, qd))."""
    with torch.no_grad():
        if getattr(model, "inverse_only", False):
            return (model.inverse_dynamics(*states[:3]),)
        q, qd, qdd, tau = states
        t = model.terms(q, qd)
        try:
            acc = model.forward_dynamics(q, qd, tau)
        except ValueError:  # IndefiniteMassMatrixError: per sample, like the artefact
            acc = torch.stack(
                [_forward_or_nan(model, q[i : i + 1], qd[i : i + 1], tau[i : i + 1])[0] for i in range(q.shape[0])]
            )
        return model.inverse_dynamics(q, qd, qdd), acc, t.H, t.coriolis, t.gravity, t.friction


def _forward_or_nan(model, q, qd, tau):
    try:
        return model.forward_dynamics(q, qd, tau)
    except ValueError:
        return torch.full_like(q, float("nan"))


def relative_errors(
    model: nn.Module, states: Sequence[Tensor], got: Sequence[Tensor], want: Optional[Sequence[Tensor]] = None
) -> Dict[str, float]:
    """{output name: max |got - want| / scale} over the batch, NaN in the same places counting as
    equal (a NaN where the other has none: inf).

    Scales, chosen so that a number means the same for every output: torque-like outputs
    (torque, coriolis, gravity, friction) are compared in units of the largest reference torque
    (the parts of the torque may cancel, so their own size can be far smaller than their
    rounding errors); the acceleration by the torques it implies, |H (got - want)|, relative to
    the larger of the applied torques tau and H want (the accelerations themselves differ by up to
    H's condition number times the rounding of tau - c - g - f); the mass matrix relative to its
    largest entry.
    """
    want = reference_outputs(model, states) if want is None else want
    _, outs = names(model)
    if len(got) != len(outs):
        raise ExportError(f"the artefact returned {len(got)} outputs, expected {len(outs)} ({', '.join(outs)})")
    ref = dict(zip(outs, want))
    if len(states) == 4:
        ref["tau"] = states[3]
    return {name: relative_error(name, a, ref) for name, a in zip(outs, got)}


def relative_error(name: str, got: Tensor, ref: Dict[str, Tensor]) -> float:
    """The error of one output (see :func:`relative_errors`); ``ref`` holds the reference outputs
    by name (torque always; mass_matrix and the input tau for the acceleration)."""
    want = ref[name]
    if got.shape != want.shape:
        raise ExportError(f"output {name} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    a, b = got.detach().to(torch.float64), want.detach().to(torch.float64)
    if not torch.equal(torch.isnan(a), torch.isnan(b)):
        return float("inf")
    a, b = torch.nan_to_num(a), torch.nan_to_num(b)
    if name == "acceleration":
        H = ref["mass_matrix"].detach().to(torch.float64)
        a, b = (H @ a.unsqueeze(-1)).squeeze(-1), (H @ b.unsqueeze(-1)).squeeze(-1)
        scale = torch.maximum(b.abs().max(), ref["tau"].detach().to(torch.float64).abs().max())
    elif name == "mass_matrix":
        scale = b.abs().max()
    else:
        scale = ref["torque"].detach().to(torch.float64).abs().max()
    diff = float((a - b).abs().max())
    scale = float(scale)
    return diff / scale if scale > 0 else diff


def verify_export(
    model: nn.Module, path: str, fmt: str, batch: int = 64, seed: int = 0
) -> Tuple[Dict[str, float], int, List[str]]:
    """Load the artefact at ``path`` and compare it with ``model`` on ``batch`` random states
    (:func:`random_states`), and on the first :data:`SINGLE_STATES` of them one at a time (B = 1).
    Returns ({output: max relative error}
    (:func:`relative_errors`), number of states, the entry points called). ONNX without
    onnxruntime is not checked: ({}, 0, [])."""
    if fmt == "onnx" and not _importable("onnxruntime"):
        return {}, 0, []
    states = random_states(model, batch=batch, seed=seed)
    run = load_artefact(path, fmt)
    errors = relative_errors(model, states, run(*states))
    # one state at a time (B = 1, a control loop's call), compared over the first few together
    part = tuple(x[:SINGLE_STATES] for x in states)
    singles = [run(*(x[i : i + 1] for x in part)) for i in range(SINGLE_STATES)]
    for k, v in relative_errors(model, part, [torch.cat(ys) for ys in zip(*singles)]).items():
        errors[k] = max(errors[k], v)
    checked = ["forward"]
    if fmt == "torchscript":
        module = torch.jit.load(path)
        ref = dict(zip(names(model)[1], reference_outputs(model, states)))
        ref["tau"] = states[-1]
        got = {"torque": module.inverse_dynamics(*states[:3])}
        checked.append("inverse_dynamics")
        if not getattr(model, "inverse_only", False):
            q, qd, _, tau = states
            got["acceleration"] = module.forward_dynamics(q, qd, tau)
            got.update(zip(OUTPUTS[2:], module.terms(q, qd)))
            checked += ["forward_dynamics", "terms"]
        for name, value in got.items():
            errors[name] = max(errors[name], relative_error(name, value, ref))
    return errors, batch, checked


# --------------------------------------------------------------------------- recognising artefacts
def read_metadata(path: str) -> Optional[Dict[str, Any]]:
    """The metadata of a file written by :func:`export_model` (any format), None for any other file."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if name.endswith(f"/extra/{METADATA_KEY}.json"):
                        meta = json.loads(z.read(name).decode("utf-8"))
                        return meta if isinstance(meta, dict) and meta.get("format") == METADATA_FORMAT else None
            return None
        if os.path.getsize(path) > 2**31:
            return None
        with open(path, "rb") as f:
            data = f.read()
        return _onnx_metadata(data)
    except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError):
        return None


def _onnx_metadata(data: bytes) -> Optional[Dict[str, Any]]:
    key = METADATA_KEY.encode()
    if key not in data:
        return None
    if _importable("onnx"):
        import onnx

        try:
            model = onnx.load_model_from_string(data)
        except Exception:  # noqa: BLE001 - not an ONNX model at all
            return None
        for prop in model.metadata_props:
            if prop.key == METADATA_KEY:
                meta = json.loads(prop.value)
                return meta if isinstance(meta, dict) and meta.get("format") == METADATA_FORMAT else None
        return None
    # without the onnx package: the JSON value follows its key in the serialised metadata
    start = data.rfind(b'{"format": "' + METADATA_FORMAT.encode())
    if start < 0:
        return None
    try:
        meta, _ = json.JSONDecoder().raw_decode(data[start:].decode("utf-8", "ignore"))
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None
