"""The installed version of the package, for files that record what wrote them (lowest layer:
the command line, exports and run directories all ask here)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version


def version() -> str:
    """The installed version of the delan package ("unknown" when it is not installed)."""
    try:
        return _version("delan")
    except PackageNotFoundError:
        return "unknown"
