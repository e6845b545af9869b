"""One sample, the control-loop case: plain torch everywhere, plus the explicit NumPy fast path.

``model.inverse_dynamics`` never leaves torch (no silent dispatch for one sample without
gradients), so every audit case of issue 11 works on it: a swapped activation or trunk,
forward-mode AD under no_grad, jit.trace, torch.export, vmap/jacfwd over qd or qdd alone,
vmap(functional_call) over stacked parameters, bfloat16. The fast path is asked for by name,
``model.single_sample_inverse_dynamics()``, and is checked against the plain torch path and the
autograd reference (delan/reference.py) in float64 to 1e-12.
"""

import itertools
import warnings

import numpy as np
import pytest
import torch

import ddn
from ddn.layers import DifferentialActivation
from delan import reference as ref
from delan.errors import DelanError, NoFastPathError
from delan.models import BlackBoxLagrangianNetwork, DeepLagrangianNetwork, FeedForwardModel

F64 = torch.float64
TOL = dict(rtol=1e-12, atol=1e-12)
OPTIONS = [
    dict(revolute=r, friction=f, depth=d, scaled=s)
    for r, f, d, s in itertools.product(["none", "all", "some"], [False, True], [1, 2], [False, True])
]


def make(n, dtype=F64, seed=None, revolute="none", scaled=False, **options):
    mask = {"none": None, "all": [True] * n, "some": [i % 2 == 0 for i in range(n)]}[revolute]
    if scaled:  # what training sets: per-joint mass scales and a potential scale
        options.update(mass_scale=[0.3 + i for i in range(n)], potential_scale=4.0)
    torch.manual_seed(n if seed is None else seed)
    return DeepLagrangianNetwork(n, width=9, revolute=mask, dtype=dtype, **options)


def state(n, batch=1, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, n, dtype=F64, generator=g).to(dtype) for _ in range(3))


def reference(model, q, qd, qdd):
    """tau by autograd on the model's energies (never its closed-form derivative code)."""
    return ref.model_inverse_dynamics(model, q, qd, qdd, create_graph=False)


def fast(fn, q, qd, qdd):
    """The NumPy callable on a (1, n) state, as a (1, n) tensor."""
    return torch.from_numpy(fn(q[0].numpy(), qd[0].numpy(), qdd[0].numpy()))[None]


# ---------------------------------------------------------------------------- the explicit fast path
@pytest.mark.parametrize("n", [1, 2, 7])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_fast_path_equals_torch_and_autograd(n, options):
    model = make(n, **options)
    fn = model.single_sample_inverse_dynamics()
    q, qd, qdd = state(n)
    out = fn(q[0].numpy(), qd[0].numpy(), qdd[0].numpy())
    assert isinstance(out, np.ndarray) and out.shape == (n,) and out.dtype == np.float64
    with torch.no_grad():
        plain = model.inverse_dynamics(q, qd, qdd)
    torch.testing.assert_close(torch.from_numpy(out)[None], plain, **TOL)
    torch.testing.assert_close(torch.from_numpy(out)[None], reference(model, q, qd, qdd), **TOL)
    # lists and tensors are accepted too
    np.testing.assert_allclose(fn(q[0].tolist(), qd[0], qdd[0].numpy()), out, rtol=1e-12, atol=1e-12)


def test_float32_follows_the_model():
    model = make(3, dtype=torch.float32)
    fn = model.single_sample_inverse_dynamics()
    q, qd, qdd = state(3, dtype=torch.float32)
    out = fn(q[0].numpy(), qd[0].numpy(), qdd[0].numpy())
    assert out.dtype == np.float32
    with torch.no_grad():
        torch.testing.assert_close(
            torch.from_numpy(out)[None], model.inverse_dynamics(q, qd, qdd), rtol=1e-5, atol=1e-5
        )


def test_fast_path_never_goes_stale():
    model = make(2, friction=True, scaled=True)
    fn = model.single_sample_inverse_dynamics()
    q, qd, qdd = state(2)

    def check():
        with torch.no_grad():
            torch.testing.assert_close(fast(fn, q, qd, qdd), reference(model, q, qd, qdd), **TOL)

    before = fast(fn, q, qd, qdd)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.inverse_dynamics(*state(2, batch=8, seed=1)).square().sum().backward()
    opt.step()  # in place
    assert not torch.equal(before, fast(fn, q, qd, qdd))
    check()
    with torch.no_grad():  # in place through .data
        for p in model.parameters():
            p.data.mul_(0.9)
    check()
    # new storage (.float().double() assigns .data), then new parameter objects
    model.float().double()
    check()
    model.load_state_dict({k: torch.randn_like(v) for k, v in model.state_dict().items()}, assign=True)
    check()
    # a swapped trunk (other width) and a swapped activation are read at the next call
    model.trunk = ddn.DifferentialNetwork(2, model.trunk.n_output, width=5, depth=3, dtype=F64)
    check()
    model.trunk.act = DifferentialActivation("tanh")
    check()
    model.trunk.act = DifferentialActivation("softplus", beta=2.5)
    check()
    model.trunk.hidden[1] = ddn.layers.DifferentialLinear(5, 5, dtype=F64)
    check()
    model.trunk.hidden.append(ddn.layers.DifferentialLinear(5, 5, dtype=F64))  # one layer more
    check()
    model.trunk.output.weight = torch.nn.Parameter(torch.randn_like(model.trunk.output.weight))
    check()
    model.friction_model.smoothing = 0.5
    check()
    model.friction_model.raw_coulomb = torch.nn.Parameter(torch.randn(2, dtype=F64))
    check()
    model.friction_model = None
    check()
    # every change above was seen by the cheap check (the dictionaries behind the public reads),
    # which is what the callable uses for ddn's network
    assert fn._cheap is not None


