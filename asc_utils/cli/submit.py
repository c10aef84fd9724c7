"""`asc submit`: the files of a DCASE2025 Task 1 submission for a run folder or model file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asc_utils.cli.common import add_plain_option, positive
from asc_utils.paths import default_data_dir
from asc_utils.submit import make_submission


def register(sub: argparse._SubParsersAction) -> None:
    """Add `submit`."""
    p = sub.add_parser("submit", help="write complexity.json, output.csv (evaluation folder), model_state_dict.pt and "
                                      "test_accuracy.json for a run")
    p.add_argument("--run", required=True, help="run folder (`asc train base` or `asc train devices`) or model file (.pt)")
    p.add_argument("--eval-dir", required=True, help="evaluation folder: evaluation_setup/fold1_test.csv (filename, device_id) + audio")
    p.add_argument("--out", required=True, help="output folder for the four files (written only when all of them succeeded; "
                                                "other files there are left alone)")
    p.add_argument("--data-dir", default=None, help="development data set for test_accuracy.json (default: $ASC_DATA_DIR or data/tutorial)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu"], help="auto = CUDA if available (default: %(default)s)")
    p.add_argument("--batch-size", type=positive(int), default=256, help="clips per batch (default: %(default)s)")
    add_plain_option(p)
    p.set_defaults(func=run_submit)


def run_submit(args: argparse.Namespace) -> int:
    """Write the submission files and print their key figures."""
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    paths = make_submission(args.run, args.eval_dir, args.out, data_dir, use_cuda=args.device != "cpu",
                            batch_size=args.batch_size, fast=not args.plain)
    complexity = json.loads(paths["complexity"].read_text())
    accuracy = json.loads(paths["test_accuracy"].read_text())
    print(f"complexity: max {complexity['max_MACs']:,} MACs, max {complexity['max_Params']:,} parameter bytes (per device model)")
    label = " - embedded (synthetic) data set, not TAU22" if accuracy["embedded_data_set"] else ""
    print(f"test split ({accuracy['clips']} clips, fp16): Test Accuracy (overall) {accuracy['Test Accuracy']:.2f} %, "
          f"macro accuracy {100 * accuracy['macro']:.2f} %{label}")
    print(f"wrote {', '.join(p.name for p in paths.values())} into {Path(args.out)}")
    return 0
