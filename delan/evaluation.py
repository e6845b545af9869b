"""Metrics of a trained model on recorded trajectories (the keys of ``delan evaluate --json``).

Every ``*_mse`` metric is the mean over samples of the squared Euclidean norm of the error
(summed over joints), as in the DeLaN paper:

* ``torque_mse``    inverse dynamics tau_hat(q, qd, qdd) against the recorded tau;
* ``inertial_mse``  H_hat qdd against the true tau_inertial      (ground truth needed);
* ``coriolis_mse``  c_hat(q, qd) against the true tau_coriolis    (ground truth needed);
* ``gravity_mse``   g_hat(q) against the true tau_gravity         (ground truth needed);
* ``friction_mse``  f_hat(q, qd) against the true tau_friction    (ground truth needed);
* ``power_mse``     the model's dE/dt against the data's: for a Lagrangian model
                    dE/dt = qd^T (H_hat qdd + c_hat + g_hat) (the time derivative of T + V along
                    the recorded motion, by the Euler-Lagrange equation), for the mlp baseline the
                    power of its predicted torque qd^T tau_hat; the data's is qd^T (tau - f_true),
                    i.e. qd^T tau when the data has no friction (or none is known);
* ``forward_mse``   forward dynamics qdd_hat(q, qd, tau) against the recorded qdd;
* ``n_samples``     the number of samples the means are over.

Scale-free versions (the convention of the DeLaN journal paper): ``torque_nmse``,
``inertial_nmse``, ``coriolis_nmse``, ``gravity_nmse``, ``friction_nmse`` = mean over samples of
sum_j e_j^2 / var_j, where var_j is the variance (ddof 0) of joint j of the truth field (tau,
tau_inertial, tau_coriolis, tau_gravity, tau_friction) over the whole evaluated set - all
evaluated trajectories concatenated, also for the per-trajectory values, so they are comparable
and average to the set's value. A joint whose truth barely varies would blow the ratio up, so
each variance is floored at :data:`VAR_FLOOR` times the largest joint variance of that field;
when a field is constant on every joint (e.g. no gravity at all) there is no scale and its
nmse is reported unavailable.

Forward-model quality, ``vpt`` (valid prediction time, seconds, mean over the trajectories) with
``vpt_per_trajectory`` {name: seconds}: each trajectory is rolled out with the model's forward
dynamics from its first recorded state (q[0], qd[0]) under the recorded torques held constant
over each recording interval [t_k, t_k+1) (zero-order hold), by RK4 with :data:`VPT_SUBSTEPS`
steps per interval (so jittered clocks are followed exactly); its VPT is the first recorded
time t_k - t_0 at which sum_j (q_j - q_hat_j)^2 / var(q_j) >= :data:`VPT_THRESHOLD` (var per
joint over the evaluated set, floored as above), or its length t[-1] - t[0] if never. A rollout
that diverges (non-finite state, mass matrix not positive definite) never raises: its VPT is the
last recorded time it reached before diverging, and ``per_trajectory[name]["vpt_diverged_at"]``
says when. Note the zero-order hold is itself an O(dt) error: even the true system drifts from
its own recording (a two-link arm sampled at 100 Hz crosses the threshold after about 0.2 s, at
250 Hz not within 1 s; the 7-DoF Panda at 100 Hz after about 0.3 s), so compare VPTs at the
same sampling rate, against the true system's where it is known. ``vpt_hold="linear"``
interpolates the torque between samples instead, a smaller hold error.

A model without the structure behind a metric (the mlp baseline has no H, c, g and no forward
model; a black-box Lagrangian whose d2L/dqd2 is indefinite has no forward model) gets no number
for it: the key is absent from ``metrics`` and ``unavailable`` says why. Any :class:`delan.Dynamics`
can be evaluated, a true system from :mod:`delan.systems` included (then every error is zero).
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from delan.dynamics import solve_spd

MSE_METRICS = ("torque_mse", "inertial_mse", "coriolis_mse", "gravity_mse", "friction_mse", "power_mse", "forward_mse")
NMSE_METRICS = ("torque_nmse", "inertial_nmse", "coriolis_nmse", "gravity_nmse", "friction_nmse")
# every scalar metric, in the order of the printed table
METRICS = MSE_METRICS + NMSE_METRICS + ("vpt",)
# learned term -> the ground-truth field it is compared with
DECOMPOSITION = {
    "inertial": "tau_inertial",
    "coriolis": "tau_coriolis",
    "gravity": "tau_gravity",
    "friction": "tau_friction",
}
VAR_FLOOR = 1e-6  # a joint's variance is at least this fraction of the field's largest one
VPT_THRESHOLD = 1e-2  # normalised squared position error ending the valid prediction
VPT_SUBSTEPS = 20  # RK4 steps per recording interval in the VPT rollout
VPT_HOLDS = ("zero", "linear")  # how the recorded torque acts between samples
MLP_REASON = "the mlp baseline predicts torques only (no H, c, g, friction or forward model)"
INDEFINITE_REASON = "the model's mass matrix is not positive definite on some samples (no forward dynamics)"


def model_kind(model: nn.Module) -> str:
    """ "structured", "black-box", "mlp", "hamiltonian" or "black-box-hamiltonian" for the library's
    models ("custom" for any other :class:`delan.Dynamics` module)."""
    from delan import models

    # the Hamiltonians first: the structured one is a subclass of the DeLaN
    for kind, name in (
        ("hamiltonian", "DeepHamiltonianNetwork"),
        ("black-box-hamiltonian", "BlackBoxHamiltonianNetwork"),
        ("structured", "DeepLagrangianNetwork"),
        ("black-box", "BlackBoxLagrangianNetwork"),
        ("mlp", "FeedForwardModel"),
    ):
        cls = getattr(models, name, None)
        if isinstance(cls, type) and isinstance(model, cls):
            return kind
    return "custom" if hasattr(model, "terms") else "mlp"


def is_lagrangian(model: nn.Module) -> bool:
    """True for models that implement the full :class:`delan.Dynamics` (H, c, g, forward dynamics);
    False for the black-box mlp baseline, which only maps (q, qd, qdd) to tau."""
    return model_kind(model) != "mlp"


def dtype_device(model) -> Tuple[torch.dtype, torch.device]:
    """dtype and device of a model's parameters; float64 on the CPU for a parameter-free
    :class:`delan.Dynamics` such as a true system (its results follow its inputs)."""
    if isinstance(model, nn.Module):
        p = next(model.parameters(), None)
        if p is not None:
            return p.dtype, p.device
    return torch.float64, torch.device("cpu")


@contextlib.contextmanager
def inference(model) -> Iterator[None]:
    """No autograd graph and, for an nn.Module, eval mode (restored afterwards)."""
    was_training = model.training if isinstance(model, nn.Module) else None
    if was_training is not None:
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training is not None:
            model.train(was_training)


def predict(
    model: nn.Module, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray, tau: np.ndarray, batch_size: int = 4096
) -> Dict[str, np.ndarray]:
    """The model's predictions at recorded states, as float64 numpy arrays.

    Args:
        q, qd, qdd, tau: (T, n) arrays.
    Returns:
        {"tau": (T, n)} for every model; a Lagrangian model adds "inertial", "coriolis",
        "gravity", "friction", "qdd" (forward dynamics under the recorded tau) (T, n),
        "H" (T, n, n) and "power" = qd^T (H qdd + c + g) (T,). The mlp adds "power" = qd^T tau_hat.
    """
    dtype, device = dtype_device(model)
    lagrangian = is_lagrangian(model)
    chunks: Dict[str, List[np.ndarray]] = {}
    to = lambda x: torch.as_tensor(np.asarray(x), dtype=dtype, device=device)  # noqa: E731
    solve = getattr(model, "solve_mass_matrix", solve_spd)
    forward_ok = True
    with inference(model):
        for i in range(0, len(q), batch_size):
            sl = slice(i, i + batch_size)
            Q, QD, QDD, TAU = to(q[sl]), to(qd[sl]), to(qdd[sl]), to(tau[sl])
            if lagrangian:
                t = model.terms(Q, QD, QDD)
                out = {
                    "tau": t.tau,
                    "inertial": t.inertial,
                    "coriolis": t.coriolis,
                    "gravity": t.gravity,
                    "friction": t.friction,
                    "H": t.H,
                    "power": (QD * (t.inertial + t.coriolis + t.gravity)).sum(-1),
                    "T": t.T,
                    "V": t.V,
                }
                # forward dynamics from the same terms: no second network evaluation. A
                # black-box model's d2L/dqd2 need not be positive definite; then there is none.
                if forward_ok:
                    try:
                        out["qdd"] = solve(t.H, TAU - t.coriolis - t.gravity - t.friction)
                    except (ValueError, RuntimeError):
                        forward_ok = False
            else:
                tau_hat = model.inverse_dynamics(Q, QD, QDD)
                out = {"tau": tau_hat, "power": (QD * tau_hat).sum(-1)}
            for k, v in out.items():
                if v is not None:
                    chunks.setdefault(k, []).append(v.detach().to("cpu", torch.float64).numpy())
    if not forward_ok:
        chunks.pop("qdd", None)
    return {k: np.concatenate(v) for k, v in chunks.items()}


def squared_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample squared Euclidean error norm: (T, n) -> (T,), (T,) -> (T,)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    with np.errstate(over="ignore"):  # a wildly wrong model scores inf, not a warning
        return d**2 if d.ndim == 1 else (d**2).sum(-1)


def normalised_squared_error(a: np.ndarray, b: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Per-sample sum_j (a_j - b_j)^2 / var_j: (T, n), (T, n), (n,) -> (T,)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    with np.errstate(over="ignore"):
        return (d**2 / np.asarray(var, float)).sum(-1)


def floored_variance(x: np.ndarray) -> Optional[np.ndarray]:
    """Per-joint variance (ddof 0) of x (N, n), each floored at VAR_FLOOR times the largest
    (a joint that barely moves must not dominate a normalised error); None when every joint is
    constant (there is no scale to normalise by)."""
    var = np.asarray(x, float).var(0)
    top = float(var.max()) if var.size else 0.0
    if not top > 0:
        return None
    return np.maximum(var, VAR_FLOOR * top)


def set_variances(trajectories: Sequence) -> Dict[str, Optional[np.ndarray]]:
    """Floored per-joint variances (n,) over all ``trajectories`` concatenated of "q", "tau" and
    each ground-truth torque field that every trajectory has (None: constant on every joint)."""
    fields = ["q", "tau"] + [f for f in DECOMPOSITION.values() if all(f in tr.truth for tr in trajectories)]
    out: Dict[str, Optional[np.ndarray]] = {}
    for f in fields:
        arrays = [getattr(tr, f) if f in ("q", "tau") else tr.truth[f] for tr in trajectories]
        out[f] = floored_variance(np.concatenate(arrays))
    return out


def trajectory_errors(
    model: nn.Module,
    trajectory,
    prediction: Optional[Dict[str, np.ndarray]] = None,
    variances: Optional[Dict[str, Optional[np.ndarray]]] = None,
) -> Dict[str, np.ndarray]:
    """Per-sample errors {metric: (T,)} of one :class:`delan.data.Trajectory`: the squared
    errors of the ``*_mse`` metrics and, given ``variances`` (of :func:`set_variances`, over the
    evaluated set), the normalised ones of the ``*_nmse`` metrics."""
    tr = trajectory
    pred = prediction if prediction is not None else predict(model, tr.q, tr.qd, tr.qdd, tr.tau)
    variances = variances or {}
    err = {"torque_mse": squared_error(pred["tau"], tr.tau)}
    if variances.get("tau") is not None:
        err["torque_nmse"] = normalised_squared_error(pred["tau"], tr.tau, variances["tau"])
    true_power = (tr.qd * (tr.tau - tr.truth.get("tau_friction", 0.0))).sum(-1)
    err["power_mse"] = squared_error(pred["power"], true_power)
    if "qdd" in pred:
        err["forward_mse"] = squared_error(pred["qdd"], tr.qdd)
    for term, truth in DECOMPOSITION.items():
        if truth in tr.truth and term in pred:
            err[f"{term}_mse"] = squared_error(pred[term], tr.truth[truth])
            if variances.get(truth) is not None:
                err[f"{term}_nmse"] = normalised_squared_error(pred[term], tr.truth[truth], variances[truth])
    return err


def evaluate_model(
    model: nn.Module, trajectories: Iterable, per_trajectory: bool = True, rollouts: bool = True, vpt_hold: str = "zero"
) -> Dict[str, Any]:
    """All metrics of ``model`` (any :class:`delan.Dynamics` or the mlp baseline) over
    ``trajectories`` (a Dataset or a list of Trajectory); see the module docstring.

    Args:
        rollouts: compute ``vpt`` (it integrates the model, 20 RK4 steps per sample, so it
            costs far more than the other metrics); False lists it as unavailable.
        vpt_hold: the torque between samples in those rollouts, "zero" or "linear" (see
            :func:`valid_prediction_times`).
    Returns:
        {"metrics": {key: mean over all samples; "vpt": mean over trajectories},
         "n_samples": N, "unavailable": {key: why}, "vpt_per_trajectory": {name: seconds}
         (when vpt was computed), "per_trajectory": {name: {key: mean, "vpt": s[,
         "vpt_diverged_at": s]}}}; a ground-truth metric is computed only when every trajectory
         has that ground truth (so all metrics are over the same samples).
    """
    trajectories = list(trajectories)
    if not trajectories:
        raise ValueError("no trajectories to evaluate on")
    variances = set_variances(trajectories)
    sums: Dict[str, float] = {}
    counts: Dict[str, int] = {}
    per: Dict[str, Dict[str, float]] = {}
    n = 0
    for tr in trajectories:
        err = trajectory_errors(model, tr, variances=variances)
        n += len(tr)
        per[tr.name] = {k: float(v.mean()) for k, v in err.items()}
        for k, v in err.items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
            counts[k] = counts.get(k, 0) + len(v)
    metrics = {k: sums[k] / n for k in METRICS if k in sums and counts[k] == n}
    unavailable: Dict[str, str] = {}
    lagrangian = is_lagrangian(model)
    result: Dict[str, Any] = {"metrics": metrics, "n_samples": n, "unavailable": unavailable}
    if not lagrangian:
        unavailable["vpt"] = MLP_REASON
    elif "forward_mse" not in metrics:
        unavailable["vpt"] = INDEFINITE_REASON
    elif not rollouts:
        unavailable["vpt"] = "rollouts skipped (rollouts=False, or --no-rollouts)"
    else:
        vpts = valid_prediction_times(model, trajectories, q_var=variances["q"], hold=vpt_hold)
        result["vpt_per_trajectory"] = {name: v for name, (v, _) in vpts.items()}
        metrics["vpt"] = float(np.mean([v for v, _ in vpts.values()]))
        for name, (v, diverged_at) in vpts.items():
            per[name]["vpt"] = v
            if diverged_at is not None:
                per[name]["vpt_diverged_at"] = diverged_at
    for k in METRICS:
        if k in metrics or k in unavailable:
            continue
        truth = "tau" if k.startswith("torque") else DECOMPOSITION.get(k.rsplit("_", 1)[0])
        if not lagrangian and k not in ("torque_mse", "torque_nmse", "power_mse"):
            unavailable[k] = MLP_REASON
        elif k == "forward_mse":
            unavailable[k] = INDEFINITE_REASON
        elif k.startswith("friction") and not any("tau_friction" in tr.truth for tr in trajectories):
            unavailable[k] = "no ground-truth tau_friction in the data"
        elif k.endswith("_nmse") and truth in variances and variances[truth] is None:
            unavailable[k] = f"ground truth {truth!r} is constant over the evaluated set (no variance to normalise by)"
        else:
            unavailable[k] = f"ground truth {truth!r} missing from some or all trajectories"
    if per_trajectory:
        result["per_trajectory"] = per
    return result


def valid_prediction_times(
    model,
    trajectories: Sequence,
    q_var: Optional[np.ndarray] = None,
    threshold: float = VPT_THRESHOLD,
    substeps: int = VPT_SUBSTEPS,
    hold: str = "zero",
) -> Dict[str, Tuple[float, Optional[float]]]:
    """The valid prediction time of each trajectory (see the module docstring).

    Trajectories with the same time grid (relative to their start) are rolled out as one batch;
    a trajectory leaves the batch once it crosses the threshold or diverges, and the batch stops
    when none is left. Runs without autograd, in the model's dtype and device.

    Args:
        trajectories: :class:`delan.data.Trajectory` objects.
        q_var: (n,) per-joint position variances; default: over ``trajectories``, floored.
        hold: how the recorded torque acts between samples: "zero" (held at tau_k over
            [t_k, t_k+1), the standard definition) or "linear" (interpolated from tau_k to
            tau_k+1). At low rates the zero-order hold alone makes even the exact dynamics
            drift from the recording (7-DoF Panda at 100 Hz: 0.3 s), which caps the VPT; the
            linear hold shows how long the model itself tracks.
    Returns:
        {name: (vpt [s], diverged_at [s after t[0]] or None)}.
    """
    if hold not in VPT_HOLDS:
        raise ValueError(f"hold must be one of {VPT_HOLDS}, got {hold!r}")
    trajectories = list(trajectories)
    if q_var is None:
        q_var = floored_variance(np.concatenate([tr.q for tr in trajectories]))
    if q_var is None:  # nothing moves at all: any drift counts
        q_var = np.full(trajectories[0].n_dof, np.finfo(float).tiny)
    dtype, device = dtype_device(model)
    inv_var = torch.as_tensor(1.0 / np.asarray(q_var, float), dtype=dtype, device=device)
    out: Dict[str, Tuple[float, Optional[float]]] = {}
    with inference(model):
        for t_rel, group in _same_grid(trajectories):
            out.update(_batch_vpt(model, t_rel, group, inv_var, threshold, substeps, dtype, device, hold))
    return {tr.name: out[tr.name] for tr in trajectories}


def _same_grid(trajectories: Sequence) -> List[Tuple[np.ndarray, List]]:
    """[(t - t[0] (T,), trajectories on that grid)]: groups that can share one batched rollout."""
    groups: List[Tuple[np.ndarray, List]] = []
    for tr in trajectories:
        rel = tr.t - tr.t[0]
        for g_rel, members in groups:
            if len(g_rel) == len(rel) and np.allclose(g_rel, rel, rtol=0.0, atol=1e-9 * max(rel[-1], 1.0)):
                members.append(tr)
                break
        else:
            groups.append((rel, [tr]))
    return groups


def _batch_vpt(
    model,
    t_rel: np.ndarray,
    group: List,
    inv_var: torch.Tensor,
    threshold: float,
    substeps: int,
    dtype: torch.dtype,
    device: torch.device,
    hold: str = "zero",
) -> Dict[str, Tuple[float, Optional[float]]]:
    """VPTs of trajectories sharing the time grid ``t_rel`` (T,), in one batched rollout."""
    from delan.integrators import rollout

    to = lambda x: torch.as_tensor(np.asarray(x), dtype=dtype, device=device)  # noqa: E731
    q_rec = to(np.stack([tr.q for tr in group], 1))  # (T, B, n)
    tau_rec = to(np.stack([tr.tau for tr in group], 1))
    q, qd = q_rec[0], to(np.stack([tr.qd[0] for tr in group]))
    live = torch.arange(len(group), device=device)  # batch row -> index into group
    result: Dict[str, Tuple[float, Optional[float]]] = {}
    for k in range(len(t_rel) - 1):
        span = t_rel[k + 1] - t_rel[k]
        tau, slope = tau_rec[k, live], (tau_rec[k + 1, live] - tau_rec[k, live]) / span
        if hold == "zero":
            tau_fn = lambda t, a, b, tau=tau: tau  # noqa: E731
        else:
            tau_fn = lambda t, a, b, tau=tau, slope=slope: tau + t * slope  # noqa: E731
        ro = rollout(model, q, qd, tau_fn, span / substeps, substeps, "rk4", stop_on_divergence=True)
        diverged = ro.diverged_at or [None] * len(live)
        err = ((ro.q[-1] - q_rec[k + 1, live]) ** 2 * inv_var).sum(-1)
        keep = []
        for row, (i, d) in enumerate(zip(live.tolist(), diverged)):
            name = group[i].name
            if d is not None:  # the last recorded time it reached is t_k
                result[name] = (float(t_rel[k]), float(t_rel[k] + d))
            elif not bool(err[row] < threshold):
                result[name] = (float(t_rel[k + 1]), None)
            else:
                keep.append(row)
        if not keep:
            return result
        if len(keep) < len(live):
            sel = torch.as_tensor(keep, device=device)
            live, q, qd = live[sel], ro.q[-1, sel], ro.qd[-1, sel]
        else:
            q, qd = ro.q[-1], ro.qd[-1]
    for i in live.tolist():
        result[group[i].name] = (float(t_rel[-1]), None)
    return result


def format_table(result: Dict[str, Any]) -> str:
    """A plain-text table of :func:`evaluate_model`'s result, one metric per line."""
    lines = [f"{'metric':<14} {'value':>12}"]
    for k in METRICS:
        if k in result["metrics"]:
            v = result["metrics"][k]
            lines.append(f"{k:<14} {v:>12.4f}  s, mean valid prediction time" if k == "vpt" else f"{k:<14} {v:>12.4e}")
        elif k in result["unavailable"]:
            why = result["unavailable"][k]
            if k.startswith("friction") and ("no ground-truth" in why or "constant" in why):
                continue  # data without friction: not worth a line
            lines.append(f"{k:<14} {'n/a':>12}  ({result['unavailable'][k]})")
    lines.append(f"{'n_samples':<14} {result['n_samples']:>12d}")
    return "\n".join(lines)


