"""Training: fit a model's parameters to recorded (q, qd, qdd, tau) by minibatch Adam.

:func:`train_run` runs these steps, each a function below, in this order (:func:`_train` reads
top to bottom):

1. open the run (:func:`_open_run`): check the options and the run directory; on resume lock it,
   check what changed and that the data is the same, and read the checkpoint;
2. load the data (:func:`_load_data`): hold out the test trajectories, set a validation block of
   time aside in every training trajectory (so no single odd trajectory decides which epoch is
   "best"), make the tensors;
3. build (:func:`_build`) the model, optimiser and loss from a :class:`TrainConfig` (seeded, so a
   run is reproducible), then restore the checkpoint or record the new run (:func:`_record_new_run`);
4. one epoch at a time (:func:`_one_epoch`, :func:`_end_epoch`): shuffle, step on minibatches of
   the Euler-Lagrange loss, evaluate on the validation data, keep the best model, log the epoch;
5. stop checks (:func:`_stop_reason`): the time budget (default :data:`DEFAULT_TIME_BUDGET`
   seconds), the epoch limit if one is given, early stopping when validation stops improving;
   divergence and signals stop the run where they happen; a checkpoint every N epochs and at a stop;
6. finish (:func:`_finish`): restore the best model, save it and the summary.

Everything a run needs lives in its run directory::

    config.json      the full TrainConfig (everything used, incl. the data file's absolute path and
                     the held-out names), with its format version
    data.json        what the data gave: the data file's path and content fingerprint
                     (:mod:`delan.fingerprint`), samples, joint types, validation blocks
    log.csv          one row per epoch: losses (total and each term), lr, time
    log.jsonl        the same rows as JSON lines
    checkpoint.pt    model + optimiser + RNG states + epoch + best-so-far (atomic, every N epochs)
    model.pt         the final (best) model, loadable with ``delan.load_model``
    summary.json     how the run ended: epochs, best epoch, seconds, stop reason
    .delan.lock      while a run is going: its pid, host and start time (:mod:`delan.runlock`)

One run at a time per directory: a second one is refused, naming the holder of the lock. A killed
run continues with ``resume=True`` from ``checkpoint.pt``: the optimiser moments, the shuffling
generator and the best-so-far come back, and log rows written after the checkpoint are dropped, so
the resumed run ends with the same weights as one that was never interrupted (on CPU, same seed,
no time budget). Resuming needs the same data: another path is accepted when its content
fingerprint matches the recorded one. SIGINT / SIGTERM stop the run after its current step with a
checkpoint of that step (:class:`~delan.errors.TrainingInterrupted`); a loss that stops being finite
(or a failed Cholesky) stops it with the best model so far saved and the last good checkpoint kept
(:class:`~delan.errors.TrainingDiverged`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from delan.data.splits import (  # noqa: F401  (public names of the trainer's data split, used here and by callers)
    choose_validation,
    describe_validation,
    resolve_joint_types,
    split_samples,
    to_tensors,
    validation_blocks,
)
from delan.errors import (
    DataError,
    IndefiniteMassMatrixError,
    RunError,
    TrainingDiverged,
    TrainingInterrupted,
    first_line,
)
from delan.fileio import atomic_write_bytes, atomic_write_json
from delan.models import load_model, save_model
from delan.models.base import DTYPES
from delan.runlock import LOCK_FILE, RunLock, check_free

MODEL_KINDS = ("structured", "black-box", "mlp", "hamiltonian", "black-box-hamiltonian")
# kinds trained with the losses of delan.hamiltonian_losses (in the variables q, p)
HAMILTONIAN_KINDS = ("hamiltonian", "black-box-hamiltonian")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "exponential")
STEP_MODES = ("auto", "eager", "cuda-graph")  # how training steps run (see TrainConfig)
# the dtypes (of delan.models.base.DTYPES) training runs in
TRAIN_DTYPES = ("float32", "float64")

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
LOG_CSV = "log.csv"
LOG_JSONL = "log.jsonl"
SUMMARY_FILE = "summary.json"
DATA_FILE = "data.json"
CHECKPOINT_FORMAT = "delan-checkpoint"
# Format versions this library writes, and those it reads (an unknown one is refused, naming the
# file: a newer delan wrote it). Checkpoint v2 may hold a step inside an epoch ("partial").
CHECKPOINT_VERSION = 2
CHECKPOINT_VERSIONS = (1, 2)
CONFIG_FORMAT = "delan-run-config"
CONFIG_VERSION = 1
DATA_FORMAT = "delan-run-data"
DATA_VERSION = 1

# Training length when neither ``epochs`` nor ``time_budget`` is given (printed by the CLI).
DEFAULT_TIME_BUDGET = 120.0

# Defaults chosen by experiments/defaults_study.py (results: experiments/results/defaults_study.md).
# Loss parts each model kind trains on unless told otherwise, on top of the model's own defaults:
DEFAULT_LOSS_WEIGHTS = {
    "structured": {"inverse": 1.0, "forward": 1.0, "power": 1.0},
    "black-box": {"inverse": 1.0, "forward": 0.0, "power": 1.0},
    "mlp": {},
    # the Hamiltonian kinds' parts (delan.hamiltonian_losses), by the short trial
    # experiments/hamiltonian_loss_trial.py (results/hamiltonian_loss_trial.md): the
    # forward part gave 1.6-10x the VPT (at up to 2x the torque nMSE of short runs),
    # power and qd no measurable change (qd has none to give: see the module)
    "hamiltonian": {"pdot": 1.0, "qd": 0.0, "power": 1.0, "forward": 1.0},
    "black-box-hamiltonian": {"pdot": 1.0, "qd": 0.0, "power": 1.0, "forward": 1.0},
}
# Friction unless told: learned when the training data show Coulomb steps at velocity
# reversals (delan.friction.coulomb_evidence >= this on some joint). Always-on cost 3-45x in
# torque nMSE on frictionless data, always-off 500x on data with friction (the study).
FRICTION_EVIDENCE = 1.0

# Options that may differ when a run is resumed (they do not change what was computed so far).
# max_memory: a resumed run keeps the way it held its data (recorded in data.json) whatever the budget now
RESUMABLE_OPTIONS = ("epochs", "time_budget", "patience", "checkpoint_every", "quiet", "threads", "max_memory", "step")


def resume_config(run_dir: str, options: Dict[str, Any]) -> TrainConfig:
    """The stored configuration of ``run_dir`` with ``options`` (TrainConfig fields) applied, for
    resuming: an option outside :data:`RESUMABLE_OPTIONS` may be given only with its stored value."""
    stored = read_config(run_dir)
    config = read_config(run_dir)
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise RunError(f"unknown training option(s) {', '.join(unknown)}")
    for k, v in options.items():
        setattr(config, k, v)
    check_resume_changes(run_dir, stored, config)
    return config


def check_resume_changes(run_dir: str, stored: TrainConfig, config: TrainConfig) -> None:
    """RunError naming every option (but the data path, checked by content) that differs from the
    stored one and may not change on resume: the one place that decides it."""
    changed = [
        k
        for k in dataclasses.asdict(config)
        if k not in RESUMABLE_OPTIONS and k != "data" and getattr(config, k) != getattr(stored, k)
    ]
    if changed:
        raise RunError(
            f"{run_dir}: cannot change {', '.join(f'`{k}`' for k in changed)} when resuming "
            f"(stored: {', '.join(f'{k}={getattr(stored, k)!r}' for k in changed)})"
        )


@dataclass
class TrainConfig:
    """Everything a training run uses; saved as ``config.json`` in the run directory.

    Model: ``model`` is one of :data:`MODEL_KINDS` (the Hamiltonian kinds train on the losses of
    :mod:`delan.hamiltonian_losses`, parts pdot, qd, power, forward); ``width``, ``depth``,
    ``activation`` size the networks; ``friction`` adds a learned joint-friction term (Lagrangian
    and Hamiltonian models; None = decided from the training data by :func:`decide_friction`; the
    mlp learns the total torque and refuses True); ``joint_types`` ("revolute", "prismatic" or one
    per joint, e.g. "R,P" or ["revolute", "prismatic"]; None = the data file's) makes revolute
    joints enter the networks as (sin q, cos q); ``scale_outputs`` sets a structured model's
    (DeLaN or Hamiltonian) ``mass_scale`` and ``potential_scale`` from the training data
    (:func:`output_scales`); ``model_options`` are passed on to the model's constructor (e.g.
    ``{"epsilon": 1e-3}``).

    Optimisation: Adam or AdamW (``optimizer``), optional AMSGrad; ``lr`` follows ``schedule``
    from its start value down to ``lr * lr_final`` over the run's progress (the larger of the
    fraction of epochs done and the fraction of the time budget used); ``grad_clip`` caps the
    gradient norm (None = no clipping); ``loss_weights`` overrides some or all of the weights of
    the loss terms (defaults: :data:`DEFAULT_LOSS_WEIGHTS` for the model kind); ``forward_norm``
    ("mass" or "joint") is the norm of the forward-dynamics residual (see :mod:`delan.losses`).

    Trajectory training (:mod:`delan.rollout_loss`; None = off): ``rollout_horizon`` K adds
    ``rollout_weight`` times the normalised state error of K-interval RK4 rollouts of the learned
    dynamics (``rollout_substeps`` steps per interval) from the minibatch's samples, on every
    ``rollout_every``-th minibatch, from at most ``rollout_windows`` of its samples (None = all),
    once ``rollout_start`` of the run is done (a fraction, as the learning rate's progress: the
    rollout of an untrained model is far off and its error swamps the one-step losses, so it
    fine-tunes a model that already fits them); from then on validation also scores the rollout
    of every validation window, and the best model is chosen among those epochs only (a new
    criterion). Windows stay inside a trajectory and out of validation blocks. Not for the mlp
    (no forward dynamics).

    Data: ``test`` names the held-out trajectories (never seen in training). ``validation`` is
    either a fraction: one contiguous block of that fraction of the samples of EVERY training
    trajectory, at a seeded random place (:func:`validation_blocks`), or a list of trajectory
    names validated on whole. Validation chooses the best model and drives early stopping
    (``patience`` epochs without improvement; None = never stop early). With validation 0 the
    training loss chooses.

    Budget: ``time_budget`` seconds and/or at most ``epochs`` epochs; with neither,
    :data:`DEFAULT_TIME_BUDGET` seconds (:meth:`validate` fills it in).

    Memory: ``max_memory`` GB for the data (None = :func:`delan.data.sizes.memory_limit`, half of
    the machine's): a file that would not fit in memory is streamed from disk in chunks
    (:mod:`delan.training_streaming`; validation still in memory). Under ``torchrun`` every rank
    trains on its slice of each global minibatch (:mod:`delan.distributed`).

    ``threads``: CPU threads torch may use during the run (0 = torch's default). DeLaN's networks
    are small, so one thread is usually fastest: on 2 shared cores a 64-wide model steps about
    20x faster with 1 thread than with 2 competing ones.

    ``step``: how the steps run. "cuda-graph" replays each full minibatch's step from a CUDA graph
    (:mod:`delan.training_graph`: the same kernels as the eager step without Python's launch cost;
    a loss that stops being finite is then seen at the end of its epoch), for the one-step losses
    of the Lagrangian models and the mlp on a CUDA device with the data in memory, one process;
    "eager" steps from Python; "auto" (default) takes "cuda-graph" where it applies, else "eager".
    The run prints and records (summary.json ``step_mode``) which it took and why.
    """

    data: str = ""
    test: List[str] = field(default_factory=list)
    model: str = "structured"
    width: int = 64
    depth: int = 2
    activation: str = "softplus"
    friction: Optional[bool] = None
    joint_types: Any = None
    model_options: Dict[str, Any] = field(default_factory=dict)
    scale_outputs: bool = True
    epochs: Optional[int] = None
    time_budget: Optional[float] = None
    batch_size: int = 512
    optimizer: str = "adam"
    lr: float = 1e-2
    weight_decay: float = 1e-5
    amsgrad: bool = False
    schedule: str = "cosine"
    lr_final: float = 0.01
    grad_clip: Optional[float] = None
    loss_weights: Dict[str, float] = field(default_factory=dict)
    forward_norm: str = "mass"
    rollout_horizon: Optional[int] = None
    rollout_weight: float = 1.0
    rollout_substeps: int = 1
    rollout_every: int = 1
    rollout_windows: Optional[int] = None
    rollout_start: float = 0.5
    validation: Any = 0.1
    patience: Optional[int] = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    checkpoint_every: int = 50
    quiet: bool = False
    max_memory: Optional[float] = None
    step: str = "auto"

    def validate(self) -> TrainConfig:
        """Check every option; raise RunError with one line naming the option and what is allowed."""

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise RunError(msg)

        need(self.model in MODEL_KINDS, f"`model` must be one of {', '.join(MODEL_KINDS)}, got {self.model!r}")
        need(_is_int(self.width) and self.width >= 1, f"`width` must be a positive integer, got {self.width!r}")
        need(_is_int(self.depth) and self.depth >= 1, f"`depth` must be a positive integer, got {self.depth!r}")
        need(
            self.epochs is None or (_is_int(self.epochs) and self.epochs >= 1),
            f"`epochs` must be a positive integer, got {self.epochs!r}",
        )
        need(
            self.time_budget is None or (_is_num(self.time_budget) and self.time_budget > 0),
            f"`time_budget` must be a positive number of seconds, got {self.time_budget!r}",
        )
        need(
            _is_int(self.batch_size) and self.batch_size >= 1,
            f"`batch_size` must be a positive integer, got {self.batch_size!r}",
        )
        need(
            self.optimizer in OPTIMIZERS, f"`optimizer` must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
        )
        need(_is_num(self.lr) and self.lr > 0, f"`lr` must be a positive number, got {self.lr!r}")
        need(
            _is_num(self.weight_decay) and self.weight_decay >= 0,
            f"`weight_decay` must be >= 0, got {self.weight_decay!r}",
        )
        need(self.schedule in SCHEDULES, f"`schedule` must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        need(
            _is_num(self.lr_final) and 0 < self.lr_final <= 1,
            f"`lr_final` must be a factor in (0, 1], got {self.lr_final!r}",
        )
        need(
            self.grad_clip is None or (_is_num(self.grad_clip) and self.grad_clip > 0),
            f"`grad_clip` must be a positive number, got {self.grad_clip!r}",
        )
        need(
            self.patience is None or (_is_int(self.patience) and self.patience >= 1),
            f"`patience` must be a positive integer, got {self.patience!r}",
        )
        need(_is_int(self.seed) and self.seed >= 0, f"`seed` must be a non-negative integer, got {self.seed!r}")
        need(self.step in STEP_MODES, f"`step` must be one of {', '.join(STEP_MODES)}, got {self.step!r}")
        need(self.dtype in TRAIN_DTYPES, f"`dtype` must be one of {', '.join(TRAIN_DTYPES)}, got {self.dtype!r}")
        need(
            self.device in ("cpu", "cuda") or str(self.device).startswith("cuda:"),
            f"`device` must be cpu or cuda, got {self.device!r}",
        )
        need(_is_int(self.threads) and self.threads >= 0, f"`threads` must be >= 0, got {self.threads!r}")
        need(
            _is_int(self.checkpoint_every) and self.checkpoint_every >= 1,
            f"`checkpoint_every` must be a positive integer, got {self.checkpoint_every!r}",
        )
        need(
            self.max_memory is None or (_is_num(self.max_memory) and self.max_memory > 0),
            f"`max_memory` must be a positive number of GB, got {self.max_memory!r}",
        )
        if isinstance(self.validation, (list, tuple)):
            self.validation = [str(x) for x in self.validation]
        else:
            need(
                _is_num(self.validation) and 0 <= self.validation < 1,
                f"`validation` must be a fraction in [0, 1) or trajectory names, got {self.validation!r}",
            )
        from delan.losses import FORWARD_NORMS

        need(
            self.forward_norm in FORWARD_NORMS,
            f"`forward_norm` must be one of {', '.join(FORWARD_NORMS)}, got {self.forward_norm!r}",
        )
        for k, w in self.loss_weights.items():
            need(_is_num(w) and w >= 0, f"loss weight {k!r} must be >= 0, got {w!r}")
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise RunError("`device` cuda asked for, but torch sees no CUDA device; use `device` cpu")
        if self.joint_types is not None and not isinstance(self.joint_types, str):
            self.joint_types = [str(x) for x in self.joint_types]
        _validate_rollout(self, need)
        if self.model == "mlp" and self.friction is True:
            raise RunError(
                "`friction`: the mlp baseline has no friction term (it learns the total torque); "
                "train a structured or black-box model to learn friction"
            )
        if self.epochs is None and self.time_budget is None:
            self.time_budget = DEFAULT_TIME_BUDGET
        self.test = [str(x) for x in self.test]
        return self

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise RunError(f"unknown training options {unknown}")
        return cls(**d)


def _validate_rollout(config: TrainConfig, need: Callable[[bool, str], None]) -> None:
    """The trajectory-training options (:mod:`delan.rollout_loss`), one line per bad value."""
    need(
        config.rollout_horizon is None or (_is_int(config.rollout_horizon) and config.rollout_horizon >= 1),
        f"--rollout-horizon must be an integer >= 1 (sample intervals), got {config.rollout_horizon!r}",
    )
    need(
        _is_num(config.rollout_weight) and config.rollout_weight >= 0,
        f"--rollout-weight must be a number >= 0, got {config.rollout_weight!r}",
    )
    need(
        _is_int(config.rollout_substeps) and config.rollout_substeps >= 1,
        f"--rollout-substeps must be an integer >= 1, got {config.rollout_substeps!r}",
    )
    need(
        _is_int(config.rollout_every) and config.rollout_every >= 1,
        f"--rollout-every must be an integer >= 1, got {config.rollout_every!r}",
    )
    need(
        config.rollout_windows is None or (_is_int(config.rollout_windows) and config.rollout_windows >= 1),
        f"--rollout-windows must be an integer >= 1, got {config.rollout_windows!r}",
    )
    need(
        _is_num(config.rollout_start) and 0 <= config.rollout_start < 1,
        f"--rollout-start must be a fraction of the run in [0, 1), got {config.rollout_start!r}",
    )
    need(
        config.rollout_horizon is None or config.model != "mlp",
        "--rollout-horizon: the mlp baseline has no forward dynamics to integrate (it maps q, qd, qdd to "
        "tau); train another model kind for trajectory training",
    )


def _progress(config: TrainConfig, epoch: int, elapsed: float) -> float:
    """How far the run is after ``epoch`` epochs and ``elapsed`` seconds: the larger of the
    fractions of the epochs and of the time budget done (0 where neither is set)."""
    progress = 0.0 if config.epochs is None else epoch / config.epochs
    if config.time_budget is not None:
        progress = max(progress, elapsed / config.time_budget)
    return progress


def _rollout_on(config: TrainConfig, epoch: int, elapsed: float) -> bool:
    """Does the rollout loss train in this epoch: once the run's :func:`_progress` (the learning
    rate's) reaches ``config.rollout_start``."""
    if not (config.rollout_horizon and config.rollout_weight):
        return False
    return _progress(config, epoch, elapsed) >= config.rollout_start


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


# -- the result of a run ------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`train_run` returns: the run directory, the trained (best) model and its history.

    ``history`` holds one dict per epoch (the rows of ``log.jsonl``); ``summary`` the contents of
    ``summary.json``.
    """

    path: str
    model: nn.Module
    config: TrainConfig
    history: List[Dict[str, Any]]
    summary: Dict[str, Any]

    def __fspath__(self) -> str:
        return self.path


# -- building blocks ---------------------------------------------------------------------------
def decide_friction(trajectories: Sequence) -> Tuple[bool, List[float]]:
    """Whether to learn friction when not told: (learn it, per-joint evidence), learned when
    :func:`delan.friction.coulomb_evidence` of the trajectories reaches :data:`FRICTION_EVIDENCE`
    on some joint."""
    from delan.friction import coulomb_evidence

    trajectories = list(trajectories)
    evidence = coulomb_evidence([tr.qd for tr in trajectories], [tr.tau for tr in trajectories])
    return bool((evidence >= FRICTION_EVIDENCE).any()), [round(float(x), 3) for x in evidence]


def build_model(
    config: TrainConfig,
    n_dof: int,
    revolute: Optional[Sequence[bool]] = None,
    scales: Optional[Dict[str, Any]] = None,
    friction: Optional[bool] = None,
) -> nn.Module:
    """The model named by ``config.model``, sized by the config, in its dtype and on its device.

    ``revolute`` (one flag per joint, from :func:`resolve_joint_types`) makes those joints enter
    the networks as (sin q, cos q); a ``revolute`` in ``config.model_options`` must agree with it.
    ``scales`` (:func:`output_scales`) set a structured model's mass and potential scales unless
    ``config.model_options`` sets them. ``friction`` is used where ``config.friction`` is None
    (default: no friction).
    """
    from delan import models

    kw = dict(
        width=config.width,
        depth=config.depth,
        activation=config.activation,
        dtype=DTYPES[config.dtype],
        device=config.device,
    )
    opts = dict(config.model_options)
    friction = bool(friction) if config.friction is None else bool(config.friction)
    if revolute is not None and any(revolute):
        given = opts.get("revolute")
        if given is not None and [bool(x) for x in given] != [bool(x) for x in revolute]:
            raise RunError(
                f"model option revolute={list(given)} contradicts the joint types "
                f"{['revolute' if r else 'prismatic' for r in revolute]}"
            )
        opts["revolute"] = [bool(x) for x in revolute]
    if config.model in ("structured", "hamiltonian") and scales:
        for k, v in scales.items():
            opts.setdefault(k, v)
    if config.model == "black-box-hamiltonian" and scales:
        opts.setdefault("mass_scale", scales["mass_scale"])
        opts.setdefault("energy_scale", scales["potential_scale"])
    try:
        if config.model == "structured":
            model = models.DeepLagrangianNetwork(n_dof, friction=friction, **kw, **opts)
        elif config.model == "black-box":
            model = models.BlackBoxLagrangianNetwork(n_dof, friction=friction, **kw, **opts)
        elif config.model == "hamiltonian":
            model = models.DeepHamiltonianNetwork(n_dof, friction=friction, **kw, **opts)
        elif config.model == "black-box-hamiltonian":
            model = models.BlackBoxHamiltonianNetwork(n_dof, friction=friction, **kw, **opts)
        else:
            model = models.FeedForwardModel(n_dof, **kw, **opts)
    except (TypeError, ValueError, KeyError) as exc:
        # unknown activation, bad model option, ...: a user error, not a crash
        raise RunError(f"cannot build a {config.model} model: {exc}") from None
    return model.to(dtype=DTYPES[config.dtype], device=config.device)


def output_scales(arrays: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """Typical sizes of H's diagonal and of V from training data, for the structured model's
    ``mass_scale`` and ``potential_scale`` (its outputs then start at the data's scale: a 7-DoF
    arm's inertias span 3 orders of magnitude, which one network init cannot match).

    mass_scale: :func:`delan.losses.typical_inertia`; potential_scale: the RMS over joints of
    std(tau_i). Only orders of magnitude matter.
    """
    from delan.losses import typical_inertia

    tau = np.asarray(arrays["tau"], float)
    mass = typical_inertia(arrays["q"], arrays["qd"], arrays["qdd"], tau)
    return {"mass_scale": [float(x) for x in mass], "potential_scale": float(np.sqrt(np.mean(tau.std(0) ** 2)))}


def learning_rate(config: TrainConfig, progress: float) -> float:
    """The learning rate at ``progress`` in [0, 1] of the run under ``config.schedule``."""
    p = min(max(progress, 0.0), 1.0)
    if config.schedule == "cosine":
        factor = config.lr_final + (1 - config.lr_final) * 0.5 * (1 + math.cos(math.pi * p))
    elif config.schedule == "exponential":
        factor = config.lr_final**p
    else:
        factor = 1.0
    return config.lr * factor


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam or AdamW as ``config`` says; on CUDA ``capturable`` (its step counts live on the GPU),
    so that eager and CUDA-graph steps (:mod:`delan.training_graph`) do the same arithmetic."""
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(
        model.parameters(),
        lr=config.lr,
        weight_decay=config.weight_decay,
        amsgrad=config.amsgrad,
        capturable=_on_cuda(config),
    )


def _on_cuda(config: TrainConfig) -> bool:
    return str(config.device).startswith("cuda")


def step_mode(config: TrainConfig, streaming: bool, distributed: bool) -> Dict[str, str]:
    """How a run's steps go: {"mode": "cuda-graph" or "eager", "why": ...} (see TrainConfig.step);
    RunError if ``config.step`` asks for "cuda-graph" where it does not apply."""
    if config.step == "eager":
        return {"mode": "eager", "why": "asked for (step eager)"}
    blocked = [
        (not _on_cuda(config), f"the device is {config.device}, not CUDA"),
        (config.model in HAMILTONIAN_KINDS, f"the {config.model} model's losses are not captured"),
        (bool(config.rollout_horizon and config.rollout_weight), "the rollout loss is on"),
        (streaming, "the data is streamed from disk"),
        (distributed, "the run is distributed (torchrun)"),
    ]
    why = [reason for hit, reason in blocked if hit]
    if not why:
        how = "asked for" if config.step == "cuda-graph" else "auto"
        return {"mode": "cuda-graph", "why": f"{how}: CUDA, data in memory, one-step losses"}
    if config.step == "cuda-graph":
        raise RunError(f"`step` cuda-graph does not apply here: {'; '.join(why)}; use `step` auto or eager")
    return {"mode": "eager", "why": "auto: " + "; ".join(why)}


def make_loss(
    config: TrainConfig, train: Dict[str, Tensor], model: Optional[nn.Module] = None, solve: Optional[Callable] = None
) -> Callable[[nn.Module, Dict[str, Tensor]], Tuple[Tensor, Dict[str, Tensor]]]:
    """loss(model, batch) -> (total, parts): :func:`delan.losses.delan_loss` with the per-joint
    scales of the training targets, so every joint and every term weighs alike whatever its units.

    ``config.loss_weights`` overrides some or all of :data:`DEFAULT_LOSS_WEIGHTS` of the model
    kind, and those the model's own ``default_loss_weights`` (the parts no one names keep the
    model's own defaults, not another model's). ``solve`` is the forward part's SPD solve (None:
    :func:`delan.losses.delan_loss`'s default)."""
    from delan import losses

    scales = losses.Normaliser.from_data(q=train["q"], qd=train["qd"], qdd=train["qdd"], tau=train["tau"])
    if config.model in HAMILTONIAN_KINDS:
        from delan import hamiltonian_losses as hl

        try:
            weights = hl.resolve_hamiltonian_weights(dict(DEFAULT_LOSS_WEIGHTS[config.model], **config.loss_weights))
        except ValueError:
            raise RunError(
                f"unknown loss weights {sorted(config.loss_weights)} for a {config.model} model; "
                f"known: {', '.join(hl.HAMILTONIAN_PARTS)}"
            ) from None
        qd_var = hl.velocity_variance(train["qd"])

        def one_step(model: nn.Module, batch: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, Tensor]]:
            return hl.hamiltonian_loss(model, batch, scales, qd_var, weights, forward_norm=config.forward_norm)
    else:
        try:
            wanted = dict(DEFAULT_LOSS_WEIGHTS.get(config.model, {}), **config.loss_weights)
            weights = losses.resolve_weights(wanted or None, getattr(model, "default_loss_weights", None))
        except ValueError:
            raise RunError(
                f"unknown loss weights {sorted(config.loss_weights)}; known: {', '.join(losses.PARTS)}"
            ) from None

        def one_step(model: nn.Module, batch: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, Tensor]]:
            return losses.delan_loss(model, batch, scales, weights, forward_norm=config.forward_norm, solve=solve)

    rollout = None
    if config.rollout_horizon and config.rollout_weight:
        from delan.rollout_loss import RolloutLoss

        rollout = RolloutLoss.from_data(train["q"], train["qd"], config.rollout_substeps)

    def loss(model: nn.Module, batch: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, Tensor]]:
        total, parts = one_step(model, batch)
        if rollout is not None and getattr(loss, "rollout_on", True):
            from delan.rollout_loss import add_rollout_part

            total, parts = add_rollout_part(
                total, parts, rollout, model, batch, config.rollout_weight, config.rollout_every, config.rollout_windows
            )
        return total, parts

    return loss


