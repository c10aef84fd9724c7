"""`asc data ...`: generate the embedded data set, check a data folder, fetch a subset of the real TAU22 clips."""

from __future__ import annotations

import argparse
import json
import time

from asc_utils.cli.common import positive
from asc_utils.data.check import check_data_dir
from asc_utils.data.fetch import SUBSETS, ZENODO_URL, fetch
from asc_utils.paths import shell_quote
from asc_utils.synth import PRESETS, synthesize


def register(sub: argparse._SubParsersAction) -> None:
    """Add `data synth`, `data check` and `data fetch`."""
    data = sub.add_parser("data", help="the TAU22 data layer: generate the embedded data set, check a data folder, fetch real clips")
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

    p = data_sub.add_parser("fetch", help="download a subset of the real TAU22 clips (single files out of the Zenodo archives)",
                            description="Reads the central directories of the TAU22 zip archives with HTTP range requests and "
                                        "downloads only the clips of a subset, each CRC-checked; resumes after an interruption. "
                                        "Subsets: mini (about 476 MB), test (about 3.9 GB), split25 (split25 + test).")
    p.add_argument("--dest", required=True, help="new or empty folder (or one an earlier fetch of the same subset wrote)")
    p.add_argument("--subset", default="mini", choices=list(SUBSETS), help="which clips (default: %(default)s)")
    p.add_argument("--base-url", default=None, help=f"folder URL of the release archives (default: {ZENODO_URL})")
    p.add_argument("--workers", type=positive(int), default=4, help="parallel requests (default: %(default)s)")
    p.add_argument("--from-archives", default=None, metavar="DIR",
                   help="read local copies of the archives in DIR (meta.zip + audio archives) instead of HTTP")
    p.add_argument("--seed", type=int, default=0, help="seed of the mini subset's selection (default: %(default)s)")
    p.set_defaults(func=run_fetch)


def run_synth(args: argparse.Namespace) -> int:
    """`asc data synth`: generate the embedded data set and print where it went."""
    start = time.perf_counter()
    out = synthesize(args.out, preset=args.preset, seed=args.seed, overwrite=args.overwrite)
    card = json.loads((out / "data_card.json").read_text(encoding="utf-8"))
    sizes = ", ".join(f"{name} {c['clips']}" for name, c in card["splits"].items())
    print(f"Wrote {card['meta_rows']} synthetic clips to {out} in {time.perf_counter() - start:.1f} s ({sizes}).")
    print(f"See {out / 'DATA_CARD.md'}; use it with DATA_DIR={shell_quote(out)} or ASC_DATA_DIR={shell_quote(out)}.")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """`asc data check --data-dir DIR`: print the findings; exit status 1 when there are problems."""
    print(f"Checking {args.data_dir}", flush=True)
    result = check_data_dir(args.data_dir)
    for note in result.notes:
        print(f"  ok    {note}")
    for problem in result.problems:
        print(f"  PROBLEM {problem}")
    if result.files:
        print("Audio files with problems:")
        for kind, names in result.files.items():
            print(f"  {kind}: {len(names):,} file(s)")
            for name in names:
                print(f"    {name}")
    print(f"{len(result.problems)} problem(s) found." if result.problems else "All checks passed.")
    return 0 if result.ok else 1


def run_fetch(args: argparse.Namespace) -> int:
    """`asc data fetch`: fetch a subset of the real TAU22 clips and say how to use it."""
    report = fetch(args.dest, subset=args.subset, base_url=args.base_url, workers=args.workers,
                   from_archives=args.from_archives, seed=args.seed)
    print(report.summary())
    print(f"See {report.dest / 'DATA_CARD.md'} (licence: non-commercial, attribution); use it with "
          f"DATA_DIR={shell_quote(report.dest)} or ASC_DATA_DIR={shell_quote(report.dest)}.")
    return 0