# -- rollouts: simulate the learned forward dynamics and compare ------------------------------
DEFAULT_THRESHOLD = 0.1  # rad (or m): position error at which a rollout stops counting as valid


def valid_prediction_time(t: np.ndarray, error: np.ndarray, threshold: float) -> float:
    """The valid-prediction time: the last time before the position error norm ||q_hat - q||_2
    first exceeds ``threshold``; the whole duration t[-1] - t[0] when it never does.

    Args:
        t: (T,) times; error: (T,) position error norms.
    """
    over = np.nonzero(np.asarray(error) > threshold)[0]
    if len(over) == 0:
        return float(t[-1] - t[0])
    k = int(over[0])
    return float(t[max(k - 1, 0)] - t[0])


def _energy(dynamics, q, qd) -> np.ndarray:
    """T + V along a trajectory, (T,) numpy."""
    with torch.no_grad():
        T, V = dynamics.energy(q, qd)
    return (T + V).detach().to("cpu", torch.float64).numpy()


def compare_rollout(
    model,
    q0: np.ndarray,
    qd0: np.ndarray,
    tau_fn,
    dt: float,
    steps: int,
    method: str = "rk4",
    reference=None,
    true_system=None,
    threshold: float = DEFAULT_THRESHOLD,
) -> Dict[str, Any]:
    """Roll out ``model``'s forward dynamics from (q0, qd0) under ``tau_fn`` and compare.

    The reference is either a recording ``reference = (t, q, qd)`` (numpy; interpolated to the
    rollout's times) or ``true_system``, a :class:`delan.Dynamics` rolled out the same way.

    Returns:
        dict with numpy arrays "t" (T,), "q", "qd" (T, n) of the model, "q_ref", "qd_ref",
        "position_error", "velocity_error" (T,) Euclidean norms, "energy" (T,) of the model and
        "energy_ref" (when the true system is known) - energies are compared as changes
        E(t) - E(0), since a learned V has an arbitrary offset - and the scalars
        "valid_time" (see :func:`valid_prediction_time`), "threshold", "position_rmse",
        "velocity_rmse", "final_position_error", "energy_drift" (max |E(t) - E(0)| of the model),
        "steps_done" (T - 1), "diverged" (bool), "diverged_at" (time [s] of the step at which
        the model's state turned non-finite or its mass matrix could not be factorised; None),
        "last_q", "last_qd" (lists: the last finite state). A diverged rollout does not raise:
        it ends at its last finite state and every number is over the part before it.
    """
    from delan.integrators import rollout

    if not is_lagrangian(model):
        from delan.errors import RunError

        raise RunError("the mlp baseline has no forward dynamics to simulate; train a structured or black-box model")
    dtype, device = dtype_device(model)
    q0t = torch.as_tensor(np.asarray(q0, float), dtype=dtype, device=device)
    qd0t = torch.as_tensor(np.asarray(qd0, float), dtype=dtype, device=device)
    try:
        with inference(model):
            ro = rollout(model, q0t, qd0t, tau_fn, dt, steps, method, stop_on_divergence=True)
    except (RuntimeError, ValueError) as exc:  # not a divergence (those stop the rollout): a bad torque, ...
        from delan.errors import RunError

        raise RunError(
            f"the {method} rollout of the learned forward dynamics failed (dt {dt:g} s): {str(exc).splitlines()[0]}"
        ) from None
    t = ro.t.to("cpu", torch.float64).numpy()
    q, qd = (x.to("cpu", torch.float64).numpy() for x in (ro.q, ro.qd))
    out: Dict[str, Any] = {
        "t": t,
        "q": q,
        "qd": qd,
        "method": method,
        "dt": dt,
        "steps": int(steps),
        "steps_done": len(t) - 1,
        "diverged": ro.diverged_at is not None,
        "diverged_at": None if ro.diverged_at is None else float(ro.diverged_at),
        "last_q": q[-1].tolist(),
        "last_qd": qd[-1].tolist(),
    }
    with inference(model):
        out["energy"] = _energy(model, ro.q, ro.qd)
    if true_system is not None:
        with torch.no_grad():
            tr = rollout(
                true_system,
                torch.as_tensor(np.asarray(q0, float)),
                torch.as_tensor(np.asarray(qd0, float)),
                _float64_torque(tau_fn),
                dt,
                len(t) - 1,
                method,
            )
        out["q_ref"], out["qd_ref"] = tr.q.numpy(), tr.qd.numpy()
        out["energy_ref"] = _energy(true_system, tr.q, tr.qd)
    elif reference is not None:
        t_rec, q_rec, qd_rec = (np.asarray(x, float) for x in reference)
        out["q_ref"] = np.stack([np.interp(t + t_rec[0], t_rec, q_rec[:, j]) for j in range(q_rec.shape[1])], -1)
        out["qd_ref"] = np.stack([np.interp(t + t_rec[0], t_rec, qd_rec[:, j]) for j in range(qd_rec.shape[1])], -1)
    else:
        raise ValueError("compare_rollout needs a reference recording or a true system")
    pos = np.sqrt(squared_error(q, out["q_ref"]))
    vel = np.sqrt(squared_error(qd, out["qd_ref"]))
    out.update(
        {
            "position_error": pos,
            "velocity_error": vel,
            "threshold": float(threshold),
            "valid_time": valid_prediction_time(t, pos, threshold),
            "position_rmse": float(np.sqrt(np.mean(pos**2))),
            "velocity_rmse": float(np.sqrt(np.mean(vel**2))),
            "final_position_error": float(pos[-1]),
            "energy_drift": float(np.max(np.abs(out["energy"] - out["energy"][0]))),
        }
    )
    if "energy_ref" in out:
        out["energy_ref_drift"] = float(np.max(np.abs(out["energy_ref"] - out["energy_ref"][0])))
    return out


def _float64_torque(tau_fn):
    """The same torque law for a float64 true system (the model may run in float32)."""
    if tau_fn is None:
        return None
    return lambda t, q, qd: torch.as_tensor(tau_fn(t, q, qd), dtype=torch.float64)


def rollout_summary(result: Dict[str, Any]) -> Dict[str, Any]:
    """The JSON-friendly scalars of :func:`compare_rollout` (no arrays)."""
    return {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
