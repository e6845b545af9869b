"""The explicit single-sample fast path of the structured DeLaN: inverse dynamics of ONE state in
NumPy, for a control loop in Python.

    tau_fn = model.single_sample_inverse_dynamics()   # asked for by name, never chosen silently
    tau = tau_fn(q, qd, qdd)                          # NumPy (n,) in, NumPy (n,) out

Why: at batch size 1 a torch call costs its dispatch (about 1.5 us per op on our CPUs), not its
arithmetic; NumPy's per-call overhead on (64,) arrays is 0.3-1 us, so the same formulas run
several times as fast (benchmarks/single_sample.py). This module mirrors
``DeepLagrangianNetwork.inverse_dynamics`` formula for formula; tests check it against that
torch path and the autograd reference to 1e-12 in float64 for every option it covers. It takes
the network's weights and activations only through ddn's public
``DifferentialNetwork.layer_weights()``, ``activation`` and ``output_activation``; its check
that nothing changed since (every call) watches the module dictionaries behind those reads.

The model's own ``inverse_dynamics`` never comes here: every torch call stays plain torch
(traceable, exportable, differentiable in any mode, any dtype). The callable is a plain
function of NumPy arrays: no gradients, no torch.func transforms.

It never goes stale: the arrays are views of the model's live parameters (no copies; the
constant selection buffers are copied), so an in-place optimiser step is seen at once, and on
every call it re-reads which tensors, activation and modules the model holds, taking new views
(and re-checking that it covers them) whenever one was replaced (``.to()``, ``.double()``,
``load_state_dict(assign=True)``, a swapped trunk or activation, a parametrised layer, whose
weight is a new tensor at every read). Configurations it does not cover raise
:class:`~delan.errors.NoFastPathError` saying why and what to use instead.
"""

from __future__ import annotations

import itertools
import math
import operator
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from scipy.special import expit
from torch import Tensor

from delan.errors import NoFastPathError

ActFn = Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray]]
_NUMPY_DTYPES = (torch.float32, torch.float64)  # the dtypes the NumPy path mirrors

_ALTERNATIVE = "use model.inverse_dynamics (plain torch, any configuration)"
_MISSING = object()  # what a freshness probe reads for an entry that is gone


def _numpy_activations(beta: float):
    """Candidate NumPy (g, g') pairs by activation name (softplus with the probed beta)."""

    def softplus(a):
        if beta == 1.0:
            return np.logaddexp(0.0, a).astype(a.dtype, copy=False), expit(a)
        ba = beta * a
        return (np.logaddexp(0.0, ba) / beta).astype(a.dtype, copy=False), expit(ba)

    def tanh(a):
        t = np.tanh(a)
        return t, 1.0 - t * t

    def sigmoid(a):
        s = expit(a)
        return s, s * (1.0 - s)

    return {
        "softplus": softplus,
        "tanh": tanh,
        "sigmoid": sigmoid,
        "sin": lambda a: (np.sin(a), np.cos(a)),
        "cos": lambda a: (np.cos(a), -np.sin(a)),
        "linear": lambda a: (a, np.ones_like(a)),
    }


SUPPORTED_ACTIVATIONS = ("softplus (any beta)", "tanh", "sigmoid", "sin", "cos", "linear")


def numpy_activation(activation) -> ActFn:
    """A NumPy (g, g') for a ddn Activation, checked against it on probe points (float64).

    Raises NoFastPathError for activations without a NumPy twin (or whose name lies about them).
    """
    name = activation.name
    base = name.split("(")[0]
    probe = torch.linspace(-6.0, 6.0, 41, dtype=torch.float64)
    beta = 1.0
    if base == "softplus":
        # beta from the activation itself: g(0) = log(2) / beta (its name rounds beta)
        beta = math.log(2.0) / float(activation(torch.zeros(1, dtype=torch.float64), 0)[0])
    fn = _numpy_activations(beta).get(base)
    if fn is None:
        raise NoFastPathError(
            f"the single-sample fast path has no NumPy version of the activation {name!r} "
            f"(it has {', '.join(SUPPORTED_ACTIVATIONS)}); {_ALTERNATIVE}"
        )
    g, dg = (t.numpy() for t in activation(probe, 1))
    g_np, dg_np = fn(probe.numpy())
    if not (np.allclose(g_np, g, rtol=1e-13, atol=1e-13) and np.allclose(dg_np, dg, rtol=1e-13, atol=1e-13)):
        raise NoFastPathError(
            f"the activation {name!r} does not compute what its name says (a user-registered "
            f"replacement?), so the single-sample fast path cannot mirror it; {_ALTERNATIVE}"
        )
    return fn


