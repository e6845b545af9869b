"""Errors the library raises for bad input; the CLI prints them as one line and exits non-zero."""


class DelanError(Exception):
    """Base class of all errors about user input (files, options, run directories)."""


class DataError(DelanError, ValueError):
    """A data file or log is missing, unreadable or does not follow the schema.

    The message names the file, the trajectory and the field where known.
    """


class RunError(DelanError):
    """A run directory or checkpoint is missing, corrupt or of another kind."""


class TrainingDiverged(RunError):
    """Training stopped because the loss (or a solve inside it) stopped being finite.

    The run directory keeps its last good checkpoint and gets ``model.pt`` with the best model
    found before the divergence."""


class TrainingInterrupted(RunError):
    """Training stopped by SIGINT or SIGTERM after finishing its current step and checkpointing.

    ``exit_code`` is what the command line exits with: 128 + the signal number (130, 143)."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class OptionError(DelanError, ValueError):
    """An option value that cannot work: out of range, NaN, or too large for this machine's memory.

    The message names the option (as on the command line) and, for sizes, the memory estimate.
    """


class OutputError(DelanError):
    """An output path that cannot be written, or whose writing would destroy an input or a file
    the command does not own (checked before any work starts)."""


class NoFastPathError(DelanError):
    """An explicit fast path (e.g. ``model.single_sample_inverse_dynamics()``) does not cover the
    model's configuration; the message says why and what to use instead (plain torch)."""


class ExportError(DelanError):
    """A model cannot be exported in the asked format (a missing optional package, something the
    format cannot express) or the written artefact does not reproduce the model; the message
    says what and why."""


class InputError(DelanError, ValueError):
    """A tensor or array handed to a library call that cannot work: wrong shape, dtype or device
    (the message names the argument and what it must be)."""


class IndefiniteMassMatrixError(DelanError, ValueError):
    """d2L/dqd2 of a black-box Lagrangian (or a learned mass matrix) is not positive definite:
    no forward dynamics there."""


class NoDecompositionError(DelanError, NotImplementedError):
    """The model predicts torques only (the mlp baseline): no decomposition, energies or forward
    dynamics."""


class ControlError(DelanError, ValueError):
    """A controller or closed-loop run that cannot work as asked: a bad gain, limit, rate or
    noise level, a system without a swing-up, a model without the energies a controller needs
    (the message says which)."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name when the message is empty): what a
    one-line error built on another error quotes of it."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
