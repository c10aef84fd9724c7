"""The `asc` command line: one module per command group, each holding its sub-parser (`register`) and its handlers.

Handlers call the domain modules and print; the domain modules never print for the command line or return exit codes.
The command sets the speed layer's allocator setting for its process (`asc_utils.speed.tune_allocator`).
Every `UserError` (a problem the user can fix) becomes `error: <message>` and exit status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from asc_utils.cli import data, dirs, env, evaluate, models, submit, train
from asc_utils.errors import UserError
from asc_utils.speed import tune_allocator

GROUPS = (env, data, models, dirs, train, evaluate, submit)  # the order of `asc --help`


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="asc", description="Low-complexity acoustic scene classification tutorial tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `asc` console command."""
    args = build_parser().parse_args(argv)
    tune_allocator()  # the commands process many batches: keep freed tensor memory (asc_utils.speed.allocator)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept (files are written atomically).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
