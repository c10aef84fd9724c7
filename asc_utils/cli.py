"""The `asc` command line: one sub-command per task of the tutorial (each handler lives in the module it belongs to)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence


def _handler(target: str) -> Callable[[argparse.Namespace], int]:
    """Return a handler that imports 'module:function' only when the command runs (keeps `asc --help` fast)."""

    def run(args: argparse.Namespace) -> int:
        module, name = target.split(":")
        return getattr(importlib.import_module(module), name)(args) or 0

    return run


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="asc", description="Low-complexity acoustic scene classification tutorial tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # --- environment check and notebook runner (foundation) ---
    p = sub.add_parser("check", help="check dependencies, audio back end, accelerator and data directory")
    p.add_argument("--data-dir", default=None, help="data set folder (default: $ASC_DATA_DIR or data/tutorial)")
    p.set_defaults(func=_handler("asc_utils.check:cli_check"))

    p = sub.add_parser("tutorial", help="execute every notebook headless, in order, and write executed copies + HTML")
    p.add_argument("--out", default="outputs/tutorial", help="output folder for executed notebooks (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="data set folder passed to the notebooks as DATA_DIR")
    p.add_argument("--smoke", action="store_true", help="SMOKE=True: shrink every notebook to seconds")
    p.add_argument("--only", nargs="*", default=None, help="run only notebooks whose name contains one of these strings")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="extra notebook parameter (Python literal)")
    p.add_argument("--no-html", action="store_true", help="skip the HTML copies")
    p.set_defaults(func=_handler("asc_utils.runner:cli_tutorial"))

    # --- data (data issue) ---
    data = sub.add_parser("data", help="the TAU22 data layer: generate the embedded data set, check a data folder")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = data_sub.add_parser("synth", help="generate the embedded TAU22-layout data set")
    p.add_argument("--preset", default="tutorial", help="tiny, tutorial or tau25 (default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing data set in --out")
    p.set_defaults(func=_handler("asc_utils.data.synthetic:cli_synth"))
    p = data_sub.add_parser("check", help="verify a TAU22 folder (meta, splits, audio files, per-device counts)")
    p.add_argument("--data-dir", required=True)
    p.set_defaults(func=_handler("asc_utils.data.check:cli_check"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `asc` console command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
