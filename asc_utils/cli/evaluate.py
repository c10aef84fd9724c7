"""`asc eval`: evaluate a run folder on a split (fp32 and fp16): metrics.json, predictions.csv, figures."""

from __future__ import annotations

import argparse

from asc_utils.cli.common import add_device_option, add_plain_option, positive
from asc_utils.evaluate import EVAL_SPLITS, evaluate_run


def register(sub: argparse._SubParsersAction) -> None:
    """Add `eval`."""
    p = sub.add_parser("eval", help="evaluate a run on the test split (fp32 and fp16): metrics.json, predictions.csv, figures")
    p.add_argument("--run", required=True, help="run folder written by `asc train`")
    p.add_argument("--data-dir", default=None, help="data set folder (default: the one the run was trained on)")
    p.add_argument("--split", default="test", choices=EVAL_SPLITS, help="split to evaluate (default: %(default)s)")
    add_device_option(p, "auto", "where to run the model (default: %(default)s)")
    p.add_argument("--batch-size", type=positive(int), default=256, help="clips per batch (default: %(default)s)")
    add_plain_option(p)
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate, write the files, print the tables."""
    result = evaluate_run(args.run, args.data_dir, args.split, args.device, args.batch_size, fast=not args.plain)
    evaluation = result.evaluation
    if result.comparison is not None:  # also written to metrics.json "device_vs_general"
        print("general vs device-specific models (fp16):\n" + result.comparison.to_string() + "\n")
    print(evaluation.device_table("fp16").to_string())
    for p in evaluation.precisions:
        if not p.startswith("general_"):
            m = evaluation.metrics(p)
            print(f"{p}: macro accuracy {100 * m['macro']:.2f} %, overall {100 * m['overall']:.2f} %")
    print(f"wrote {result.metrics_path} and the figures into {args.run}")
    return 0
