"""`asc complexity`: parameters, parameter bytes and MACs of a network, layer by layer, against the DCASE limits."""

from __future__ import annotations

import argparse

from asc_utils.complexity import DTYPES, complexity_json, complexity_report
from asc_utils.labels import DCASE_COMPLEXITY_DEVICES
from asc_utils.models import MODEL_INPUT_SIZES, MODEL_NAMES, build_model


def register(sub: argparse._SubParsersAction) -> None:
    """Add `complexity`."""
    p = sub.add_parser("complexity", help="parameters, parameter bytes and MACs of a model, layer by layer, against the DCASE "
                       "limits (exit status 1 if it exceeds them)")
    p.add_argument("--model", default="sntl_task1_2", choices=MODEL_NAMES, help="network to measure (default: %(default)s)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the DCASE complexity.json (devices a, b, c, s1..s10)")
    p.add_argument("--dtype", default="float16", choices=list(DTYPES),
                   help="precision the parameters are stored at (default: %(default)s)")
    p.set_defaults(func=run_complexity)


def run_complexity(args: argparse.Namespace) -> int:
    """Print the layer table of a model and optionally write complexity.json."""
    model = build_model(args.model)
    input_size = MODEL_INPUT_SIZES[args.model]
    report = complexity_report(model, input_size, DTYPES[args.dtype])
    print(f"Model {args.model}, input {list(input_size)}\n")
    print(report)
    if args.json:
        complexity_json(model, input_size, DTYPES[args.dtype], path=args.json)
        print(f"\nWrote {args.json} (DCASE format, devices {', '.join(DCASE_COMPLEXITY_DEVICES)}).")
    return 0 if report.fits_dcase else 1
