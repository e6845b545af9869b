"""Checks the commands make before any work starts: output paths, option values, sizes.

Output paths (``check_outputs``): the folder of every output exists and is writable; an output is
never one of the command's inputs (same file by ``os.path.samefile``, so links and other
spellings count), never an existing folder where a file is expected (or a file where a folder is
expected), and never the same path as another output. An existing output file is replaced only
when it holds what the command writes (each command's ``--help`` states its rule):

* ``data`` (import, generate ``-o``): a DeLaN data file, or an empty file;
* ``json`` (evaluate, simulate ``--json``): a JSON document, or an empty file;
* ``png`` (figures inside ``--plots DIR``): a PNG image, or an empty file;
* ``export`` (export ``-o``): an artefact written by ``delan export`` (any format), or an empty file.

Anything else (a log, a checkpoint, a file of another program) is refused with one line.
"""

from __future__ import annotations

import json
import math
import os
from typing import Iterable, List, Optional, Sequence, Tuple, Type

from delan.data.sizes import format_number
from delan.errors import OptionError, OutputError

_KIND_WORDS = {
    "data": "a DeLaN data file",
    "json": "a JSON document",
    "png": "a PNG image",
    "export": "an artefact of delan export",
}


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _is_data_file(path: str) -> bool:
    try:
        import h5py

        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        return fmt == "delan-trajectories"
    except Exception:  # noqa: BLE001 - anything unreadable is simply not a data file
        return False


def _is_json(path: str) -> bool:
    try:
        if os.path.getsize(path) > 100_000_000:
            return False
        with open(path, "rb") as f:
            json.loads(f.read().decode("utf-8"))
        return True
    except (OSError, ValueError):
        return False


