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
