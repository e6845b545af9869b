"""The ``delan`` command.

Each sub-command lives in its own module of this package, exposing ``add_parser(subparsers)``
(which registers the sub-command and sets ``func``) and nothing else public. ``main`` turns every
:class:`~delan.errors.DelanError` (and other input errors) into one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from delan.errors import DelanError

# Sub-command modules, in the order `delan --help` lists them.
_COMMANDS = ["generate", "data", "train", "evaluate", "simulate", "control", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delan",
        description="Learn the dynamics of robots with Deep Lagrangian Networks.",
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
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DelanError as exc:
        print(f"delan {args.command}: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        print(f"delan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
