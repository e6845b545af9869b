"""One sample on the CPU, the control-loop case: the structured DeLaN's inverse dynamics in NumPy.

At batch size 1 a torch call costs its dispatch (about 1.5 us per op on our CPUs), not its
arithmetic, and the lean torch path needs 35 ops: about 16 kHz. NumPy's per-call overhead on
(64,) arrays is 0.3-1 us, so the same formulas run about twice as fast. This module mirrors
``DeepLagrangianNetwork._inverse_dynamics_lean`` formula for formula (tests check the two agree
in float64 for every option it covers); the model uses it only where nothing else can notice:
one sample, CPU, gradients off (``torch.no_grad`` / ``torch.inference_mode``), no torch.func
transform, the default softplus activation.

The arrays are views of the model's live parameters and buffers (no copies), so an optimiser
step is seen at once; the views are taken again whenever a tensor object or its storage changes
(``functional_call``, ``.to()``, ``.double()``, ``load_state_dict(assign=True)``).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import torch
from scipy.special import expit
from torch import Tensor

from delan.friction import joint_friction


def supported(model) -> bool:
    """Whether :class:`SingleSampleNumpy` covers this model's options."""
    cfg = model.config
    return (bool(cfg["shared_trunk"]) and cfg["activation"].lower() == "softplus" and not cfg["activation_options"]
            and cfg.get("mass_scale") is None and cfg.get("potential_scale", 1.0) == 1.0)


def applicable(q: Tensor, qd: Tensor, qdd: Tensor) -> bool:
    """Whether this call may leave torch: one CPU sample, no autograd, no torch.func wrapper."""
    return (q.shape[0] == 1 and q.device.type == "cpu" and not torch.is_grad_enabled()
            and not (q.requires_grad or qd.requires_grad or qdd.requires_grad)
            and not torch._C._functorch.is_functorch_wrapped_tensor(q))


class SingleSampleNumpy:
    """Evaluates ``model.inverse_dynamics`` for one sample with NumPy (see module docstring)."""

    def __init__(self, model):
        self.model = model
        self._tensors: Optional[List[Tensor]] = None
        self._ptrs: Tuple[int, ...] = ()

    def _current(self) -> List[Tensor]:
        m = self.model
        net = m._modules["trunk"]
        ts = []
        for layer in net._modules["hidden"]._modules.values():
            ts += [layer._parameters["weight"], layer._parameters["bias"]]
        out = net._modules["output"]._parameters
        ts += [out["weight"], out["bias"]]
        buf = m._buffers
        ts += [buf["_R"], buf["_Rt"], buf["_CCt"], buf["_shift"], buf["_neg_unit_V"], buf["_diag"]]
        if m.features is not None:
            ts += [buf["_feature_sel"], m.features.src, m.features.kind]
        if m.friction_model is not None:
            ts += [m.friction_model.raw_viscous, m.friction_model.raw_coulomb]
        return ts

    def _views(self):
        ts = self._current()
        ptrs = tuple(t.data_ptr() for t in ts)
        stale = self._tensors is None or ptrs != self._ptrs or any(a is not b for a, b in zip(ts, self._tensors))
        if stale:
            self._tensors, self._ptrs = ts, ptrs
            arrays = [t.detach().numpy() for t in ts]
            n_layers = len(self.model.trunk.hidden)
            hidden = [(arrays[2 * k], arrays[2 * k + 1]) for k in range(n_layers)]
            rest = arrays[2 * n_layers:]
            Wo, bo, R, Rt, CCt, shift, neg_unit_V, diag = rest[:8]
            rest = rest[8:]
            features = None
            if self.model.features is not None:
                sel, src, kind = rest[:3]
                rest = rest[3:]
                features = (sel, src, kind == 1, kind == 2)
            friction = tuple(rest[:2]) if self.model.friction_model is not None else None
            self._arrays = (hidden, Wo, bo, R, Rt, CCt, shift, neg_unit_V, diag, features, friction)
        return self._arrays

    def __call__(self, q: Tensor, qd: Tensor, qdd: Tensor) -> Tensor:
        """tau (1, n) for q, qd, qdd (1, n) CPU tensors."""
        hidden, Wo, bo, R, Rt, CCt, shift, neg_unit_V, diag, features, friction = self._views()
        q, qd, qdd = q.numpy()[0], qd.numpy()[0], qdd.numpy()[0]
        if features is None:
            x, xdot, dphi = q, qd, None
        else:
            sel, src, is_sin, is_cos = features
            a = q[src]
            s, c = np.sin(a), np.cos(a)
            x = np.where(is_sin, s, np.where(is_cos, c, a))
            dphi = np.where(is_sin, c, np.where(is_cos, -s, 1.0)).astype(a.dtype, copy=False)
            xdot = dphi * qd[src]
        h, t = x, xdot
        saved = []
        for W, b in hidden:
            a = np.dot(W, h) + b
            s = expit(a)
            h = np.logaddexp(0.0, a).astype(a.dtype, copy=False)
            t = s * np.dot(W, t)
            saved.append((W, s))
        y = np.dot(Wo, h) + bo
        ydot = np.dot(Wo, t)
        l = np.where(diag, np.logaddexp(0.0, y), y) + shift
        dmod = np.where(diag, expit(y), 1.0).astype(y.dtype, copy=False)
        ldot = ydot * dmod
        a, b = np.dot(qd, R), np.dot(qdd, R)  # qd_{r_e}, qdd_{r_e}
        wc = np.dot(a * l, CCt)  # (L^T qd)_{c_e}
        zc = np.dot(b * l + a * ldot, CCt)  # (L^T qdd + Ldot^T qd)_{c_e}
        tau = self.model.epsilon * qdd + np.dot(zc * l + wc * ldot, Rt)
        u = np.dot(neg_unit_V + a * wc * dmod, Wo)  # d(T - V)/dh of the last hidden layer
        for W, s in reversed(saved):
            u = np.dot(u * s, W)
        tau = tau - (u if dphi is None else np.dot(u * dphi, sel))
        if friction is not None:
            viscous, coulomb = (np.logaddexp(0.0, r).astype(r.dtype, copy=False) for r in friction)
            tau = tau + joint_friction(qd, viscous, coulomb, self.model.friction_model.smoothing)
        return torch.from_numpy(tau.astype(qd.dtype, copy=False)[None])
