"""What the ``delan`` command does, as a few lines of Python::

    from delan import train, evaluate, simulate
    run = train("data.h5", "runs/x", test=["a", "b"], model="structured", time_budget=60)
    metrics = evaluate(run, "data.h5")            # held-out letters of the run by default
    rollout = simulate(run, data="data.h5", trajectory="a")

``run`` is a :class:`~delan.training.TrainResult` (or the path of a run directory).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Sequence, Union

from torch import nn

from delan.errors import DataError, RunError
from delan.training import TrainConfig, TrainResult, load_run, train_run

RunLike = Union[TrainResult, str, "os.PathLike[str]"]


def train(data: str, run_dir: str, test: Sequence[str] = (), model: str = "structured", *,
          resume: bool = False, force: bool = False, progress: Optional[bool] = None,
          stop_after: Optional[int] = None, **options: Any) -> TrainResult:
    """Train a model on ``data`` (a data file), holding out the trajectories ``test``.

    ``options`` are the fields of :class:`~delan.training.TrainConfig` (epochs, time_budget,
    seed, batch_size, lr, width, depth, ...). With ``resume=True`` the stored configuration of
    ``run_dir`` is used and only epochs, time_budget, patience, checkpoint_every may be given.
    """
    if resume:
        from delan.training import RESUMABLE_OPTIONS, read_config

        config = read_config(os.fspath(run_dir))
        bad = sorted(set(options) - set(RESUMABLE_OPTIONS))
        if bad:
            raise RunError(f"{run_dir}: cannot change {', '.join(bad)} when resuming")
        for k, v in options.items():
            setattr(config, k, v)
    else:
        try:
            config = TrainConfig(data=os.fspath(data), test=list(test), model=model, **options)
        except TypeError as exc:
            raise RunError(f"unknown training option: {exc}") from None
    return train_run(config, os.fspath(run_dir), resume=resume, force=force, stop_after=stop_after,
                     progress=progress)


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


def evaluate(run: Union[RunLike, nn.Module], data: str, test: Optional[Sequence[str]] = None,
             json_path: Optional[str] = None, plots: Optional[str] = None, rollouts: bool = True) -> Dict[str, Any]:
    """Metrics (see :mod:`delan.evaluation`) of a trained model on trajectories of ``data``.

    Args:
        run: a TrainResult, a run directory or a model.
        test: trajectory names to evaluate on; None = the run's held-out trajectories when
            ``data`` is the file it was trained on (all trajectories otherwise).
        json_path: also write the result there (one JSON object, atomically).
        plots: folder for the torque-decomposition figure (and training curves of a run).
        rollouts: compute the valid prediction time ``vpt`` (rollouts of the model; the slow
            part); False lists it under ``unavailable``.
    Returns:
        One flat dict: the metric keys (``*_mse``, ``*_nmse``, ``vpt``), ``n_samples``, and
        ``model``, ``data``, ``test``, ``unavailable`` (metric -> why not), ``per_trajectory``,
        ``vpt_per_trajectory`` {name: seconds} (when vpt was computed).
    """
    from delan.data import load_dataset
    from delan.evaluation import evaluate_model, model_kind

    config, model, run_dir = _model_of(run)
    ds = load_dataset(os.fspath(data))
    if ds.n_dof != model.n_dof:
        raise DataError(f"{data}: has n_dof = {ds.n_dof}, but the model was trained for n_dof = {model.n_dof}")
    if test is None or len(test) == 0:
        trained_here = config is not None and config.test and _same_file(config.data, data)
        test = list(config.test) if trained_here else ds.names
    chosen, _ = ds.split(list(test))
    res = evaluate_model(model, chosen, rollouts=rollouts)
    out: Dict[str, Any] = dict(res["metrics"])
    out["n_samples"] = res["n_samples"]
    if "vpt_per_trajectory" in res:
        out["vpt_per_trajectory"] = res["vpt_per_trajectory"]
    out.update({"model": model_kind(model),
                "run": run_dir, "data": os.fspath(data), "test": list(test),
                "unavailable": res["unavailable"], "per_trajectory": res["per_trajectory"]})
    if plots is not None:
        from delan import plotting

        os.makedirs(plots, exist_ok=True)
        figs = [plotting.plot_decomposition(model, [chosen[n] for n in list(test)[:4]],
                                            os.path.join(plots, "decomposition.png"))]
        if run_dir is not None and os.path.exists(os.path.join(run_dir, "log.jsonl")):
            figs.append(plotting.plot_training(run_dir, os.path.join(plots, "training.png")))
        out["figures"] = figs
    if json_path is not None:
        from delan.training import atomic_write_json

        atomic_write_json(os.fspath(json_path), out)
    return out


def simulate(run: Union[RunLike, nn.Module], **kwargs: Any) -> Dict[str, Any]:
    """Roll out the learned forward dynamics; see :func:`delan.evaluation.simulate_model`."""
    from delan.evaluation import simulate_model

    _, model, _ = _model_of(run)
    return simulate_model(model, **kwargs)