# -- files ---------------------------------------------------------------------------------------
def save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    """torch.save ``state`` atomically (temporary file + os.replace)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; RunError if missing or corrupt."""
    if not os.path.exists(path):
        raise RunError(f"{path}: no checkpoint to resume from")
    try:
        # weights_only: a checkpoint holds tensors, numbers and strings only, so nothing in the
        # file can run code when it is loaded
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RunError(f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path}: not a DeLaN training checkpoint")
    _check_version(path, "checkpoint", state.get("version"), CHECKPOINT_VERSIONS)
    return state


def _check_version(path: str, what: str, version: Any, known: Sequence[int]) -> None:
    """RunError naming the file and the version unless ``version`` is one this library reads."""
    if version not in known or isinstance(version, bool):
        reads = f"version {known[0]}" if len(known) == 1 else f"versions {', '.join(map(str, known))}"
        raise RunError(
            f"{path}: {what} format version {version!r} is not supported (this delan reads "
            f"{reads}); it was written by another delan version"
        )


def write_config(run_dir: str, config: TrainConfig) -> None:
    """``config.json``: the TrainConfig's fields plus its format and version."""
    atomic_write_json(
        os.path.join(run_dir, CONFIG_FILE), dict(format=CONFIG_FORMAT, version=CONFIG_VERSION, **config.to_dict())
    )