def test_no_fast_path_says_why():
    for model, words in [
        (DeepLagrangianNetwork(2, shared_trunk=False), "shared trunk"),
        (DeepLagrangianNetwork(2, activation="relu"), "relu"),
        (DeepLagrangianNetwork(2, dtype=torch.bfloat16), "bfloat16"),
        (DeepLagrangianNetwork(2, dtype=torch.float16), "float16"),
        (BlackBoxLagrangianNetwork(2), "structured"),
        (FeedForwardModel(2), "structured"),
    ]:
        with pytest.raises(NoFastPathError, match=words) as info:
            model.single_sample_inverse_dynamics()
        assert isinstance(info.value, DelanError) and "inverse_dynamics" in str(info.value)
    # a configuration changed after the callable was made: a clear error at the next call
    model = make(2)
    fn = model.single_sample_inverse_dynamics()
    model.trunk.act = DifferentialActivation("relu")
    with pytest.raises(NoFastPathError, match="relu"):
        fn(*(x[0].numpy() for x in state(2)))
    model = make(2)
    fn = model.single_sample_inverse_dynamics()
    model.to(torch.bfloat16)
    with pytest.raises(NoFastPathError, match="bfloat16"):
        fn(*(x[0].numpy() for x in state(2)))
    # a user-registered activation under a supported name is not mirrored blindly
    fake = ddn.activations.Activation("tanh", torch.sin, torch.cos, lambda a: -torch.sin(a))
    model = make(2)
    model.trunk.act.activation = fake
    with pytest.raises(NoFastPathError, match="does not compute what its name says"):
        model.single_sample_inverse_dynamics()


