"""Errors the library raises for bad input; the CLI prints them as one line and exits non-zero."""


class DelanError(Exception):
    """Base class of all errors about user input (files, options, run directories)."""


class DataError(DelanError, ValueError):
    """A data file or log is missing, unreadable or does not follow the schema.

    The message names the file, the trajectory and the field where known.
    """


class RunError(DelanError):
    """A run directory or checkpoint is missing, corrupt or of another kind."""