def read_config(run_dir: str) -> TrainConfig:
    """The TrainConfig of a run directory; RunError if it is not one (or of an unknown version)."""
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isdir(run_dir):
        raise RunError(f"{run_dir}: no such run directory")
    if not os.path.exists(path):
        raise RunError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    d = _json_object(path, "run configuration")
    fmt, version = d.pop("format", CONFIG_FORMAT), d.pop("version", 1)  # files before versions: 1
    if fmt != CONFIG_FORMAT:
        raise RunError(f"{path}: not a DeLaN run configuration (format {fmt!r})")
    _check_version(path, "run configuration", version, (CONFIG_VERSION,))
    try:
        return TrainConfig.from_dict(d)
    except (ValueError, TypeError, RunError) as exc:
        raise RunError(f"{path}: corrupt run configuration ({exc})") from None


def _json_object(path: str, what: str) -> Dict[str, Any]:
    """The JSON object in ``path``; RunError "corrupt <what>" for anything else."""
    try:
        with open(path) as f:
            d = json.load(f)
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise RunError(f"{path}: corrupt {what} ({exc})") from None
    return d


def read_run_data(run_dir: str) -> Dict[str, Any]:
    """``data.json`` of a run directory ({} when absent: runs of older versions may lack it)."""
    path = os.path.join(os.fspath(run_dir), DATA_FILE)
    if not os.path.exists(path):
        return {}
    d = _json_object(path, "run data record")
    _check_version(path, "run data record", d.get("version", 1), (DATA_VERSION,))
    return d


