"""`asc data ...`: generate the embedded data set, check a data folder."""

from __future__ import annotations

import argparse
import json
import time

from asc_utils.cli.common import positive, quote
from asc_utils.data.check import check_data_dir
from asc_utils.synth import PRESETS, synthesize


def register(sub: argparse._SubParsersAction) -> None:
    """Add `data synth` and `data check`."""
    data = sub.add_parser("data", help="the TAU22 data layer: generate the embedded data set, check a data folder")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = data_sub.add_parser("synth", help="generate the embedded TAU22-layout data set")
    p.add_argument("--preset", default="tutorial", choices=sorted(PRESETS), help="size of the data set (default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed of the generator (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a data set that this generator wrote before in --out (never anything else)")
    p.set_defaults(func=run_synth)

    p = data_sub.add_parser("check", help="verify a TAU22 folder (meta, splits, every audio file, per-device counts)")
    p.add_argument("--data-dir", required=True, help="the data folder to check")
    p.set_defaults(func=run_check)


def run_synth(args: argparse.Namespace) -> int:
    """`asc data synth`: generate the embedded data set and print where it went."""
    start = time.perf_counter()
    out = synthesize(args.out, preset=args.preset, seed=args.seed, overwrite=args.overwrite)
    card = json.loads((out / "data_card.json").read_text(encoding="utf-8"))
    sizes = ", ".join(f"{name} {c['clips']}" for name, c in card["splits"].items())
    print(f"Wrote {card['meta_rows']} synthetic clips to {out} in {time.perf_counter() - start:.1f} s ({sizes}).")
    print(f"See {out / 'DATA_CARD.md'}; use it with DATA_DIR={quote(out)} or ASC_DATA_DIR={quote(out)}.")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """`asc data check --data-dir DIR`: print the findings; exit status 1 when there are problems."""
    result = check_data_dir(args.data_dir)
    print(f"Checking {args.data_dir}")
    for note in result.notes:
        print(f"  ok    {note}")
    for problem in result.problems:
        print(f"  PROBLEM {problem}")
    print(f"{len(result.problems)} problem(s) found." if result.problems else "All checks passed.")
    return 0 if result.ok else 1
