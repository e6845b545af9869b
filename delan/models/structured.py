"""The structured Deep Lagrangian Network: H(q) = L(q) L(q)^T + eps I and V(q) from networks.

Equation of motion from the Lagrangian T - V with T = 1/2 qd^T H(q) qd::

    tau = H qdd + c + g (+ f),   c = Hdot qd - 1/2 d(qd^T H qd)/dq,   g = dV/dq

Where the Coriolis forces are computed (:meth:`DeepLagrangianNetwork.terms`)
-------------------------------------------------------------------------------
One linearised network pass gives everything, without any full Jacobian:

* the value y(q) -> the entries of L (the diagonal through softplus + shift) and V;
* ONE forward tangent along qd -> Ldot = (dL/dq) qd and Vdot;
* ONE closed-form reverse pass with two cotangent rows -> 1/2 d(qd^T H qd)/dq and dV/dq
  (``DifferentialNetwork.jvp_vjp``); :meth:`inverse_dynamics` merges them into one row,
  d(T - V)/dq, since tau needs only their difference.

With w = L^T qd and wd = Ldot^T qd:  Hdot qd = Ldot w + L wd, and
1/2 d(qd^T H qd)/dL_rc = qd_r w_c, so the first cotangent is that outer product on the entries
of L (times softplus' on the diagonal). Products with L and L^T act on its packed entries with
constant 0/1 selection matrices (two small matrix products each), so no batched n x n matrix
is built except H itself, and no scatter/index_put appears anywhere.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union, Unpack

import torch
import torch.nn.functional as F
from torch import Tensor

import ddn
from ddn.activations import SOFTPLUS_THRESHOLD
from ddn.jet import Jet
from delan.dynamics import DynamicsTerms, solve_spd
from delan.models.base import (
    LearnedModel,
    NetworkOptions,
    network_options,
    positive_number,
    scales_per_joint,
    state_options,
)
from delan.models.friction import JointFriction


def _frozen(name: str, doc: str) -> property:
    """A read-only view of a constructor option that the model's constant buffers are built from:
    changing it afterwards would leave them behind (H = L L^T + eps I with the old eps but the new
    one in T), so setting it raises AttributeError."""

    def get(self):
        return self._config[name]

    def refuse(self, value):
        raise AttributeError(
            f"{name} is fixed when the model is built (its constant buffers are derived from it); "
            f"build a new {type(self).__name__}(..., {name}=...) and load_state_dict into it"
        )

    return property(get, refuse, doc=doc)


class DeepLagrangianNetwork(LearnedModel):
    """Structured DeLaN: mass matrix H(q) = L L^T + eps I and potential V(q) from one network.

    Args:
        n_dof: number of joints n.
        revolute: per-joint mask; revolute joints enter through (sin q, cos q), making H and V
            periodic in those angles. None: q itself.
        shared_trunk: one network with n + n(n-1)/2 + 1 outputs (diagonal of L, its strictly lower
            part, V); False: separate networks for L and for V.
        diagonal_shift: L_ii = softplus(l_ii) + diagonal_shift (> 0), so L is invertible.
        epsilon: the eps of H = L L^T + eps I (>= 0), a floor on H's eigenvalues.
        friction: add learnable viscous + Coulomb joint friction (:class:`JointFriction`).
        mass_scale: (n,) typical size of each diagonal entry of H (e.g. from data: see
            :func:`delan.training.output_scales`); row i of L is multiplied by sqrt(mass_scale_i),
            so the network's outputs stay O(1) whether a joint moves 3 kg m^2 or 1 g m^2. A fixed
            reparametrisation: H stays L L^T + eps I, symmetric positive definite. None = ones.
        potential_scale: typical size of V (its network output is multiplied by it).
        dtype, device: of the parameters (float32 by default); inputs must match them.
        **network: the network(s)' options (:class:`delan.models.base.NetworkOptions`: width,
            depth, activation, activation_options, init, gain, output_gain; defaults 64, 2,
            softplus, ...). The activation needs a second derivative only for its gradient to be
            useful.

    Inputs q, qd, qdd, tau are (B, n); a single (n,) sample is accepted and treated as (1, n).
    """

    def __init__(
        self,
        n_dof: int,
        revolute: Optional[Sequence[bool]] = None,
        shared_trunk: bool = True,
        diagonal_shift: float = 1e-3,
        epsilon: float = 1e-5,
        friction: bool = False,
        mass_scale: Optional[Sequence[float]] = None,
        potential_scale: float = 1.0,
        dtype: Union[None, str, torch.dtype] = None,
        device=None,
        **network: Unpack[NetworkOptions],
    ):
        super().__init__()
        n, dtype, mask = state_options(n_dof, revolute, dtype)
        net = network_options(type(self).__name__, network)
        if not diagonal_shift > 0:
            raise ValueError(f"diagonal_shift must be positive, got {diagonal_shift}")
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        mass_scale = scales_per_joint("mass_scale", mass_scale, n)
        potential_scale = positive_number("potential_scale", potential_scale)
        self.n_dof = n
        # the options below are read-only properties (see _frozen): they are baked into buffers
        self._record_config(locals(), net, n_dof=n, mass_scale=mass_scale, potential_scale=potential_scale, dtype=dtype)

        self.features = None if mask is None else ddn.AngleFeatures(mask).to(device)
        n_in = n if mask is None else self.features.n_features
        n_entries = n * (n + 1) // 2
        net.update(dtype=dtype, device=device)
        if self.shared_trunk:
            self.trunk = ddn.DifferentialNetwork(n_in, n_entries + 1, **net)
            n_out = n_entries + 1  # the last output is V
        else:
            self.net_L = ddn.DifferentialNetwork(n_in, n_entries, **net)
            self.net_V = ddn.DifferentialNetwork(n_in, 1, **net)
            n_out = n_entries
        self.friction_model = JointFriction(n, dtype=dtype, device=device) if friction else None
        self._register_maps(n, n_out, n_in, dtype, device)

    epsilon = _frozen("epsilon", "The eps of H = L L^T + eps I (read-only).")
    diagonal_shift = _frozen("diagonal_shift", "L_ii = softplus(l_ii) + diagonal_shift (read-only).")
    shared_trunk = _frozen("shared_trunk", "One network for L and V (read-only).")
    mass_scale = _frozen("mass_scale", "Per-joint scale of L's rows, squared (read-only; None = ones).")
    potential_scale = _frozen("potential_scale", "Scale of V's network output (read-only).")

    # ------------------------------------------------------------------ constant index maps
    def _register_maps(self, n: int, n_out: int, n_in: int, dtype, device) -> None:
        """Selection matrices between the packed entries of L and vectors / the full matrix.

        Entry e (output e of the network) is L[r_e, c_e]: first the diagonal, then the strictly
        lower part row by row; the shared trunk's last output (V) maps to nothing.
        """
        rows = list(range(n))
        cols = list(range(n))
        for r in range(n):
            for c in range(r):
                rows.append(r)
                cols.append(c)
        # built on the CPU, then moved: index assignment wants its indices on the tensor's device
        kw = dict(dtype=dtype if dtype is not None else torch.get_default_dtype())
        e = torch.arange(len(rows))
        r, c = torch.tensor(rows), torch.tensor(cols)
        R = torch.zeros(n, n_out, **kw)  # qd @ R: qd_{r_e} per entry
        R[r, e] = 1.0
        C = torch.zeros(n_out, n, **kw)  # (entries) @ C: sum over entries into column c_e
        C[e, c] = 1.0
        S = torch.zeros(n_out, n * n, **kw)  # (entries) @ S: L flattened row-major
        S[e, r * n + c] = 1.0
        diag = torch.zeros(n_out, dtype=torch.bool)
        diag[:n] = True
        shift = torch.zeros(n_out, **kw)  # diagonal_shift on the diagonal entries
        shift[:n] = self.diagonal_shift
        unit_V = torch.zeros(n_out, **kw)
        if self.shared_trunk:
            unit_V[-1] = self.potential_scale  # V = potential_scale * (last output)
        lscale = torch.ones(n_out, **kw)  # L_rc = sqrt(mass_scale_r) * (network entry)
        if self.mass_scale is not None:
            lscale[e] = torch.tensor(self.mass_scale, **kw).sqrt()[r]
        # contiguous transposes: transposed views would slow every later elementwise op
        for name, t in [
            ("_R", R),
            ("_Rt", R.t().contiguous()),
            ("_C", C),
            ("_Ct", C.t().contiguous()),
            ("_CCt", C @ C.t()),
            ("_S", S),
            ("_diag", diag),
            ("_unit_V", unit_V),
            ("_shift", shift),
            ("_ones", torch.ones(n_out, **kw)),
            ("_neg_unit_V", -unit_V),
            ("_eye", torch.eye(n, **kw)),
            ("_lscale", lscale),
        ]:
            self.register_buffer(name, t.to(device), persistent=False)
        # H = L L^T entry by entry: H_rc = sum_{k <= c} L_rk L_ck for r >= c, one product per
        # (r, c, k); (l @ P1) * (l @ P2) lists the products and @ Q sums them into H and H^T.
        # Plain matrix products: a batched bmm of many n x n matrices is ~20x slower on CPU.
        index = {(rr, cc): ee for ee, (rr, cc) in enumerate(zip(rows, cols))}
        triples = [(rr, cc, k) for rr in range(n) for cc in range(rr + 1) for k in range(cc + 1)]
        P1 = torch.zeros(n_out, len(triples), **kw)
        P2 = torch.zeros(n_out, len(triples), **kw)
        Q = torch.zeros(len(triples), n * n, **kw)
        for t, (rr, cc, k) in enumerate(triples):
            P1[index[rr, k], t] = 1.0
            P2[index[cc, k], t] = 1.0
            Q[t, rr * n + cc] = 1.0
            Q[t, cc * n + rr] = 1.0
        self.register_buffer("_P1", P1.to(device), persistent=False)
        self.register_buffer("_P2", P2.to(device), persistent=False)
        self.register_buffer("_Q", Q.to(device), persistent=False)
        self.register_buffer(
            "_eps_eye_flat", (self.epsilon * torch.eye(n, **kw).reshape(-1)).to(device), persistent=False
        )
        if self.features is not None:
            sel = torch.zeros(n_in, n, **kw)  # pulls feature cotangents back onto their joint
            sel[torch.arange(n_in), self.features.src.cpu()] = 1.0
            self.register_buffer("_feature_sel", sel.to(device), persistent=False)

    def _param(self) -> Tensor:
        return self._eye

    # ------------------------------------------------------------------ building blocks
    def _entries(self, y: Tensor) -> Tuple[Tensor, Tensor]:
        """Network outputs (B, m) -> packed entries of L (B, m) and d entries / d y (B, m)."""
        diag, lscale = self._diag, self._lscale
        l = (torch.where(diag, F.softplus(y, threshold=SOFTPLUS_THRESHOLD), y) + self._shift) * lscale
        dmod = torch.where(diag, torch.sigmoid(y), self._ones) * lscale
        return l, dmod

    def _L(self, l: Tensor) -> Tensor:
        """Packed entries (B, m) -> L (B, n, n), lower triangular."""
        return (l @ self._S).unflatten(-1, (self.n_dof, self.n_dof))

    def _Lt_times(self, l: Tensor, v: Tensor) -> Tensor:
        """L^T v for packed entries l (..., B, m) and v (..., B, n)."""
        return (v @ self._R * l) @ self._C

    def _L_times(self, l: Tensor, u: Tensor) -> Tensor:
        """L u for packed entries l (..., B, m) and u (..., B, n)."""
        return (u @ self._Ct * l) @ self._Rt

    def _linearise(self, q: Tensor, qd: Tensor):
        """Network values, their derivative along qd, and a pullback of cotangents to q.

        Returns l, ldot, dmod (B, m) for the entries of L; V, Vdot (B,); and ``pull(cot_T,
        split)``: for the cotangent cot_T (B, m) of T on the raw outputs, d(T - V)/dq (B, n) or,
        with ``split``, the rows dT/dq and dV/dq (2, B, n) of one reverse pass.
        """
        if self.features is None:
            x, xdot, dphi = q, qd.unsqueeze(0), None
        else:
            # the second direction (all ones) gives each feature's derivative w.r.t. its joint
            jet = self.features(Jet(q, torch.stack([qd, torch.ones_like(qd)]), None, 2, 1))
            x, xdot, dphi = jet.value, jet.jac[:1], jet.jac[1]

        def to_q(u: Tensor) -> Tensor:
            return u if dphi is None else (u * dphi) @ self._feature_sel

        if self.shared_trunk:
            y, ydot, pull_y = self.trunk.jvp_vjp(x, xdot)
            ydot = ydot[0]
            V, Vdot = y[:, -1] * self.potential_scale, ydot[:, -1] * self.potential_scale

            def pull(cot_T: Tensor, split: bool) -> Tensor:
                if split:
                    return to_q(pull_y(torch.stack([cot_T, self._unit_V.expand_as(cot_T)])))
                return to_q(pull_y((cot_T - self._unit_V).unsqueeze(0)))[0]
        else:
            y, ydot, pull_L = self.net_L.jvp_vjp(x, xdot)
            ydot = ydot[0]
            Vy, Vydot, pull_V = self.net_V.jvp_vjp(x, xdot)
            V, Vdot = Vy[:, 0] * self.potential_scale, Vydot[0, :, 0] * self.potential_scale

            def pull(cot_T: Tensor, split: bool) -> Tensor:
                uT = pull_L(cot_T.unsqueeze(0))
                uV = pull_V(torch.full_like(Vy, self.potential_scale).unsqueeze(0))
                return to_q(torch.cat([uT, uV])) if split else to_q(uT - uV)[0]

        l, dmod = self._entries(y)
        return l, ydot * dmod, dmod, V, Vdot, pull

    def _friction(self, qd: Tensor) -> Tensor:
        return torch.zeros_like(qd) if self.friction_model is None else self.friction_model(qd)

    def _values(self, q: Tensor) -> Tuple[Tensor, Tensor]:
        """Packed entries of L (B, m) and V (B,) from plain network values (no derivatives)."""
        x = q if self.features is None else self.features(Jet.input(q, 0)).value
        if self.shared_trunk:
            y = self.trunk(x)
            V = y[:, -1]
        else:
            y, V = self.net_L(x), self.net_V(x)[:, 0]
        return self._entries(y)[0], V * self.potential_scale

    def _H(self, l: Tensor) -> Tensor:
        """Packed entries (B, m) -> H = L L^T + eps I, (B, n, n)."""
        products = torch.mm(l, self._P1) * torch.mm(l, self._P2)
        return torch.addmm(self._eps_eye_flat, products, self._Q).unflatten(-1, (self.n_dof, self.n_dof))

    # ------------------------------------------------------------------ Dynamics
    def terms(self, q: Tensor, qd: Tensor, qdd: Optional[Tensor] = None) -> DynamicsTerms:
        """Every term at (q, qd) [and qdd] from one linearised network pass.

        Returns DynamicsTerms: H (B, n, n); coriolis, gravity, friction (B, n); T, V (B,);
        inertial = H qdd and tau (B, n) when qdd is given.
        """
        q, qd, qdd = self._inputs(q=q, qd=qd, qdd=qdd)
        l, ldot, dmod, V, Vdot, pull = self._linearise(q, qd)
        a = qd @ self._R  # qd_{r_e}
        w = (a * l) @ self._C  # L^T qd
        wd = (a * ldot) @ self._C  # Ldot^T qd
        wc = w @ self._Ct  # w_{c_e}
        Hdot_qd = torch.addcmul(wd @ self._Ct * l, wc, ldot) @ self._Rt  # L wd + Ldot w
        # cotangent of T = 1/2 |w|^2 on the raw outputs: dT/dL_rc = qd_r w_c, times softplus'
        grads = pull(a * wc * dmod, True)
        coriolis = Hdot_qd - grads[0]
        gravity = grads[1]
        f = self._friction(qd)
        T = 0.5 * ((w * w).sum(-1) + self.epsilon * (qd * qd).sum(-1))
        H = self._H(l)
        if qdd is None:
            return DynamicsTerms(H, coriolis, gravity, f, T, V)
        inertial = self._L_times(l, self._Lt_times(l, qdd)) + self.epsilon * qdd
        return DynamicsTerms(H, coriolis, gravity, f, T, V, inertial, inertial + coriolis + gravity + f)

    def inverse_dynamics(self, q: Tensor, qd: Tensor, qdd: Tensor) -> Tensor:
        """tau = H qdd + c + g (+ f), (B, n); one cotangent row, d(T - V)/dq."""
        return self._inverse_dynamics(q, qd, qdd, False)

    def inverse_dynamics_and_mass_matrix(self, q: Tensor, qd: Tensor, qdd: Tensor) -> Tuple[Tensor, Tensor]:
        """(tau (B, n), H (B, n, n)) from the same lean pass: all a training loss needs, since the
        forward-model residual is H^-1 (tau - tau_pred) and the power residual qd^T (tau_pred - tau)."""
        tau, l = self._inverse_dynamics(q, qd, qdd, True)
        return tau, self._H(l)

    def _inverse_dynamics(self, q: Tensor, qd: Tensor, qdd: Tensor, with_entries: bool):
        p = self._eye
        # the common case checked in a few attribute reads; anything else by the full checks
        if not (
            isinstance(q, Tensor)
            and isinstance(qd, Tensor)
            and isinstance(qdd, Tensor)
            and q.dim() == 2
            and q.shape == qd.shape == qdd.shape
            and q.shape[1] == self.n_dof
            and q.dtype == qd.dtype == qdd.dtype == p.dtype
            and q.device == qd.device == qdd.device == p.device
        ):
            q, qd, qdd = self._inputs(q=q, qd=qd, qdd=qdd)
        l, ldot, dmod, V, Vdot, pull = self._linearise(q, qd)
        a, b = qd @ self._R, qdd @ self._R
        wc = (a * l) @ self._CCt  # (L^T qd)_{c_e}
        zc = torch.addcmul(b * l, a, ldot) @ self._CCt  # (L^T qdd + Ldot^T qd)_{c_e}
        # eps qdd + L (L^T qdd + Ldot^T qd) + Ldot L^T qd - d(T - V)/dq
        tau = torch.addcmul(zc * l, wc, ldot) @ self._Rt - pull(a * wc * dmod, False) + self.epsilon * qdd
        if self.friction_model is not None:
            tau = tau + self.friction_model(qd)
        return (tau, l) if with_entries else tau

    def single_sample_inverse_dynamics(self):
        """The explicit fast path for ONE state in a Python control loop: a plain callable
        ``tau_fn(q, qd, qdd) -> tau`` taking and returning NumPy arrays (n,) (the model's dtype),
        several times the rate of ``inverse_dynamics`` on a (1, n) tensor (see
        :mod:`delan.models.single_sample`). No gradients, no torch transforms: for those use
        :meth:`inverse_dynamics`, which is always plain torch.

        The callable reads the model's live parameters (an optimiser step, ``.double()``,
        ``load_state_dict`` or a swapped trunk is seen at the next call), so it never goes stale.

        Raises:
            NoFastPathError: the configuration has no fast path (separate networks for L and V,
                an activation without a NumPy twin, float16/bfloat16, parameters on a GPU).
        """
        from delan.models.single_sample import SingleSampleInverseDynamics

        return SingleSampleInverseDynamics(self)

    def mass_matrix(self, q: Tensor) -> Tensor:
        """H(q) = L L^T + eps I, (B, n, n), from network values only."""
        (q,) = self._inputs(q=q)
        return self._H(self._values(q)[0])

    def potential(self, q: Tensor) -> Tensor:
        """V(q), (B,), from network values only."""
        (q,) = self._inputs(q=q)
        return self._values(q)[1]

    def mass_matrix_and_potential(self, q: Tensor) -> Tuple[Tensor, Tensor]:
        """(H (B, n, n), V (B,)) from one plain network evaluation (the reference path uses it)."""
        (q,) = self._inputs(q=q)
        l, V = self._values(q)
        return self._H(l), V

    def energy(self, q: Tensor, qd: Tensor) -> Tuple[Tensor, Tensor]:
        """(T, V), each (B,), from network values only: T = 1/2 qd^T H qd."""
        q, qd = self._inputs(q=q, qd=qd)
        l, V = self._values(q)
        w = self._Lt_times(l, qd)
        return 0.5 * ((w * w).sum(-1) + self.epsilon * (qd * qd).sum(-1)), V

    def gravity(self, q: Tensor) -> Tensor:
        """g(q) = dV/dq, (B, n): values and one cotangent row, no tangent."""
        (q,) = self._inputs(q=q)
        if self.features is None and self.shared_trunk:
            y, _, pull_y = self.trunk.jvp_vjp(q, q.new_zeros(0, *q.shape))
            return pull_y(self._unit_V.expand(1, *y.shape))[0]
        l, ldot, dmod, V, Vdot, pull = self._linearise(q, torch.zeros_like(q))
        return -pull(torch.zeros_like(l), False)

    def friction(self, q: Tensor, qd: Tensor) -> Tensor:
        """Learned friction torques (B, n); zeros when the model has none."""
        q, qd = self._inputs(q=q, qd=qd)
        return self._friction(qd)

    def forward_dynamics(self, q: Tensor, qd: Tensor, tau: Tensor) -> Tensor:
        """qdd = H^-1 (tau - c - g - f), (B, n), by Cholesky solve."""
        q, qd, tau = self._inputs(q=q, qd=qd, tau=tau)
        t = self.terms(q, qd)
        return solve_spd(t.H, tau - t.coriolis - t.gravity - t.friction)

    def extra_repr(self) -> str:
        return (
            f"n_dof={self.n_dof}, shared_trunk={self.shared_trunk}, diagonal_shift={self.diagonal_shift:g}, "
            f"epsilon={self.epsilon:g}"
        )