class EpochLog:
    """Appends one row per epoch to ``log.csv`` and ``log.jsonl``.

    On resume, rows of epochs after the checkpoint (written by the killed run before it died) are
    dropped first, so the log reads as if the run had never stopped.
    """

    def __init__(self, run_dir: str, keep_epochs: int = 0):
        self.csv_path = os.path.join(run_dir, LOG_CSV)
        self.jsonl_path = os.path.join(run_dir, LOG_JSONL)
        self.rows: List[Dict[str, Any]] = []
        if keep_epochs > 0 and os.path.exists(self.jsonl_path):
            with open(self.jsonl_path) as f:
                for line in f:
                    line = line.strip()
                    if line:
                        row = json.loads(line)
                        if row["epoch"] <= keep_epochs:
                            self.rows.append(row)
        self.columns: Optional[List[str]] = list(self.rows[0]) if self.rows else None
        # rewrite both files from the kept rows (atomically) so they agree with the checkpoint
        atomic_write_bytes(self.jsonl_path, "".join(json.dumps(r) + "\n" for r in self.rows).encode())
        atomic_write_bytes(self.csv_path, self._csv(self.rows, header=True).encode())

    def _csv(self, rows: List[Dict[str, Any]], header: bool) -> str:
        if not rows and self.columns is None:
            return ""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns or list(rows[0]), extrasaction="ignore", lineterminator="\n")
        if header:
            w.writeheader()
        w.writerows(rows)
        return buf.getvalue()

    def append(self, row: Dict[str, Any]) -> None:
        header = self.columns is None
        if header:
            self.columns = list(row)
        self.rows.append(row)
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        with open(self.csv_path, "a") as f:
            f.write(self._csv([row], header=header))


class _RowLog:
    """The epoch rows of a rank that writes no files (under torchrun, all but rank 0)."""

    def __init__(self) -> None:
        self.rows: List[Dict[str, Any]] = []

    def append(self, row: Dict[str, Any]) -> None:
        self.rows.append(row)


def _dist():
    """This process's place in a torchrun group (:func:`delan.distributed.current`)."""
    from delan.distributed import current

    return current()


# -- evaluation of the loss on a whole set -----------------------------------------------------
def mean_loss(loss_fn, model: nn.Module, data: Dict[str, Tensor], batch_size: int = 4096) -> Dict[str, float]:
    """Sample-weighted mean of the total loss and of each term over ``data``, without gradients.

    DeLaN's derivatives are closed-form network outputs, so no autograd graph is needed here.
    """
    n = data["q"].shape[0]
    sums: Dict[str, float] = {}
    with torch.no_grad():
        for i in range(0, n, batch_size):
            batch = {k: v[i : i + batch_size] for k, v in data.items()}
            total, parts = loss_fn(model, batch)
            b = batch["q"].shape[0]
            for k, v in [("loss", total)] + list(parts.items()):
                sums[k] = sums.get(k, 0.0) + float(v) * b
    return {k: v / n for k, v in sums.items()}


