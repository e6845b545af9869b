"""Options shared by several functions, written once: in the signature of one of them.

A function that takes ``**options`` "as :func:`f`" binds them to ``f``'s signature with
:func:`bind_options`, so the names, their order and their defaults stay in one place (``f``'s
documented parameter list) instead of being copied into every function that passes them on.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any, Callable


def bind_options(func: Callable, *args: Any, **kwargs: Any) -> SimpleNamespace:
    """The arguments that ``func(*args, **kwargs)`` would get, its defaults filled in, as
    attributes (a ``**name`` parameter gives a dict of the extra keywords). An unknown or missing
    argument raises TypeError, as the call would."""
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except TypeError as exc:  # name the function whose options these are, as a call's TypeError does
        raise TypeError(f"{func.__name__}() {exc}") from None
    bound.apply_defaults()
    return SimpleNamespace(**bound.arguments)