def check_supported(model) -> None:
    """Raise NoFastPathError if the model's current configuration has no fast path."""
    if getattr(model, "trunk", None) is None:
        raise NoFastPathError(
            "the single-sample fast path covers the shared trunk only (this model has separate "
            f"networks for L and V, shared_trunk=False); {_ALTERNATIVE}"
        )
    params = [p for p in model.parameters()] + [b for b in model.buffers() if b.is_floating_point()]
    for t in params:
        if t.dtype not in _NUMPY_DTYPES:
            raise NoFastPathError(
                f"the single-sample fast path runs in float32 or float64 NumPy; the model holds "
                f"{t.dtype} tensors; {_ALTERNATIVE}, or convert the model with .double()"
            )
        if t.device.type != "cpu":
            raise NoFastPathError(
                f"the single-sample fast path runs on the CPU; the model is on {t.device}; "
                f"{_ALTERNATIVE}, or move the model with .cpu()"
            )
    if len({t.dtype for t in params}) > 1:
        raise NoFastPathError(
            f"the model mixes dtypes {sorted({str(t.dtype) for t in params})}; the single-sample fast path needs one"
        )
    net = model.trunk
    if net.output_activation is not None:
        raise NoFastPathError(f"the single-sample fast path covers a linear output layer only; {_ALTERNATIVE}")
    numpy_activation(net.activation)


