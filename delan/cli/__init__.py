"""The ``delan`` command.

Each sub-command lives in its own module of this package, exposing ``add_parser(subparsers)``
(which registers the sub-command and sets ``func``) and nothing else public (helpers shared by the
sub-commands live in ``_checks``).

``main`` is the one error boundary: every :class:`~delan.errors.DelanError` becomes one line
``delan CMD: error: ...`` on stderr and exit code 2 (or the error's own ``exit_code``), with the
library's option names (written `name` in its messages) turned into the command's flags; any
other exception one line ``delan CMD: internal error: Type: ...``
and exit code 1. ``--debug`` (anywhere on the command line) prints the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import traceback
from typing import List, Optional

from delan.errors import DelanError
from delan.version import version

# Sub-command modules, in the order `delan --help` lists them.
_COMMANDS = ["generate", "data", "train", "evaluate", "simulate", "control", "export", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delan",
        description="Learn the dynamics of robots with Deep Lagrangian Networks.",
    )
    parser.add_argument("--version", action="version", version=f"delan {version()}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the full traceback when a command fails (may also follow the command)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"delan.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"delan.cli.{name}":
                continue  # sub-command not part of this build
            raise
        module.add_parser(sub)
        sub.choices[name].set_defaults(_parser=sub.choices[name])
    return parser


def _one_line(text: str) -> str:
    lines = [x.strip() for x in str(text).splitlines() if x.strip()]
    return "; ".join(lines) if lines else "(no message)"


# library option names whose flag is not --name-with-dashes and not the name of an argparse dest
_OPTION_ALIASES = {"json_path": "json"}


def as_flags(message: str, parser: Optional[argparse.ArgumentParser]) -> str:
    """A library message with its option names (`lr`, `time_budget`) written as the command's
    flags (--lr, --time-budget) or positional arguments (DATA)."""
    flags = {}
    if parser is not None:
        for action in parser._actions:  # argparse has no public list of a parser's arguments
            if action.option_strings:
                flags[action.dest] = max(action.option_strings, key=len)
            elif action.dest != "help":
                flags[action.dest] = action.metavar or action.dest.upper()

    def flag(match: re.Match[str]) -> str:
        name = _OPTION_ALIASES.get(match.group(1), match.group(1))
        return flags.get(name, "--" + name.replace("_", "-"))

    return re.sub(r"`([A-Za-z_][A-Za-z0-9_]*)`", flag, message)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"delan {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one boundary: never a bare traceback
        if debug:
            traceback.print_exc()
        if isinstance(exc, DelanError):
            print(
                f"delan {command}: error: {as_flags(_one_line(exc), getattr(args, '_parser', None))}", file=sys.stderr
            )
            return int(getattr(exc, "exit_code", 2))
        print(
            f"delan {command}: internal error: {type(exc).__name__}: {_one_line(exc)} "
            f"(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