# -- the trainer -----------------------------------------------------------------------------
def train_run(
    config: TrainConfig,
    run_dir: str,
    resume: bool = False,
    force: bool = False,
    stop_after: Optional[int] = None,
    progress: Optional[bool] = None,
) -> TrainResult:
    """Train a model as ``config`` says and keep everything in ``run_dir`` (see :func:`_train`).

    Runs with ``config.threads`` torch threads and restores the caller's setting afterwards; holds
    the run directory's lock (:mod:`delan.runlock`) for the whole run and releases it however the
    run ends.
    """
    before = torch.get_num_threads()
    if config.threads and config.threads > 0:
        torch.set_num_threads(int(config.threads))
    from delan import distributed

    joined = distributed.launched_by_torchrun() and not distributed.current().active
    if joined:
        distributed.init_from_env(config.device)
    try:
        with ExitStack() as stack:
            return _train(config, run_dir, resume, force, stop_after, progress, stack)
    finally:
        torch.set_num_threads(before)
        if joined:
            distributed.shutdown()


class _StopSignals:
    """While active (main thread only): SIGINT / SIGTERM set ``received`` to the signal number, and
    the trainer stops after its current step with a checkpoint; a second signal stops at once
    (KeyboardInterrupt; every file is written atomically). A signal the caller ignores stays
    ignored."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._old: Dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                try:
                    if signal.getsignal(s) is signal.SIG_IGN:
                        continue
                    self._old[s] = signal.signal(s, self._handle)
                except (ValueError, OSError):
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old.clear()


def _numerical_failure(exc: BaseException, model: nn.Module) -> bool:
    """Is ``exc`` (raised by the loss) the model's numbers going bad rather than a bug or bad input:
    a failed Cholesky / linear solve, an indefinite learned mass matrix, or weights that are no
    longer finite?"""
    if isinstance(exc, (torch.linalg.LinAlgError, IndefiniteMassMatrixError)):
        return True
    return not _finite_weights(model)


def _finite_weights(model: nn.Module) -> bool:
    with torch.no_grad():
        return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _train(
    config: TrainConfig,
    run_dir: str,
    resume: bool,
    force: bool,
    stop_after: Optional[int],
    progress: Optional[bool],
    stack: ExitStack,
) -> TrainResult:
    """Train a model as ``config`` says and keep everything in ``run_dir``.

    Args:
        config: the options (``config.data`` is the data file; ``config.test`` the held-out names).
            On resume only the options in :data:`RESUMABLE_OPTIONS` may differ from the stored ones,
            and ``config.data`` may name another path holding the same data (content fingerprint).
        run_dir: the run directory; must not exist (or be empty) unless ``resume`` or ``force``.
        resume: continue from ``run_dir/checkpoint.pt``.
        force: start afresh in an existing run directory, deleting the files of the old run.
        stop_after: stop (as if killed, after checkpointing) once this many epochs are done in
            total; for interrupting a run on purpose and for tests of resume.
        progress: show a tqdm bar; None = only when stderr is a terminal and not ``config.quiet``.
        stack: holds the run directory's lock, the signal handlers and the progress bar until the
            caller closes it (:func:`train_run`).
    Returns:
        TrainResult with the best model (also saved as ``run_dir/model.pt``).
    Raises:
        DataError for bad data or held-out names, RunError for bad options, an existing or busy
        run directory, other data on resume, a corrupt checkpoint; TrainingDiverged for a loss that
        stops being finite (``model.pt``: the best model so far; the last good checkpoint is kept);
        TrainingInterrupted after SIGINT / SIGTERM (checkpoint of the last step written).
    """
    run_dir = os.fspath(run_dir)
    signals = stack.enter_context(_StopSignals())  # from here on a signal stops at the next safe point
    checkpoint = _open_run(config, run_dir, resume, force, stack)
    data = _load_data(config, _data_mode(config, run_dir, resume))
    run = _build(config, run_dir, data, signals)
    if checkpoint is not None:
        run.restore(checkpoint)
    else:
        _record_new_run(run, force, stack)
    show = (not config.quiet and sys.stderr.isatty()) if progress is None else progress
    show = show and run.dist.is_main
    if run.dist.is_main and not config.quiet and (data.source is not None or config.max_memory is not None):
        from delan.training_streaming import line

        print(line(data.mode, data.source), flush=True)
    if run.dist.is_main and not config.quiet and _on_cuda(config):
        print(f"steps: {run.steps['mode']} ({run.steps['why']})", flush=True)
    run.start(_progress_bar(config.epochs, run.epoch, show))
    stack.callback(run.bar.close)  # however the run ends
    if run.agreed_signal()[0] is not None:  # a signal while the run was set up: stop before the first step
        if checkpoint is None:
            run.checkpoint()  # so that the new run can be resumed
        raise run.interrupted("setting up, before its first step")

    reason = _stop_reason(run, stop_after, epoch_done=False)
    while not reason:
        lr, rollout_on, sums = _one_epoch(run)
        _end_epoch(run, lr, rollout_on, sums)
        reason = _stop_reason(run, stop_after, epoch_done=True)
        signalled = run.agreed_signal()[0] is not None
        # a checkpoint every N epochs, whenever the run stops, and on a signal
        if reason or run.epoch % config.checkpoint_every == 0 or signalled:
            run.checkpoint()
        if signalled and reason in ("", "stopped"):
            # a signal outranks `stop_after` (both pause the run), not a rule that ends it
            raise run.interrupted(f"step {run.step}, the end of epoch {run.epoch}")
    return _finish(run, reason)


# -- the steps of a run, in the order _train takes them ----------------------------------------
def _open_run(
    config: TrainConfig, run_dir: str, resume: bool, force: bool, stack: ExitStack
) -> Optional[Dict[str, Any]]:
    """Check the options and the run directory. On resume: lock the directory, check that only
    resumable options changed and that the data is the same, and return its checkpoint. A new
    run's directory is only checked here; :func:`_record_new_run` creates and locks it once
    everything has checked out."""
    main = _dist().is_main  # under torchrun rank 0 alone owns the run directory
    if not resume:
        config.validate()
        if main:
            _check_run_dir(run_dir, force)  # before the data is read
        return None
    from delan.fingerprint import data_fingerprint

    stored = read_config(run_dir)
    if main:
        stack.enter_context(RunLock(run_dir))  # no second run may resume (or write) it meanwhile
    config.data = os.fspath(config.data) if config.data else stored.data
    check_resume_changes(run_dir, stored, config)
    check_resume_data(run_dir, stored, config.data, data_fingerprint)
    checkpoint = load_checkpoint(os.path.join(run_dir, CHECKPOINT_FILE))
    if checkpoint.get("model") != config.model:
        raise RunError(f"{run_dir}: checkpoint holds a {checkpoint.get('model')} model, config says {config.model}")
    config.validate()
    return checkpoint


@dataclass
class _Data:
    """What the data gives a run: the split into training, validation and test, as tensors."""

    path: str  # the data file as given (a new run records its absolute path)
    n_dof: int
    rest: Any  # the Dataset of the trajectories not held out for testing
    joint_types: Optional[List[str]]
    train_names: List[str]
    val_names: List[str]  # whole validation trajectories (else time blocks, or none)
    train_arrays: Dict[str, np.ndarray]
    train: Dict[str, Tensor]
    val: Optional[Dict[str, Tensor]]
    validation: Dict[str, Any]  # the scheme, for data.json and summary.json
    source: Any = None  # a StreamingSource when the training samples are streamed (train: a sample of them)
    mode: Dict[str, Any] = field(default_factory=dict)  # how the data is held, and why

    @property
    def n_train(self) -> int:
        return self.source.n_samples if self.source is not None else self.train["q"].shape[0]

    @property
    def n_val(self) -> int:
        return 0 if self.val is None else self.val["q"].shape[0]


def _data_mode(config: TrainConfig, run_dir: str, resume: bool) -> Dict[str, Any]:
    """How the run holds its data (:mod:`delan.training_streaming`): a resumed run as it began, a
    new one in memory unless that would exceed ``config.max_memory``. A file the streaming index
    cannot read goes the in-memory way, whose loader names what is wrong with it."""
    from delan import training_streaming as ts

    if resume:
        return dict(read_run_data(run_dir).get("data_mode") or {"mode": "in memory"})
    try:
        return ts.decide(config, ts.index_file(config.data))
    except (DataError, OSError, KeyError, ValueError, TypeError):
        return {"mode": "in memory"}


def _load_data(config: TrainConfig, mode: Optional[Dict[str, Any]] = None) -> _Data:
    """Load ``config.data``: hold out the test trajectories (they never enter training), set
    validation aside (whole trajectories, or a block of time in every training trajectory), and
    make the tensors (with the rollout windows when trajectory training is on). With ``mode``
    "streaming" the training samples stay in the file (:mod:`delan.training_streaming`)."""
    from delan.data import load_dataset

    mode = dict(mode or {"mode": "in memory"})
    if mode["mode"] == "streaming":
        from delan import training_streaming as ts

        return _Data(**ts.load_streaming(config, ts.index_file(config.data), mode, DTYPES[config.dtype], config.device))
    ds = load_dataset(config.data)
    rest = ds.split(config.test)[1] if config.test else ds
    if len(rest) == 0:
        raise DataError(f"{config.data}: every trajectory is held out by `test`; nothing left to train on")
    joint_types = resolve_joint_types(config, ds)
    val_names = choose_validation(rest.names, config.validation, config.seed)
    blocks = (
        {} if val_names else validation_blocks({tr.name: len(tr) for tr in rest}, float(config.validation), config.seed)
    )
    train_arrays, val_arrays = split_samples(rest, val_names, blocks)
    dtype = DTYPES[config.dtype]
    train = to_tensors(train_arrays, dtype, config.device)
    val = to_tensors(val_arrays, dtype, config.device) if val_arrays is not None else None
    if config.rollout_horizon:  # windows of K intervals inside each contiguous segment
        from delan.rollout_loss import add_windows

        add_windows(train, val, rest, val_names, blocks, config.rollout_horizon)
    n_val = 0 if val is None else val["q"].shape[0]
    return _Data(
        path=config.data,
        n_dof=ds.n_dof,
        rest=rest,
        joint_types=joint_types,
        train_names=[x for x in rest.names if x not in val_names],
        val_names=val_names,
        train_arrays=train_arrays,
        train=train,
        val=val,
        validation=describe_validation(rest, val_names, blocks, n_val),
        mode=mode,
    )


@dataclass
class _Run:
    """A run's state from build to finish: what the steps share and what a checkpoint holds.

    ``epoch`` counts the finished epochs; ``elapsed`` the training seconds of this and earlier
    sessions, brought up to date by :meth:`tick`.
    """

    config: TrainConfig
    run_dir: str
    data: _Data
    signals: _StopSignals
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[..., Tuple[Tensor, Dict[str, Tensor]]]
    shuffle: torch.Generator  # the minibatch order
    friction: Dict[str, Any]
    epoch: int = 0
    step: int = 0
    elapsed: float = 0.0
    best: Dict[str, Any] = field(default_factory=lambda: {"loss": math.inf, "epoch": 0, "state": None, "bad_epochs": 0})
    partial: Optional[Dict[str, Any]] = None  # a checkpoint written inside an epoch: where to go on
    start_epoch: int = 0
    checkpoint_epoch: Optional[int] = None  # of the checkpoint on disk
    fallback: Dict[str, Tensor] = field(default_factory=dict)  # "last good" weights before any best
    dist: Any = None  # delan.distributed.Dist: this process's rank (rank 0 alone writes the run directory)
    parallel: Any = None  # delan.distributed.ParallelLoss under torchrun
    steps: Dict[str, str] = field(default_factory=lambda: {"mode": "eager", "why": ""})  # step_mode()
    graphed: Any = None  # delan.training_graph.GraphedSteps when the steps replay a CUDA graph
    log: Optional[EpochLog] = None
    bar: Any = None
    _clock: Tuple[float, float] = (0.0, 0.0)  # (elapsed, perf_counter) when this session began

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.run_dir, CHECKPOINT_FILE)

    def restore(self, checkpoint: Dict[str, Any]) -> None:
        """Go on from ``checkpoint``: weights, optimiser moments, generators, counters, best so far."""
        try:
            self.model.load_state_dict(checkpoint["model_state"])
            self.optimizer.load_state_dict(checkpoint["optimizer_state"])
            from delan.training_graph import set_capturable

            set_capturable(self.optimizer, _on_cuda(self.config))  # as this run's device needs
            self.shuffle.set_state(checkpoint["rng"]["shuffle"])
            torch.set_rng_state(checkpoint["rng"]["torch"])
            self.epoch, self.step, self.elapsed = checkpoint["epoch"], checkpoint["step"], checkpoint["elapsed"]
            self.best = dict(checkpoint["best"])
            self.partial = checkpoint.get("partial")
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise RunError(f"{self.run_dir}/{CHECKPOINT_FILE}: does not fit the configured model ({exc})") from None
        self.checkpoint_epoch = self.epoch

    def start(self, bar: Any) -> None:
        """Open the log (dropping rows after the checkpoint), note the weights the run starts
        from and start the clock."""
        self.start_epoch = self.epoch
        self.log = EpochLog(self.run_dir, keep_epochs=self.epoch) if self.dist.is_main else _RowLog()
        self.fallback = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.bar = bar
        self._clock = (self.elapsed, time.perf_counter())

    def tick(self) -> None:
        before, since = self._clock
        self.elapsed = before + time.perf_counter() - since

    def checkpoint(self, within: Optional[Dict[str, Any]] = None) -> None:
        """Write checkpoint.pt for the current step (``within``: where inside the epoch it is)."""
        self.checkpoint_epoch = self.epoch
        if not self.dist.is_main:
            return
        save_checkpoint(
            self.checkpoint_path,
            {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "model": self.config.model,
                "model_config": dict(getattr(self.model, "config", {})),
                "model_state": self.model.state_dict(),
                "optimizer_state": self.optimizer.state_dict(),
                "rng": {"shuffle": self.shuffle.get_state(), "torch": torch.get_rng_state()},
                "epoch": self.epoch,
                "step": self.step,
                "elapsed": self.elapsed,
                "best": self.best,
                **({"partial": within} if within is not None else {}),
            },
        )
        self.checkpoint_epoch = self.epoch

    def summary(self, stop_reason: str, finished: bool, epochs: int) -> Dict[str, Any]:
        """The contents of summary.json after ``epochs`` epochs."""
        d, best = self.data, self.best
        return {
            "epochs": epochs,
            "steps": self.step,
            "seconds": round(self.elapsed, 3),
            "stop_reason": stop_reason,
            "best_epoch": best["epoch"],
            "best_loss": best["loss"],
            "finished": finished,
            "best_epoch_fraction": round(best["epoch"] / epochs, 4) if epochs else None,
            "selected_by": "validation loss" if d.val is not None else "training loss",
            "validation": d.validation,
            "joint_types": d.joint_types,
            "friction": self.friction,
            "n_train_samples": d.n_train,
            "n_validation_samples": d.n_val,
            "train_trajectories": d.train_names,
            "validation_trajectories": d.val_names,
            "test_trajectories": list(self.config.test),
            "data_mode": d.mode,
            "step_mode": self.steps_summary(),
            **({"world_size": self.dist.world} if self.dist.active else {}),
        }

    def steps_summary(self) -> Dict[str, Any]:
        """How the steps ran: step_mode()'s answer, and whether (or why not) a graph was captured."""
        out: Dict[str, Any] = dict(self.steps)
        if self.graphed is not None:
            out["captured"] = self.graphed.captured
            if self.graphed.note:
                out["note"] = self.graphed.note
        return out

    def diverged(self, epoch: int, what: str) -> TrainingDiverged:
        """Stop in (1-based) ``epoch``: model.pt = the best model so far (else the weights the run
        started from), the checkpoint on disk is left alone, summary.json says why; the error to raise."""
        good = self.best["state"] is not None
        self.model.load_state_dict(self.best["state"] if good else self.fallback)
        self.model.eval()
        if self.dist.is_main:
            save_model(self.model, os.path.join(self.run_dir, MODEL_FILE))
        summary = self.summary("diverged", False, epoch - 1)
        summary["diverged"] = {
            "epoch": epoch,
            "step": self.step,
            "what": what,
            "checkpoint_epoch": self.checkpoint_epoch,
        }
        summary["model_epoch"] = self.best["epoch"] if good else self.start_epoch
        if self.dist.is_main:
            atomic_write_json(os.path.join(self.run_dir, SUMMARY_FILE), summary)
        kept = (
            f"the last good checkpoint (epoch {self.checkpoint_epoch}) is kept"
            if self.checkpoint_epoch is not None
            else "no checkpoint had been written yet"
        )
        saved = (
            f"model.pt holds the best model so far (epoch {self.best['epoch']})"
            if good
            else f"model.pt holds the weights of epoch {self.start_epoch} (no epoch had finished well)"
        )
        return TrainingDiverged(
            f"{self.run_dir}: training diverged at epoch {epoch} (step {self.step}): {what}; "
            f"{saved}; {kept}; try a smaller `lr` (now {self.config.lr:g}) or `grad_clip`"
        )

    def failed(self, exc: BaseException, epoch: int, what: str, message: str) -> RunError:
        """The error for ``exc`` raised by the loss in (1-based) ``epoch``: divergence (``what``)
        when the model's numbers went bad, else a one-line RunError (``message``)."""
        if _numerical_failure(exc, self.model):
            return self.diverged(epoch, what)
        return RunError(message)

    def step_failed(self, exc: BaseException) -> RunError:
        """:meth:`failed` for ``exc`` raised by a training step of the epoch under way."""
        what = first_line(exc)
        return self.failed(
            exc, self.epoch + 1, what, f"training stopped at epoch {self.epoch + 1} (step {self.step}): {what}"
        )

    def agreed_signal(self, bad: bool = False) -> Tuple[Optional[int], bool]:
        """(the signal that stops the run here or None, whether ``bad`` holds). Under torchrun the
        ranks decide together, in one collective, so every rank must ask at the same point: any
        rank's signal or ``bad`` counts. The scheduler's SIGTERM reaches the ranks at slightly
        different times, and a rank that stopped alone would leave the others waiting in their
        next collective."""
        received = self.signals.received
        if self.dist.active:
            bad_any, signum = self.dist.max_ints([int(bad), int(received or 0)])
            bad, received = bool(bad_any), signum or None
            if received is not None:  # never cleared here: a signal may land during the collective
                self.signals.received = received
        return received, bad

    def interrupted(self, where: str) -> TrainingInterrupted:
        """Stop after a signal (the checkpoint is written): summary.json says so; the error to raise."""
        signum = int(self.signals.received)
        if self.dist.is_main:
            summary = self.summary("interrupted", False, self.epoch)
            atomic_write_json(os.path.join(self.run_dir, SUMMARY_FILE), summary)
        return TrainingInterrupted(
            f"{signal.Signals(signum).name}: training stopped after {where}; the checkpoint {self.checkpoint_path} "
            f"holds it; continue with `delan train {self.config.data} -o {self.run_dir} --resume`",
            exit_code=128 + signum,
        )