class SingleSampleInverseDynamics:
    """tau = H(q) qdd + c(q, qd) + g(q) (+ f(qd)) of the structured DeLaN for ONE state, in NumPy.

    Made by ``DeepLagrangianNetwork.single_sample_inverse_dynamics()`` (see the module docstring).

    Call ``fn(q, qd, qdd)`` with array-likes of shape (n,) (NumPy arrays of the model's dtype are
    fastest); returns tau, a new NumPy array (n,) of the model's dtype (float32 or float64). It
    keeps no scratch state between calls, so threads may share one.

    Raises:
        NoFastPathError: at construction, or at a call after the model changed, when the model's
            configuration has no fast path (separate networks, an activation without a NumPy
            twin, float16/bfloat16, a CUDA device).
        ValueError: inputs of the wrong shape.
    """

    def __init__(self, model):
        check_supported(model)
        self.model = model
        self._refresh()

    # ------------------------------------------------------------------ staleness
    def _seen(self) -> Tuple[list, list]:
        """The objects the call reads (trunk, activations, feature map, friction and its
        smoothing) and the tensors it takes views of (the layers' weights and biases, the friction
        coefficients). A call re-reads them and refreshes when any object, tensor or tensor
        storage is not the one seen last time."""
        m = self.model
        net = m.trunk
        fr = m.friction_model
        objs = [net, net.activation, net.output_activation, m.features, fr]
        tensors = [t for pair in net.layer_weights() for t in pair]
        if fr is not None:
            objs.append(fr.smoothing)
            tensors += [fr.raw_viscous, fr.raw_coulomb]
        return objs, tensors

    def _slots(self) -> Optional[tuple]:
        """The cheap form of the freshness check: (dictionaries, keys, what each holds now) for
        the attributes, submodules and parameters on the way to everything :meth:`_seen` reads,
        parents before children, and the hidden layers' dictionary with the layers it holds now;
        None where it cannot stand for the public reads. Reading these dictionaries costs about
        a tenth of the public reads (``nn.Module.__getattr__``, ``layer_weights()``), which were
        a quarter of the whole call. A parametrised weight (computed at every read, held in no
        dictionary) or a trunk of another structure than ddn's network leaves the public reads
        on every call. Called by :meth:`_refresh` after it has taken ``_objs`` and ``_tensors``."""
        m = self.model
        try:
            net, fr = m.trunk, m.friction_model
            pairs = [(m, "trunk"), (m, "features"), (m, "friction_model"), (net, "act"), (net.act, "activation")]
            pairs += [(net, "out_act"), (net, "hidden"), (net, "output")]
            if net.out_act is not None:
                pairs.append((net.out_act, "activation"))
            pairs += [(layer, w) for layer in list(net.hidden) + [net.output] for w in ("weight", "bias")]
            if fr is not None:
                pairs += [(fr, "smoothing"), (fr, "raw_viscous"), (fr, "raw_coulomb")]
        except AttributeError:
            return None
        dicts, keys, held = [], [], []
        for obj, name in pairs:
            home = vars(obj)  # where nn.Module keeps it: a parameter, submodule, buffer, else the instance
            for d in (getattr(obj, "_parameters", {}), getattr(obj, "_modules", {}), getattr(obj, "_buffers", {})):
                if name in d:
                    home = d
            value = home.get(name, _MISSING)
            if value is not getattr(obj, name):  # a computed attribute: the dictionary cannot stand for it
                return None
            dicts.append(home)
            keys.append(name)
            held.append(value)
        ids = set(map(id, held))
        if not all(id(x) in ids for x in self._objs + self._tensors if x is not None):
            return None
        return dicts, keys, held, net.hidden._modules, tuple(net.hidden)

    def _refresh(self) -> None:
        """Check the configuration again and take new views (and derived constants)."""
        m = self.model
        check_supported(m)
        self._objs, self._tensors = self._seen()
        self._ptrs = [t.data_ptr() for t in self._tensors]
        self._cheap = self._slots()
        net = m.trunk
        arr = lambda t: t.detach().numpy()  # noqa: E731 - views of the live tensors, no copies
        self._act = numpy_activation(net.activation)
        weights = [(arr(w), arr(b)) for w, b in net.layer_weights()]
        self._hidden = weights[:-1]
        self._Wo, self._bo = weights[-1]
        buf = dict(m.named_buffers(recurse=False))
        # constants (buffers, fixed by the configuration): entry e of the packed L is L[r_e, c_e],
        # the diagonal first; L's row scales sqrt(mass_scale) are folded into the selections
        n = m.n_dof
        diag = arr(buf["_diag"])
        if not (diag[:n].all() and not diag[n:].any()):
            raise NoFastPathError("the single-sample fast path expects the diagonal of L as the first n outputs")
        lscale = arr(buf["_lscale"]).copy()
        R = arr(buf["_R"])
        self._rows = np.argmax(R, axis=0)  # r_e (the V output, row of zeros, gets 0: its scale is 0)
        self._rscale = lscale * R.sum(0)  # qd[r_e] * rscale_e = (qd @ R)_e sqrt(mass_scale_{r_e})
        self._Rts = lscale[:, None] * arr(buf["_Rt"])  # (m, n)
        self._CCt = arr(buf["_CCt"]).copy()
        self._shift_d = arr(buf["_shift"])[:n].copy()
        self._ones = np.ones_like(lscale)
        self._neg_V = arr(buf["_neg_unit_V"]).copy()
        self._features = None
        if m.features is not None:
            kind = arr(m.features.kind)
            self._features = (
                arr(buf["_feature_sel"]).copy(),
                arr(m.features.src).copy(),
                kind == 1,
                kind == 2,
                # every joint revolute: cos a = sin(a + pi/2), so one sin and one cos give the
                # features and their derivatives (None: some features are the joint itself)
                np.where(kind == 2, np.pi / 2, 0.0).astype(self._Wo.dtype) if np.all(kind != 0) else None,
            )
        fr = m.friction_model
        self._friction = None if fr is None else (arr(fr.raw_viscous), arr(fr.raw_coulomb), 1.0 / fr.smoothing)
        self.dtype = self._Wo.dtype
        self.n_dof = m.n_dof

    def _check_fresh(self) -> None:
        """Refresh unless every object, tensor and tensor storage is the one seen last time (the
        comparisons run in C, map over the lists). The cheap form reads the dictionaries that the
        public reads go through (see :meth:`_slots`); a dictionary replaced or an entry changed,
        added or removed on the way to anything the call reads shows in one of them."""
        if self._cheap is not None:
            dicts, keys, held, layers, hidden = self._cheap
            if (
                all(map(operator.is_, map(dict.get, dicts, keys, itertools.repeat(_MISSING)), held))
                and tuple(layers.values()) == hidden  # no hidden layer added or removed
                and list(map(Tensor.data_ptr, self._tensors)) == self._ptrs
            ):
                return
            self._refresh()
            return
        objs, tensors = self._seen()
        if not (
            all(map(operator.is_, objs, self._objs))
            and all(map(operator.is_, tensors, self._tensors))
            and list(map(Tensor.data_ptr, tensors)) == self._ptrs
        ):
            self._refresh()

    # ------------------------------------------------------------------ the call
    def __call__(self, q, qd, qdd) -> np.ndarray:
        """tau (n,) for q, qd, qdd (n,); NumPy in and out, the model's dtype."""
        self._check_fresh()
        dtype, n = self.dtype, self.n_dof
        q, qd, qdd = np.asarray(q, dtype), np.asarray(qd, dtype), np.asarray(qdd, dtype)
        if q.shape != (n,) or qd.shape != (n,) or qdd.shape != (n,):
            raise ValueError(
                f"q, qd, qdd must each have shape ({n},) (one state), got "
                f"{q.shape}, {qd.shape}, {qdd.shape}; for batches use model.inverse_dynamics"
            )
        dot, act = np.dot, self._act
        features = self._features
        if features is None:
            h, t = q, qd
        else:
            sel, src, is_sin, is_cos, quarter_turns = features
            a = q.take(src)
            if quarter_turns is not None:  # (sin, cos) pairs only
                a = a + quarter_turns
                h, dphi = np.sin(a), np.cos(a)
            else:
                s, c = np.sin(a), np.cos(a)
                h = np.where(is_sin, s, np.where(is_cos, c, a))
                dphi = np.where(is_sin, c, np.where(is_cos, -s, 1.0))
            t = dphi * qd.take(src)
        saved = []
        for W, b in self._hidden:  # value and its derivative along qd, layer by layer
            h, dg = act(dot(W, h) + b)
            t = dg * dot(W, t)
            saved.append((W, dg))
        Wo = self._Wo
        y, ydot = dot(Wo, h) + self._bo, dot(Wo, t)
        # packed entries of L without their row scales (folded into rscale, Rts): softplus on the
        # diagonal (the first n entries), shift on the diagonal
        lp, dp = y.copy(), self._ones.copy()
        yd = y[:n]
        lp[:n] = np.logaddexp(0.0, yd) + self._shift_d
        dp[:n] = expit(yd)
        ldp = ydot * dp
        rows, rscale, CCt = self._rows, self._rscale, self._CCt
        a, b = qd.take(rows) * rscale, qdd.take(rows) * rscale  # qd_{r_e}, qdd_{r_e} (scaled)
        wc = dot(a * lp, CCt)  # (L^T qd)_{c_e}
        zc = dot(b * lp + a * ldp, CCt)  # (L^T qdd + Ldot^T qd)_{c_e}
        # eps qdd + L (L^T qdd + Ldot^T qd) + Ldot L^T qd
        tau = self.model.epsilon * qdd + dot(zc * lp + wc * ldp, self._Rts)
        u = dot(self._neg_V + a * wc * dp, Wo)  # d(T - V)/dh of the last hidden layer
        for W, dg in reversed(saved):
            u = dot(u * dg, W)
        tau = tau - (u if features is None else dot(u * dphi, sel))
        if self._friction is not None:  # delan.friction.joint_friction, coefficients softplus(raw)
            raw_viscous, raw_coulomb, inv_smoothing = self._friction
            tau = (
                tau + np.logaddexp(0.0, raw_viscous) * qd + np.logaddexp(0.0, raw_coulomb) * np.tanh(qd * inv_smoothing)
            )
        return tau.astype(dtype, copy=False)