def test_fast_path_checks_shapes():
    fn = make(3).single_sample_inverse_dynamics()
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        fn(np.zeros((1, 3)), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        fn(np.zeros(2), np.zeros(3), np.zeros(3))


# ---------------------------------------------------------------------------- the audit: plain torch
class _Inverse(torch.nn.Module):
    """inverse_dynamics as a module's forward (what trace, export and functional_call call)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, q, qd, qdd):
        return self.model.inverse_dynamics(q, qd, qdd)


def _no_grad_one_sample(model, q, qd, qdd):
    with torch.no_grad():
        return model.inverse_dynamics(q, qd, qdd)


def test_swapped_activation_and_trunk_are_used():
    model = make(3)
    q, qd, qdd = state(3)
    model.trunk.act = DifferentialActivation("tanh")
    out = _no_grad_one_sample(model, q, qd, qdd)
    torch.testing.assert_close(out, reference(model, q, qd, qdd), **TOL)
    model.trunk = ddn.DifferentialNetwork(3, model.trunk.n_output, width=7, depth=1, activation="cos", dtype=F64)
    out2 = _no_grad_one_sample(model, q, qd, qdd)
    torch.testing.assert_close(out2, reference(model, q, qd, qdd), **TOL)
    assert not torch.allclose(out, out2)


@pytest.mark.parametrize("which", ["q", "qd", "qdd"])
def test_forward_mode_ad_under_no_grad_keeps_the_tangent(which):
    import torch.autograd.forward_ad as fwAD

    model = make(3, revolute="some", friction=True)
    q, qd, qdd = state(3)
    v = torch.randn(1, 3, dtype=F64)
    args = dict(q=q, qd=qd, qdd=qdd)
    with torch.no_grad(), fwAD.dual_level():
        args[which] = fwAD.make_dual(args[which], v)
        tangent = fwAD.unpack_dual(model.inverse_dynamics(**args)).tangent
    assert tangent is not None
    # the directional derivative of the autograd reference's tau (never the closed-form code),
    # by reverse mode through its create_graph pass; and torch.func.jvp through the model
    plain = dict(q=q, qd=qd, qdd=qdd)

    def ref_tau_of(x):
        args = {**plain, which: x}
        return ref.model_inverse_dynamics(model, args["q"], args["qd"], args["qdd"], create_graph=True)

    J = torch.autograd.functional.jacobian(ref_tau_of, plain[which])[0, :, 0, :]
    torch.testing.assert_close(tangent, (J @ v[0])[None], **TOL)
    with torch.no_grad():
        jvp = torch.func.jvp(lambda x: model.inverse_dynamics(**{**plain, which: x}), (plain[which],), (v,))[1]
    torch.testing.assert_close(jvp, tangent, **TOL)
    if which == "qdd":
        with torch.no_grad():
            torch.testing.assert_close(tangent, (model.mass_matrix(q)[0] @ v[0])[None], **TOL)


def test_jit_trace_follows_its_input():
    model = make(3, revolute="some")
    q, qd, qdd = state(3)
    q2, qd2, qdd2 = state(3, seed=5)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_Inverse(model), (q, qd, qdd), check_trace=False)
        out = traced(q2, qd2, qdd2)
    torch.testing.assert_close(out, reference(model, q2, qd2, qdd2), **TOL)
    assert not torch.allclose(out, _no_grad_one_sample(model, q, qd, qdd))


def test_torch_export_follows_its_input():
    model = make(3, friction=True)
    q, qd, qdd = state(3)
    with torch.no_grad():
        exported = torch.export.export(_Inverse(model), (q, qd, qdd))
    q2, qd2, qdd2 = state(3, seed=6)
    with torch.no_grad():
        out = exported.module()(q2, qd2, qdd2)
    torch.testing.assert_close(out, reference(model, q2, qd2, qdd2), **TOL)


@pytest.mark.parametrize("which", ["qd", "qdd"])
def test_vmap_and_jacfwd_over_one_argument(which):
    model = make(3, revolute="all", friction=which == "qd")
    q, qd, qdd = (x[0] for x in state(3))  # (n,) single samples
    plain = dict(q=q, qd=qd, qdd=qdd)

    def tau_of(x):
        return model.inverse_dynamics(**{**plain, which: x})[0]

    with torch.no_grad():
        J = torch.func.jacfwd(tau_of)(plain[which])
    J_rev = torch.autograd.functional.jacobian(tau_of, plain[which])
    torch.testing.assert_close(J, J_rev, **TOL)
    if which == "qdd":
        with torch.no_grad():
            torch.testing.assert_close(J, model.mass_matrix(q)[0], **TOL)
    X = torch.randn(5, 3, dtype=F64)
    with torch.no_grad():
        out = torch.func.vmap(tau_of)(X)
        batched = model.inverse_dynamics(**{**{k: v.expand(5, 3) for k, v in plain.items()}, which: X})
    torch.testing.assert_close(out, batched, **TOL)
    big = {k: v.expand(5, 3) for k, v in plain.items()}
    big[which] = X
    torch.testing.assert_close(out, reference(model, big["q"], big["qd"], big["qdd"]), **TOL)


def test_vmap_functional_call_over_stacked_parameters():
    models = [make(2, seed=s, friction=True) for s in range(3)]
    params, buffers = torch.func.stack_module_state(models)
    base = _Inverse(make(2, friction=True).to("meta"))
    q, qd, qdd = state(2)

    def tau(p, b):
        named = {f"model.{k}": v for d in (p, b) for k, v in d.items()}
        return torch.func.functional_call(base, named, (q, qd, qdd), strict=True)

    with torch.no_grad():
        out = torch.func.vmap(tau)(params, buffers)
    for k, m in enumerate(models):
        torch.testing.assert_close(out[k], reference(m, q, qd, qdd), **TOL)


def test_bfloat16_is_plain_torch():
    model = make(3, friction=True)
    low = make(3, friction=True, dtype=torch.bfloat16)
    low.load_state_dict(model.state_dict())
    q, qd, qdd = state(3)
    with torch.no_grad():
        out = low.inverse_dynamics(q.bfloat16(), qd.bfloat16(), qdd.bfloat16())
    assert out.dtype == torch.bfloat16
    exact = reference(model, q.bfloat16().double(), qd.bfloat16().double(), qdd.bfloat16().double())
    # bfloat16 keeps 8 bits of mantissa: a few percent of the torque's size
    assert (out.double() - exact).abs().max() <= 0.05 * exact.abs().max() + 0.05


def test_parametrised_trunk_layer_is_read_through_the_public_weights():
    """torch.nn.utils.parametrize replaces a layer's weight by a computed one: inverse_dynamics
    and the fast path must use it (DeLaN reads ddn's layer_weights(), not private dictionaries)."""
    from torch.nn.utils import parametrize

    class Doubled(torch.nn.Module):
        def forward(self, w):
            return 2.0 * w

    model = make(3, revolute="some", friction=True)
    q, qd, qdd = state(3, batch=4)
    fn = model.single_sample_inverse_dynamics()
    before = model.terms(q, qd, qdd).tau.detach()
    parametrize.register_parametrization(model.trunk.hidden[0], "weight", Doubled())
    with torch.no_grad():
        tau = model.inverse_dynamics(q, qd, qdd)
        terms = model.terms(q, qd, qdd)
    assert not torch.allclose(tau, before)  # the parametrisation changed the model
    torch.testing.assert_close(tau, terms.tau, **TOL)
    torch.testing.assert_close(tau, reference(model, q, qd, qdd), **TOL)
    torch.testing.assert_close(fast(fn, q[:1], qd[:1], qdd[:1]), tau[:1], **TOL)