def _build(config: TrainConfig, run_dir: str, data: _Data, signals: _StopSignals) -> _Run:
    """The model (seeded initial weights; friction as the option or the data say), optimiser,
    loss and minibatch generator of a run at epoch 0."""
    torch.manual_seed(config.seed)  # the initial weights
    revolute = None if data.joint_types is None else [x == "revolute" for x in data.joint_types]
    if config.friction is None and config.model != "mlp":
        learn, evidence = decide_friction(data.rest)
        friction = {
            "learned": learn,
            "decided": "from the data",
            "coulomb_evidence": evidence,
            "threshold": FRICTION_EVIDENCE,
        }
    elif config.model == "mlp":
        friction = {"learned": False, "decided": "the mlp has no friction term"}
    else:
        friction = {"learned": bool(config.friction), "decided": "by the friction option"}
    scales = output_scales(data.train_arrays) if config.scale_outputs else None
    model = build_model(config, data.n_dof, revolute, scales, friction["learned"])
    optimizer = make_optimizer(config, model)
    dist = _dist()
    steps = step_mode(config, streaming=data.source is not None, distributed=dist.active)
    graph = steps["mode"] == "cuda-graph"
    from delan.dynamics import solve_spd_unchecked

    # a graph cannot wait on the host: the forward part's solve reports a failure as NaN instead
    loss_fn = make_loss(config, data.train, model, solve=solve_spd_unchecked if graph else None)
    shuffle = torch.Generator(device="cpu").manual_seed(config.seed)
    run = _Run(config, run_dir, data, signals, model, optimizer, loss_fn, shuffle, friction, dist=dist, steps=steps)
    if graph:
        from delan.training_graph import GraphedSteps

        run.graphed = GraphedSteps(model, optimizer, loss_fn, data.train, config.batch_size, config.grad_clip)
    if run.dist.active:
        from delan.distributed import ParallelLoss

        run.parallel = ParallelLoss(model, loss_fn, run.dist)
    return run


