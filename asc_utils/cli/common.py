"""Option helpers shared by the command modules: positive numbers, the compute-device option, --plain."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from asc_utils.recipe import COMPUTE_DEVICES


def positive(kind: Callable[[str], int | float]) -> Callable[[str], int | float]:
    """An argparse type: a number of `kind` that must be > 0 (argparse reports the bad value and the rule)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def add_device_option(parser: argparse.ArgumentParser, default: str | None, help_text: str) -> None:
    """--device with the compute devices the package knows."""
    parser.add_argument("--device", default=default, choices=COMPUTE_DEVICES, help=help_text)


def add_plain_option(parser: argparse.ArgumentParser) -> None:
    """--plain: run the readable modules instead of the speed layer (same results up to float rounding, slower)."""
    parser.add_argument("--plain", action="store_true",
                        help="compute with the readable front end and network, without the speed layer (asc_utils.speed)")
