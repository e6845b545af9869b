"""What the ``delan`` command does, as a few lines of Python::

    from delan import train, evaluate, simulate
    run = train("data.h5", "runs/x", test=["a", "b"], model="structured", time_budget=60)
    metrics = evaluate(run, "data.h5")            # held-out letters of the run by default
    metrics = evaluate(run)                       # the same: the run's own data file
    rollout = simulate(run, data="data.h5", trajectory="a")

``run`` is a :class:`~delan.training.TrainResult` (or the path of a run directory).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from torch import nn

from delan.data import load_dataset
from delan.data.sizes import check_memory, format_number, rollout_bytes
from delan.errors import DataError, OptionError, RunError
from delan.evaluation import DEFAULT_THRESHOLD, compare_rollout, evaluate_model, model_kind, rollout_summary
from delan.fileio import atomic_write_json
from delan.fingerprint import data_fingerprint
from delan.integrators import INTEGRATORS, interpolated_torque
from delan.systems import make_system
from delan.training import TrainConfig, TrainResult, load_run, read_run_data, resume_config, train_run

RunLike = Union[TrainResult, str, "os.PathLike[str]"]


def train(
    data: Optional[str],
    run_dir: str,
    test: Sequence[str] = (),
    model: str = "structured",
    *,
    resume: bool = False,
    force: bool = False,
    progress: Optional[bool] = None,
    stop_after: Optional[int] = None,
    **options: Any,
) -> TrainResult:
    """Train a model on ``data`` (a data file), holding out the trajectories ``test``.

    ``options`` are the fields of :class:`~delan.training.TrainConfig` (epochs, time_budget,
    seed, batch_size, lr, width, depth, ...). With ``resume=True`` the stored configuration of
    ``run_dir`` is used: the options of :data:`~delan.training.RESUMABLE_OPTIONS` may change,
    any other may be given only with its stored value (:func:`~delan.training.resume_config`);
    ``data`` may be another path to the same data (same content fingerprint; None = the recorded
    path), other data is refused.
    """
    if resume:
        config = resume_config(os.fspath(run_dir), options)
        if data is not None:
            config.data = os.fspath(data)  # checked against the recorded fingerprint
    else:
        try:
            config = TrainConfig(data=os.fspath(data), test=list(test), model=model, **options)
        except TypeError as exc:
            raise RunError(f"unknown training option: {exc}") from None
    return train_run(config, os.fspath(run_dir), resume=resume, force=force, stop_after=stop_after, progress=progress)


def _model_of(run: Union[RunLike, nn.Module]):
    """(config or None, model, run directory or None) of a run, a run directory or a model."""
    if isinstance(run, TrainResult):
        return run.config, run.model, run.path
    if isinstance(run, nn.Module):
        return None, run, None
    config, model = load_run(os.fspath(run))
    return config, model, os.fspath(run)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def evaluate(
    run: Union[RunLike, nn.Module],
    data: Optional[str] = None,
    test: Optional[Sequence[str]] = None,
    json_path: Optional[str] = None,
    plots: Optional[str] = None,
    rollouts: bool = True,
) -> Dict[str, Any]:
    """Metrics (see :mod:`delan.evaluation`) of a trained model on trajectories of ``data``.

    Args:
        run: a TrainResult, a run directory or a model.
        data: a data file; None = the one the run was trained on (a run only).
        test: trajectory names to evaluate on. None = the run's held-out trajectories when
            ``data`` holds the data it was trained on (by content fingerprint, whatever its path);
            all trajectories of other data. Never silently training trajectories: a run that held
            none out, a training file changed since, or other data holding trajectories the run
            trained on is refused (RunError) unless ``test`` names what to evaluate.
        json_path: also write the result there (one JSON object, atomically).
        plots: folder for the torque-decomposition figure (and training curves of a run).
        rollouts: compute the valid prediction time ``vpt`` (rollouts of the model; the slow
            part); False lists it under ``unavailable``.
    Returns:
        One flat dict: the metric keys (``*_mse``, ``*_nmse``, ``vpt``), ``n_samples``, and
        ``model``, ``data``, ``test``, ``unavailable`` (metric -> why not), ``per_trajectory``,
        ``vpt_per_trajectory`` {name: seconds} (when vpt was computed).
    """
    config, model, run_dir = _model_of(run)
    if data is None:
        if config is None:
            raise RunError("evaluate: a model alone records no data file; give one")
        data = _recorded_data(run_dir, config)
    data = os.fspath(data)
    ds = load_dataset(data)
    if ds.n_dof != model.n_dof:
        raise DataError(f"{data}: has n_dof = {ds.n_dof}, but the model was trained for n_dof = {model.n_dof}")
    if test is None or len(test) == 0:
        test = _default_test(run_dir, config, data, ds) if config is not None else ds.names
    chosen, _ = ds.split(list(test))
    res = evaluate_model(model, chosen, rollouts=rollouts)
    out: Dict[str, Any] = dict(res["metrics"])
    out["n_samples"] = res["n_samples"]
    if "vpt_per_trajectory" in res:
        out["vpt_per_trajectory"] = res["vpt_per_trajectory"]
    out.update(
        {
            "model": model_kind(model),
            "run": run_dir,
            "data": os.fspath(data),
            "test": list(test),
            "unavailable": res["unavailable"],
            "per_trajectory": res["per_trajectory"],
        }
    )
    if plots is not None:
        from delan import plotting  # matplotlib only when drawing (importing delan must not pick a backend)

        os.makedirs(plots, exist_ok=True)
        figs = [
            plotting.plot_decomposition(
                model, [chosen[n] for n in list(test)[:4]], os.path.join(plots, "decomposition.png")
            )
        ]
        if run_dir is not None and os.path.exists(os.path.join(run_dir, "log.jsonl")):
            figs.append(plotting.plot_training(run_dir, os.path.join(plots, "training.png")))
        out["figures"] = figs
    if json_path is not None:
        atomic_write_json(os.fspath(json_path), out)
    return out


def _recorded_data(run_dir: Optional[str], config) -> str:
    """The data file a run was trained on: data.json's absolute path, else config.json's."""
    record = (read_run_data(run_dir).get("data_file") or {}) if run_dir else {}
    return record.get("path") or config.data


def _default_test(run_dir: Optional[str], config, data: str, ds) -> List[str]:
    """The trajectories of ``data`` to evaluate a run on when none are named: its held-out ones
    when ``data`` holds its training data, all of other data; RunError where that would score
    training trajectories or cannot be told (see :func:`evaluate`)."""
    meta = read_run_data(run_dir) if run_dir else {}
    record = meta.get("data_file") or {}
    trained_on = record.get("path") or config.data
    hint = "; name the trajectories to evaluate with --test NAMES"
    no_test = (
        f"{data}: is the data {run_dir} was trained on, and the run held no trajectory out (no --test "
        f"when training), so it has no test set there{hint} (training trajectories score optimistically)"
    )
    if record.get("fingerprint"):
        fp = data_fingerprint(data)
        if fp["fingerprint"] == record["fingerprint"]:
            if not config.test:
                raise RunError(no_test)
            return list(config.test)
        if _same_file(trained_on, data):
            raise RunError(
                f"{data}: has changed since {run_dir} was trained on it (its content fingerprint "
                f"differs from the run's data.json), so the run's held-out names may mean other "
                f"trajectories now{hint}"
            )
        trained = {h for n, h in record.get("trajectories", {}).items() if n not in set(config.test)}
        seen = [n for n, h in fp["trajectories"].items() if h in trained]
        if seen:
            raise RunError(
                f"{data}: holds trajectories {run_dir} was trained on ({', '.join(seen)}, from {trained_on}){hint}"
            )
        return ds.names
    # a run made before fingerprints were recorded: only its path to go by
    if _same_file(trained_on, data):
        if not config.test:
            raise RunError(no_test)
        return list(config.test)
    known = set(config.test) | set(meta.get("train_trajectories") or [])
    if known & set(ds.names):
        raise RunError(
            f"{data}: cannot tell whether it holds the data {run_dir} was trained on ({trained_on}): "
            f"the run records no content fingerprint (an older delan made it) and the file has "
            f"trajectories of the run's names{hint}"
        )
    return ds.names


def simulate(
    run: Union[RunLike, nn.Module],
    system: Optional[str] = None,
    data: Optional[str] = None,
    trajectory: Optional[str] = None,
    integrator: str = "rk4",
    dt: Optional[float] = None,
    steps: Optional[int] = None,
    q0: Optional[Sequence[float]] = None,
    qd0: Optional[Sequence[float]] = None,
    threshold: float = DEFAULT_THRESHOLD,
    plots: Optional[str] = None,
    json_path: Optional[str] = None,
) -> Dict[str, Any]:
    """Roll out a learned model's forward dynamics and compare it with a recording or the true system.

    Either ``data`` + ``trajectory``: start at the recording's first state, replay its torques
    (linearly interpolated), compare with the recorded q, qd (dt defaults to the recording's
    sampling step, steps to its length); or ``system``: free motion (zero torque) from ``q0``
    (default 0.5 rad/m on every joint), ``qd0`` (default 0) of both the model and the named true
    system (dt default 4 ms, 500 steps).

    Returns the result of :func:`delan.evaluation.compare_rollout` plus "source"; writes a figure
    into ``plots`` and the scalars as one JSON object into ``json_path`` when given. A rollout that
    diverges ends at its last finite state with "diverged": True and "diverged_at" (no error).
    """
    if integrator not in INTEGRATORS:
        raise OptionError(f"`integrator` must be one of {', '.join(INTEGRATORS)}, got {integrator!r}")
    if dt is not None and not (np.isfinite(dt) and dt > 0):
        raise OptionError(f"`dt` must be a positive number of seconds, got {format_number(dt)}")
    if steps is not None and steps < 1:
        raise OptionError(f"`steps` must be a positive integer, got {steps}")
    if not (np.isfinite(threshold) and threshold > 0):
        raise OptionError(f"`threshold` must be positive, got {format_number(threshold)}")
    if (system is None) == (data is None):
        raise OptionError("give either `system` NAME or `data` FILE with `trajectory` NAME")
    _, model, _ = _model_of(run)

    def check_size(steps: int, given: bool) -> None:
        how = f"`steps` {steps}" if given else f"`dt` {format_number(dt)} s: {steps} steps"
        check_memory(
            rollout_bytes(steps, model.n_dof),
            f"a rollout of {steps:.3g} steps ({how})",
            "give fewer `steps` or a larger `dt`",
            error=RunError,
        )

    n = model.n_dof
    if data is not None:
        ds = load_dataset(data)
        if ds.n_dof != n:
            raise DataError(f"{data}: has n_dof = {ds.n_dof}, but the model was trained for n_dof = {n}")
        if trajectory is None:
            raise OptionError(f"`trajectory` is needed with `data`; choose among: {', '.join(ds.names)}")
        tr = ds[trajectory]
        dt = float(np.median(np.diff(tr.t))) if dt is None else float(dt)
        duration = tr.t[-1] - tr.t[0]
        max_steps = int(np.floor(duration / dt + 1e-9))
        given = steps is not None
        steps = max_steps if steps is None else int(steps)
        if steps > max_steps:
            raise RunError(
                f"{steps} steps of {dt:g} s run past the end of trajectory {trajectory!r} "
                f"({duration:g} s = {max_steps} steps)"
            )
        if steps < 1:
            raise RunError(f"`dt` {dt:g} s is longer than trajectory {trajectory!r} ({duration:g} s)")
        check_size(steps, given)
        torque = interpolated_torque(tr.t - tr.t[0], tr.tau)
        res = compare_rollout(
            model, tr.q[0], tr.qd[0], torque, dt, steps, integrator, reference=(tr.t, tr.q, tr.qd), threshold=threshold
        )
        res["source"] = f"{data}: trajectory {trajectory!r} (recorded torques)"
    else:
        true = make_system(system)
        if true.n_dof != n:
            raise DataError(f"system {system!r} has n_dof = {true.n_dof}, but the model was trained for n_dof = {n}")
        q0 = np.full(n, 0.5) if q0 is None else np.asarray(q0, float)
        qd0 = np.zeros(n) if qd0 is None else np.asarray(qd0, float)
        if q0.shape != (n,) or qd0.shape != (n,):
            raise OptionError(f"`q0` and `qd0` need {n} values each")
        dt = 0.004 if dt is None else float(dt)
        given = steps is not None
        steps = 500 if steps is None else int(steps)
        check_size(steps, given)
        res = compare_rollout(model, q0, qd0, None, dt, steps, integrator, true_system=true, threshold=threshold)
        res["source"] = f"system {system!r}, zero torque from q0 = {q0.tolist()}, qd0 = {qd0.tolist()}"
    if plots is not None:
        from delan import plotting  # matplotlib only when drawing (importing delan must not pick a backend)

        os.makedirs(plots, exist_ok=True)
        res["figure"] = plotting.plot_rollout(res, os.path.join(plots, "rollout.png"))
    if json_path is not None:
        atomic_write_json(os.fspath(json_path), rollout_summary(res))
    return res