def _record_new_run(run: _Run, force: bool, stack: ExitStack) -> None:
    """Create and lock a new run's directory (the data has loaded, so nothing is written for a
    run that cannot start), and write config.json and data.json."""
    from delan.fingerprint import data_fingerprint

    config, data = run.config, run.data
    # rank 0 alone reads the whole file for its fingerprint; a signal meanwhile still stops here
    fingerprint = data_fingerprint(data.path) if run.dist.is_main else None
    signum = run.agreed_signal()[0]
    if signum is not None:
        raise TrainingInterrupted(
            f"{signal.Signals(signum).name}: stopped before training started; nothing was written to {run.run_dir}",
            128 + signum,
        )
    config.data = os.path.abspath(data.path)  # the record must not depend on today's cwd
    if not run.dist.is_main:  # rank 0 writes the run directory
        return
    _prepare_run_dir(run.run_dir, force, stack)
    meta = dict(
        config.to_dict(),
        format=DATA_FORMAT,
        version=DATA_VERSION,
        data_file=dict(path=config.data, **fingerprint),
        n_dof=data.n_dof,
        joint_types=data.joint_types,
        friction=run.friction,
        train_trajectories=data.train_names,
        validation=data.validation,
        n_train_samples=data.n_train,
        n_validation_samples=data.n_val,
        data_mode=data.mode,
    )
    write_config(run.run_dir, config)
    atomic_write_json(os.path.join(run.run_dir, DATA_FILE), meta)


def _one_epoch(run: _Run) -> Tuple[float, bool, Dict[str, float]]:
    """Step on the minibatches of one epoch (or of the rest of the epoch a checkpoint was written
    in); returns its learning rate, whether the rollout loss trained, and the sample-weighted sums
    of the loss terms. A signal stops it after the current step with a checkpoint of that step."""
    config, n_train, d = run.config, run.data.n_train, run.dist
    perm, seed = None, None  # the epoch's order: a permutation in memory, a seed when streaming
    if run.partial is not None:  # resuming inside an epoch: its order, lr and sums so far
        p, run.partial = run.partial, None
        lr, first = float(p["lr"]), int(p["pos"])
        if "perm" in p:
            perm = p["perm"].to(config.device)
        else:
            seed = int(p["seed"])
        sums: Dict[str, float] = dict(p["sums"])
        if not d.is_main:  # the sums so far are global ones: counted once, on rank 0
            sums = {k: 0.0 for k in sums}
    else:
        lr = learning_rate(config, _progress(config, run.epoch, run.elapsed))
        if run.data.source is None:
            perm = torch.randperm(n_train, generator=run.shuffle).to(config.device)
        else:
            from delan.data.streaming import epoch_seed

            seed = epoch_seed(run.shuffle)
        first, sums = 0, {}
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    rollout_on = _rollout_on(config, run.epoch, run.elapsed)
    run.loss_fn.rollout_on = rollout_on  # validation scores the rollout part from then on

    run.model.train()
    if run.graphed is not None:
        _graphed_steps(run, perm, first, lr, sums)
        run.epoch += 1
        run.model.eval()
        return lr, rollout_on, sums
    for i, batch in _minibatches(run, perm, seed, first):
        batch["step"] = run.step  # the rollout loss runs on every rollout_every-th step
        try:
            if run.parallel is None:
                total, parts = run.loss_fn(run.model, batch)
                weighted, b = total, batch["q"].shape[0]
            else:  # this rank's slice of the global batch; DDP averages the gradients in backward
                weighted, total, parts, b = run.parallel(batch, batch["q"].shape[0])
        except (ValueError, RuntimeError) as exc:
            raise run.step_failed(exc) from None
        # every rank must take the same branch: any rank's bad loss or signal counts; under
        # torchrun a signal that lands after this agreement counts at the next step's
        agreed, bad = run.agreed_signal(not torch.isfinite(total))
        if bad:
            raise run.diverged(run.epoch + 1, f"the training loss is {float(total.detach())}")
        run.optimizer.zero_grad(set_to_none=True)
        weighted.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
        run.optimizer.step()
        run.step += 1
        for k, v in [("loss", total)] + list(parts.items()):
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * b
        signalled = (agreed if d.active else run.signals.received) is not None
        if signalled and i + config.batch_size < n_train:
            _pause_inside_epoch(run, perm, seed, i + config.batch_size, lr, sums)
    run.epoch += 1
    run.model.eval()
    return lr, rollout_on, sums


def _pause_inside_epoch(
    run: _Run, perm: Optional[Tensor], seed: Optional[int], pos: int, lr: float, sums: Dict[str, float]
) -> None:
    """After a signal inside an epoch: checkpoint this step and where the epoch goes on, and stop."""
    run.tick()
    order = {"perm": perm.cpu()} if perm is not None else {"seed": seed}
    run.checkpoint({**order, "pos": pos, "sums": run.dist.sum_floats(sums), "lr": lr})
    raise run.interrupted(f"step {run.step}, inside epoch {run.epoch + 1}")


