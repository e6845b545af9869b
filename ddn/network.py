"""DifferentialNetwork: a fully connected network returning f(x), df/dx and d2f/dx2 in one pass.

Three closed-form ways to the derivatives, chosen per call by their matrix-product cost
(rows pushed through each hidden W x W product):

* forward mode (``Jet`` through every layer): 1 + n rows, + n(n+1)/2 for the Hessian — best
  for few inputs and many outputs (DeLaN's mass-matrix heads);
* reverse mode for the Jacobian: 1 + m rows — best for many inputs and few outputs;
* forward-over-reverse for the Hessian: (1 + n)(1 + m) rows — best for a scalar of many
  inputs (a black-box Lagrangian).

All three are plain differentiable torch operations: parameters train by autograd through the
derivatives, and the network works under torch.func transforms.
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ddn.activations import Activation, get_activation
from ddn.jet import Jet, n_pairs, unpack_symmetric
from ddn.layers import DifferentialActivation, DifferentialLinear

MODES = ("auto", "forward", "reverse")


class DifferentialNetwork(nn.Module):
    """Fully connected network with exact closed-form Jacobian and Hessian.

    Args:
        n_input: input size n.
        n_output: output size m.
        width: hidden width W.
        depth: number of hidden layers (each affine + activation); the output layer is affine.
        activation: registry name (``ddn.available_activations()``) or an Activation.
        activation_options: options of a named activation, e.g. ``{"beta": 2.0}`` for softplus.
        output_activation: activation after the output layer, ``"linear"`` (none) by default.
        init, gain, bias_init: weight initialisation (``ddn.init.init_linear``) of hidden layers;
            ``output_gain`` and ``output_bias_init`` for the output layer.
        dtype, device: of the parameters; inputs must match them.

    Call ``net(x, order=k)`` with x (B, n) — or (n,) for one sample, which drops the batch
    dimension of every output: k=0 -> y (B, m); k=1 -> (y, J) with J (B, m, n);
    k=2 -> (y, J, H) with H (B, m, n, n).
    """

    def __init__(
        self,
        n_input: int,
        n_output: int = 1,
        width: int = 128,
        depth: int = 2,
        activation: Union[str, Activation] = "softplus",
        activation_options: Optional[dict] = None,
        output_activation: Union[str, Activation] = "linear",
        init: str = "xavier_normal",
        gain: float = 1.0,
        bias_init: float = 0.0,
        output_gain: Optional[float] = None,
        output_bias_init: float = 0.0,
        dtype: Optional[torch.dtype] = None,
        device=None,
    ):
        super().__init__()
        if n_input < 1 or n_output < 1 or width < 1 or depth < 0:
            raise ValueError(
                f"need n_input, n_output, width >= 1 and depth >= 0, got {n_input}, {n_output}, {width}, {depth}"
            )
        self.n_input, self.n_output, self.width, self.depth = n_input, n_output, width, depth
        act = get_activation(activation, **(activation_options or {}))
        out_act = get_activation(output_activation)
        kw = dict(dtype=dtype, device=device)
        sizes = [n_input] + [width] * depth
        self.hidden = nn.ModuleList(
            DifferentialLinear(a, b, init, gain, bias_init, **kw) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.act = DifferentialActivation(act)
        self.output = DifferentialLinear(
            sizes[-1], n_output, init, gain if output_gain is None else output_gain, output_bias_init, **kw
        )
        self.out_act = None if out_act.name == "linear" else DifferentialActivation(out_act)

    # ------------------------------------------------------------------ public structure
    def layer_weights(self) -> List[Tuple[Tensor, Tensor]]:
        """The affine layers' (weight (out, in), bias (out,)) in order: the hidden layers, then
        the output layer. Read through the layers' attributes, so a parametrisation
        (``torch.nn.utils.parametrize``) or a swapped layer is what a caller gets; models built
        on the network (DeLaN) use this rather than the modules' private dictionaries."""
        layers = list(self.hidden) + [self.output]
        return [(layer.weight, layer.bias) for layer in layers]

    @property
    def activation(self) -> Activation:
        """The hidden layers' activation (g and its derivatives, :class:`ddn.Activation`)."""
        return self.act.activation

    @property
    def output_activation(self) -> Optional[Activation]:
        """The activation after the output layer, or None for a linear (affine) output."""
        return None if self.out_act is None else self.out_act.activation

    # ------------------------------------------------------------------ forward mode on jets
    def jet(self, jet: Jet) -> Jet:
        """Push a jet (derivatives w.r.t. some x upstream) through the network, forward mode."""
        for layer in self.hidden:
            jet = self.act(layer(jet))
        jet = self.output(jet)
        return jet if self.out_act is None else self.out_act(jet)

    # ------------------------------------------------------------------ the public call
    def forward(self, x: Union[Tensor, Jet], order: int = 0, mode: str = "auto"):
        """Value and derivatives up to ``order`` (see class docstring).

        ``x`` may also be a :class:`Jet` of features computed upstream (derivatives w.r.t. an
        upstream input); the returned derivatives are then w.r.t. that upstream input.
        ``mode`` forces ``"forward"`` or ``"reverse"`` (forward-over-reverse for order 2).
        """
        if order not in (0, 1, 2):
            raise ValueError(f"order must be 0, 1 or 2, got {order}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        single = False
        if isinstance(x, Jet):
            jet_in = x
            if jet_in.order < order:
                raise ValueError(f"input jet has order {jet_in.order}, cannot give order {order}")
        else:
            x = self._check_input(x)
            single = x.dim() == 1
            jet_in = Jet.input(x.unsqueeze(0) if single else x, order)
        if jet_in.value.shape[-1] != self.n_input:
            raise ValueError(f"input has {jet_in.value.shape[-1]} features, network expects {self.n_input}")

        if order == 0:
            out = self._values(jet_in.value)
        elif self._use_reverse(jet_in, order, mode):
            out = self._reverse(jet_in, order)
        else:
            out_jet = self.jet(Jet(jet_in.value, jet_in.jac, jet_in.hess, jet_in.n, order, jet_in.stacked))
            out = (out_jet.value, out_jet.jacobian())
            if order == 2:
                out = out + (out_jet.hessian(),)
        if single:
            return out[0] if order == 0 else tuple(t[0] for t in out)
        return out

    def _check_input(self, x) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() not in (1, 2) or x.shape[-1] != self.n_input:
            raise ValueError(f"x must have shape (B, {self.n_input}) or ({self.n_input},), got {tuple(x.shape)}")
        return x

    def _use_reverse(self, jet_in: Jet, order: int, mode: str) -> bool:
        if mode != "auto" or self.depth == 0:
            return mode == "reverse"
        # rows through each hidden W x W product, the dominant cost
        n, f, m = jet_in.n, self.n_input, self.n_output
        if order == 1:
            return m < n
        # forward-over-reverse works in the network's own input space (f features) and then
        # applies the chain rule to the upstream input
        return f + m * (1 + f) <= n + n_pairs(n)

    # ------------------------------------------------------------------ values only
    def _values(self, x: Tensor) -> Tensor:
        act = self.act.activation
        for layer in self.hidden:
            x = act(torch.addmm(layer.bias, x, layer.weight.t()), 0)[0]
        y = torch.addmm(self.output.bias, x, self.output.weight.t())
        return y if self.out_act is None else self.out_act.activation(y, 0)[0]

    # ------------------------------------------------------------------ reverse modes
    def _reverse(self, jet_in: Jet, order: int) -> Tuple[Tensor, ...]:
        """Reverse mode (order 1) or forward-over-reverse (order 2) w.r.t. the network input,
        then the chain rule to the upstream input when ``jet_in`` is not the input itself.

        Rows-first layout as in :mod:`ddn.jet`: u = dy/dh (m, B, W); du = du/dx (m, f, B, W).
        """
        act = self.act.activation
        x = jet_in.value
        B, f, m = x.shape[0], self.n_input, self.n_output
        # forward pass, remembering what the backward pass needs
        h = x
        saved: List[Tuple[Tensor, ...]] = []  # per hidden layer: (g',) or (g', g'' da)
        dh = None  # dh/dx of the last hidden output, (f, B, W); None = identity
        last = len(self.hidden) - 1
        # order 1 with a fused u * g'(a) kernel: keep (a, g), never form g'
        fused_vjp = act.vjp if order == 1 else None
        for k, layer in enumerate(self.hidden):
            wt = layer.weight.t()
            a = torch.addmm(layer.bias, h, wt)
            if fused_vjp is not None:
                h = act(a, 0)[0]
                saved.append((a, h))
                continue
            gs = act(a, order)
            h = gs[0]
            if order == 2:
                # contiguous: a transposed view here would make every later product and
                # elementwise pass run on permuted strides (2-4x slower, plus copies)
                da = layer.weight.t().contiguous().unsqueeze(1) if dh is None else dh @ wt  # (f, B|1, W)
                if k < last or self.out_act is not None:  # the last one is needed only there
                    dh = gs[1] * da
                saved.append((gs[1], gs[2] * da))  # g', g'' da
            else:
                saved.append((gs[1],))
        w_out = self.output.weight  # (m, W)
        y = torch.addmm(self.output.bias, h, w_out.t())
        u = w_out.unsqueeze(1)  # (m, 1, W), broadcasts over the batch
        du = None
        if self.out_act is not None:
            gy = self.out_act.activation(y, order)
            y = gy[0]
            u = gy[1].t().unsqueeze(-1) * u  # (m, B, W)
            if order == 2:
                dy = w_out.t().unsqueeze(1) if dh is None else dh @ w_out.t()  # (f, B|1, m)
                curv = gy[2] * dy  # (f, B, m)
                du = curv.permute(2, 0, 1).unsqueeze(-1) * w_out.unsqueeze(1).unsqueeze(1)  # (m, f, B, W)
        for layer, s in zip(reversed(self.hidden), reversed(saved)):
            v = fused_vjp(u, *s) if fused_vjp is not None else s[0] * u  # (m, B, W)
            if order == 1:
                u = v @ layer.weight
                continue
            dg, curv = s
            # d v / d x_i = g'' da_i u + g' du_i ; two products rather than a copy into one
            dv = curv * u.unsqueeze(1)  # (m, f, B, W)
            if du is not None:
                dv = torch.addcmul(dv, dg, du)
            u, du = v @ layer.weight, dv @ layer.weight
        J = u.expand(m, B, f).permute(1, 0, 2)  # (B, m, f)
        if order == 1:
            if jet_in.jac is not None:  # chain rule to the upstream input
                J = torch.matmul(J, jet_in.jac.permute(1, 2, 0))
            return y, J
        if du is None:  # depth 0 and linear output: zero Hessian
            Hs = y.new_zeros(B, m, f, f)
        else:
            Hs = du.permute(2, 0, 1, 3)  # (B, m, f, f)
            Hs = 0.5 * (Hs + Hs.transpose(-1, -2))  # exact symmetry (it is symmetric up to rounding)
        if jet_in.jac is None:
            return y, J, Hs
        # chain rule to the upstream input z, with x = x(z): Jx (B|1, f, n)
        Jx = jet_in.jac.permute(1, 2, 0)
        Jz = torch.matmul(J, Jx)
        Hz = Jx.transpose(-1, -2).unsqueeze(1) @ Hs @ Jx.unsqueeze(1)  # (B, m, n, n)
        if jet_in.hess is not None:  # + sum_k dy/dx_k d2x_k/dz2
            weighted = torch.matmul(jet_in.hess.transpose(0, 1), J.transpose(-1, -2))  # (B, P, m)
            Hz = Hz + unpack_symmetric(weighted.transpose(0, 1), jet_in.n)
        return y, Jz, Hz

    # ------------------------------------------------------------------ linearisation
    def jvp_vjp(self, x: Tensor, tangents: Tensor):
        """Value, directional derivatives and a closed-form pullback, from one forward pass.

        For models that need J v for a few directions v and u^T J for a few cotangents u, but
        never the full Jacobian (DeLaN needs dL/dt along qd and d(energy)/dq).

        Args:
            x: (B, n) inputs.
            tangents: (k, B, n) directions (k may be 0; a batch size of 1 broadcasts).
        Returns:
            y (B, m); ydot (k, B, m) = J v for each direction; and ``pullback``, a function
            mapping cotangents (r, B, m) to (r, B, n) = u^T J.
        """
        act = self.act.activation
        h, dh = x, tangents
        saved: List[Tensor] = []
        for layer in self.hidden:
            wt = layer.weight.t()
            a = torch.addmm(layer.bias, h, wt)
            h, dg = act(a, 1)
            dh = dg * (dh @ wt)
            saved.append(dg)
        wt = self.output.weight.t()
        y = torch.addmm(self.output.bias, h, wt)
        ydot = dh @ wt
        if self.out_act is not None:
            y, dgy = self.out_act.activation(y, 1)
            ydot = dgy * ydot
        else:
            dgy = None

        def pullback(cot: Tensor) -> Tensor:
            u = cot if dgy is None else dgy * cot
            u = u @ self.output.weight
            for layer, dg in zip(reversed(self.hidden), reversed(saved)):
                u = (dg * u) @ layer.weight
            return u

        return y, ydot, pullback