def _is_png(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


def _is_export(path: str) -> bool:
    from delan.export import read_metadata

    return read_metadata(path) is not None


_CHECK = {"data": _is_data_file, "json": _is_json, "png": _is_png, "export": _is_export}


def _check_folder(folder: str, label: str) -> None:
    if not os.path.exists(folder):
        raise OutputError(f"{label}: folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise OutputError(f"{label}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{label}: folder {folder} is not writable")


def check_output_file(path: str, option: str, kind: str, inputs: Sequence[Tuple[str, str]] = ()) -> None:
    """One output file (see the module docstring); ``inputs`` = [(path, what it is)]."""
    label = f"{option} {path}" if option else path
    if not path or not str(path).strip():
        raise OutputError(f"{option or 'output'}: empty file name")
    path = os.fspath(path)
    _check_folder(os.path.dirname(os.path.abspath(path)), label)
    if os.path.isdir(path):
        raise OutputError(f"{label}: is a folder; give a file name")
    if not os.path.lexists(path):
        return
    if not os.path.exists(path):
        raise OutputError(f"{label}: is a broken link; remove it or choose another name")
    for other, what in inputs:
        if other and os.path.exists(other) and _same(path, other):
            raise OutputError(f"{label}: is the {what}; writing it would destroy the input. Choose another name")
    if not os.path.isfile(path):
        raise OutputError(f"{label}: exists and is not a regular file")
    if not os.access(path, os.W_OK) and not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        raise OutputError(f"{label}: is not writable")
    if os.path.getsize(path) > 0 and not _CHECK[kind](path):
        raise OutputError(
            f"{label}: exists and is not {_KIND_WORDS[kind]}; not replacing it (remove it or choose another name)"
        )


def check_output_folder(
    path: str, option: str, files: Iterable[str], inputs: Sequence[Tuple[str, str]] = ()
) -> List[str]:
    """A folder for figures: an existing folder, or one to create whose parent exists; every
    file ``files`` (names inside it) is checked as a PNG output. Returns their paths."""
    label = f"{option} {path}"
    if not path or not str(path).strip():
        raise OutputError(f"{option}: empty folder name")
    path = os.fspath(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputError(f"{label}: exists and is not a folder; give a folder for the figures")
    out = [os.path.join(path, name) for name in files]
    if os.path.isdir(path):
        _check_folder(path, label)
        for f in out:
            check_output_file(f, option, "png", inputs)
    else:  # to be created: nothing in it yet to protect
        _check_folder(os.path.dirname(os.path.abspath(path)), label)
    return out


def check_distinct(outputs: Sequence[Tuple[str, str]]) -> None:
    """No two outputs [(path, option)] are the same file."""
    seen: List[Tuple[str, str]] = []
    for path, option in outputs:
        real = os.path.realpath(path)
        for p, o in seen:
            if real == p:
                raise OutputError(f"{option} {path}: is also the output of {o}; give different names")
        seen.append((real, option))


def check_json_and_plots(
    json_path: Optional[str], plots: Optional[str], figures: Sequence[str], inputs: Sequence[Tuple[str, str]]
) -> None:
    """``--json FILE`` and ``--plots DIR`` (which gets ``figures``) of a command that reports
    results (evaluate, simulate, control): each a safe output, and no two the same file."""
    outs = []
    if json_path is not None:
        check_output_file(json_path, "--json", "json", inputs)
        outs.append((json_path, "--json"))
    if plots is not None:
        outs += [(f, "--plots") for f in check_output_folder(plots, "--plots", figures, inputs)]
    check_distinct(outs)


def run_files(run_dir: Optional[str]) -> List[Tuple[str, str]]:
    """The files of a run directory as inputs [(path, what)], and the data file it records.

    Earlier outputs of evaluate / simulate kept in the folder (JSON results, PNG figures) are not
    counted: writing them again is allowed.
    """
    if not run_dir or not os.path.isdir(run_dir):
        return []
    out = []
    for name in sorted(os.listdir(run_dir)):
        p = os.path.join(run_dir, name)
        if not os.path.isfile(p) or name.endswith(".png"):
            continue
        if name.endswith(".json") and _earlier_result(p):
            continue
        out.append((p, f"file {name} of the run directory"))
    for name, key in (("data.json", ("data_file", "path")), ("config.json", ("data",))):
        try:
            with open(os.path.join(run_dir, name)) as f:
                value = json.load(f)
            for k in key:
                value = value[k]
            if isinstance(value, str):
                out.append((value, "data file the run was trained on"))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return out


def _earlier_result(path: str) -> bool:
    """A JSON object written by evaluate (n_samples + unavailable) or simulate (valid_time)."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and ({"n_samples", "unavailable"} <= set(d) or {"valid_time", "steps"} <= set(d))


# -- option values ---------------------------------------------------------------------------
def finite(value, option: str, positive: bool = False, minimum=None) -> None:
    """OptionError naming ``option`` when ``value`` is NaN, infinite, or not positive / below ``minimum``."""
    if value is None:
        return
    v = float(value)
    if math.isnan(v):
        raise OptionError(f"{option} is NaN; give a finite number")
    if math.isinf(v):
        raise OptionError(f"{option} is {format_number(v)}; give a finite number")
    if positive and not v > 0:
        raise OptionError(f"{option} must be a positive number, got {format_number(v)}")
    if minimum is not None and v < minimum:
        raise OptionError(f"{option} must be >= {format_number(minimum)}, got {format_number(v)}")


def positive_integer(
    value: Optional[int], option: str, what: str = "a positive integer", error: Type[Exception] = OptionError
) -> None:
    """``error`` naming ``option`` when ``value`` (None: not given) is below 1; ``what`` words
    the rule ("a positive number of joints")."""
    if value is not None and value < 1:
        raise error(f"{option} must be {what}, got {value}")


def numbers(text: Optional[str], option: str) -> Optional[List[float]]:
    """Comma-separated finite numbers of an option such as --q0; OptionError naming the item."""
    if text is None:
        return None
    out = []
    for i, item in enumerate(text.split(",")):
        try:
            v = float(item)
        except ValueError:
            raise OptionError(
                f"{option} must be comma-separated numbers, got {text!r} (item {i + 1}: {item.strip()!r})"
            ) from None
        if not math.isfinite(v):
            raise OptionError(f"{option}: item {i + 1} is {format_number(v)}; give finite numbers")
        out.append(v)
    return out