def _graphed_steps(run: _Run, perm: Tensor, first: int, lr: float, sums: Dict[str, float]) -> None:
    """The epoch's steps from sample ``first`` on through :class:`delan.training_graph.GraphedSteps`
    (full minibatches replayed from a CUDA graph), adding the loss sums to ``sums``. The host
    waits for the GPU only at the end of the epoch (or at a signal): a loss that stopped being
    finite in the epoch is divergence there."""
    steps, size, n_train = run.graphed, run.config.batch_size, run.data.n_train
    steps.set_lr(lr)

    def add_sums() -> None:
        for k, v in steps.take_sums().items():
            sums[k] = sums.get(k, 0.0) + v

    for i in range(first, n_train, size):
        try:
            steps.step(perm[i : i + size])
        except (ValueError, RuntimeError) as exc:
            raise run.step_failed(exc) from None
        run.step += 1
        if run.signals.received is not None and i + size < n_train:
            add_sums()
            _pause_inside_epoch(run, perm, None, i + size, lr, sums)
    add_sums()
    bad = [k for k, v in sums.items() if not math.isfinite(v)]
    if bad:
        raise run.diverged(run.epoch + 1, f"the training loss ({', '.join(bad)}) is not finite in this epoch")


def _minibatches(run: _Run, perm: Optional[Tensor], seed: Optional[int], first: int):
    """(position in the epoch, global minibatch) from sample ``first`` on: rows ``perm`` of the
    training tensors, or the stream of epoch ``seed`` (:mod:`delan.data.streaming`)."""
    if run.data.source is not None:
        yield from run.data.source.batches(seed, first)
        return
    for i in range(first, run.data.n_train, run.config.batch_size):
        idx = perm[i : i + run.config.batch_size]
        yield i, {k: v[idx] for k, v in run.data.train.items()}


def _end_epoch(run: _Run, lr: float, rollout_on: bool, sums: Dict[str, float]) -> None:
    """Score the epoch (validation loss, else training loss), keep the best model so far, and log
    the epoch; a score or weights that are not finite are divergence."""
    sums = run.dist.sum_floats(sums)  # under torchrun: the ranks' slices together
    train_mean = {k: v / run.data.n_train for k, v in sums.items()}
    try:
        val_mean = mean_loss(run.loss_fn, run.model, run.data.val) if run.data.val is not None else None
    except (ValueError, RuntimeError) as exc:
        raise run.failed(
            exc,
            run.epoch,
            f"validation failed: {first_line(exc)}",
            f"validation failed after epoch {run.epoch} (step {run.step}): {first_line(exc)}",
        ) from None
    score = val_mean["loss"] if val_mean is not None else train_mean["loss"]
    if not math.isfinite(score):
        raise run.diverged(run.epoch, f"the {'validation' if val_mean is not None else 'training'} loss is {score}")
    if not _finite_weights(run.model):
        raise run.diverged(run.epoch, "the weights are no longer finite")
    best = run.best
    if rollout_on and not best.get("rollout"):  # the score now holds the rollout part: a new criterion
        best = dict(best, loss=math.inf, bad_epochs=0, rollout=True)
    if score < best["loss"]:
        best = {
            "loss": score,
            **({"rollout": True} if rollout_on else {}),
            "epoch": run.epoch,
            "bad_epochs": 0,
            "state": {k: v.detach().clone() for k, v in run.model.state_dict().items()},
        }
    else:
        best["bad_epochs"] += 1
    run.best = best
    run.tick()
    run.elapsed = run.dist.from_main(run.elapsed)  # the ranks stop on one clock: rank 0's

    row: Dict[str, Any] = {"epoch": run.epoch, "step": run.step, "time": round(run.elapsed, 4), "lr": lr}
    row.update({f"train_{k}": v for k, v in train_mean.items()})
    if val_mean is not None:
        row.update({f"val_{k}": v for k, v in val_mean.items()})
    row["best_epoch"] = best["epoch"]
    run.log.append(row)
    run.bar.set_postfix(
        {k: f"{v:.2e}" for k, v in train_mean.items()} | ({"val": f"{val_mean['loss']:.2e}"} if val_mean else {}),
        refresh=False,
    )
    run.bar.update(1)


def _stop_reason(run: _Run, stop_after: Optional[int], epoch_done: bool) -> str:
    """Why the run stops now ('' = it goes on): the one place for the stopping rules. Asked after
    every epoch and once before the first, where the rules that judge the last epoch (early
    stopping, the time budget) wait for one. ``stop_after`` pauses the run (reason "stopped")."""
    c = run.config
    if epoch_done and c.patience is not None and run.best["bad_epochs"] >= c.patience:
        return "early stopping"
    if epoch_done and c.time_budget is not None and run.elapsed >= c.time_budget:
        return "time budget"
    if c.epochs is not None and run.epoch >= c.epochs:
        return "epochs"
    if stop_after is not None and run.epoch >= stop_after:
        return "stopped"
    return ""


def _finish(run: _Run, stop_reason: str) -> TrainResult:
    """The best model is the result: model.pt (unless the run was only paused) and summary.json."""
    finished = stop_reason != "stopped"
    if run.best["state"] is not None and finished:
        run.model.load_state_dict(run.best["state"])
    summary = run.summary(stop_reason, finished, run.epoch)
    run.model.eval()
    if run.dist.is_main:
        if finished:
            save_model(run.model, os.path.join(run.run_dir, MODEL_FILE))
        atomic_write_json(os.path.join(run.run_dir, SUMMARY_FILE), summary)
    run.dist.barrier()  # under torchrun no rank returns before rank 0 has written the result
    return TrainResult(run.run_dir, run.model, run.config, list(run.log.rows), summary)


def check_resume_data(run_dir: str, stored: TrainConfig, given: str, fingerprint_fn=None) -> Optional[Dict[str, Any]]:
    """The fingerprint of ``given`` if it holds the data ``run_dir`` was trained on, else RunError
    naming both files. Same content under another path is the same data; a run from before
    fingerprints were recorded only accepts its recorded path (and then returns None)."""
    if fingerprint_fn is None:
        from delan.fingerprint import data_fingerprint as fingerprint_fn
    record = read_run_data(run_dir).get("data_file") or {}
    recorded = record.get("path") or stored.data
    if not record.get("fingerprint"):
        if not _same_path(given, stored.data):
            raise RunError(
                f"{run_dir}: was trained on {stored.data}, not {given} (the run predates content "
                f"fingerprints, so only its recorded path is accepted)"
            )
        return None
    fp = fingerprint_fn(given)
    if fp["fingerprint"] != record["fingerprint"]:
        if _same_path(given, recorded):
            raise RunError(
                f"{run_dir}: its data file {given} has changed since the run started (content "
                f"fingerprint differs from data.json's); resume needs the data it was trained on"
            )
        raise RunError(
            f"{run_dir}: was trained on {recorded}, but {given} holds other data (content "
            f"fingerprint differs); resume with the data the run was trained on"
        )
    return fp


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _check_run_dir(run_dir: str, force: bool, locked: bool = False) -> None:
    """Refuse a run directory that is a file, is in use by a running training (even with
    ``force``; ``locked``: we hold its lock), or holds files, unless ``force``."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunError(f"{run_dir}: exists and is not a directory")
    if not locked:
        check_free(run_dir)
    if os.path.isdir(run_dir) and [x for x in os.listdir(run_dir) if x != LOCK_FILE] and not force:
        raise RunError(
            f"{run_dir}: run directory exists and is not empty; use `resume` to continue "
            f"it or `force` to start afresh (its run files are replaced)"
        )


def _prepare_run_dir(run_dir: str, force: bool, stack: ExitStack) -> None:
    """Create the run directory and take its lock (held until ``stack`` closes); then check it
    again (another run may have filled it meanwhile) and, with ``force``, delete an old run's files."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunError(f"{run_dir}: exists and is not a directory")
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{run_dir}: cannot create run directory: {exc}") from None
    stack.enter_context(RunLock(run_dir))
    _check_run_dir(run_dir, force, locked=True)
    if force:
        for name in (CONFIG_FILE, CHECKPOINT_FILE, MODEL_FILE, LOG_CSV, LOG_JSONL, SUMMARY_FILE, DATA_FILE):
            p = os.path.join(run_dir, name)
            if os.path.exists(p):
                os.remove(p)


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, *a, **k) -> None: ...
    def close(self) -> None: ...


def _progress_bar(total: Optional[int], initial: int, show: bool):
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="epoch", dynamic_ncols=True, leave=True)


def load_run(run_dir: str) -> Tuple[TrainConfig, nn.Module]:
    """(config, trained model) of a finished run directory; RunError if it is not one."""
    config = read_config(run_dir)
    path = os.path.join(run_dir, MODEL_FILE)
    if not os.path.exists(path):
        ck = os.path.join(run_dir, CHECKPOINT_FILE)
        hint = f"; resume it with `delan train {config.data} -o {run_dir} --resume`" if os.path.exists(ck) else ""
        raise RunError(f"{run_dir}: no trained model ({MODEL_FILE} missing: the run did not finish){hint}")
    try:
        model = load_model(path)
    except RunError as exc:
        # one line: torch's own messages about damaged files run over many
        raise RunError(str(exc).strip().splitlines()[0]) from None
    model.eval()
    return config, model
