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

    # --- complexity (complexity issue) ---
    p = sub.add_parser("complexity", help="parameters, parameter bytes and MACs of a model, layer by layer, against the DCASE limits "
                       "(exit status 1 if it exceeds them)")
    p.add_argument("--model", default="sntl_task1_2", choices=["sntl_task1_1", "sntl_task1_2", "cp_mobile_baseline"],
                   help="network to measure (default: %(default)s)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the DCASE complexity.json (devices a, b, c, s1..s10)")
    p.add_argument("--dtype", default="float16", choices=["float32", "float16", "bfloat16", "int8"],
                   help="precision the parameters are stored at (default: %(default)s)")
    p.set_defaults(func=_handler("asc_utils.complexity:cli_complexity"))

    # --- device impulse responses (augmentation issue) ---
    dirs = sub.add_parser("dirs", help="device impulse responses for DIR augmentation (MicIRP)")
    dirs_sub = dirs.add_subparsers(dest="dirs_command", required=True, metavar="ACTION")
    p = dirs_sub.add_parser("download", help="download the 66 MicIRP impulse responses, verifying each sha256")
    p.add_argument("--dest", default=None, help="output folder (default: <cache>/micirp, found there automatically)")
    p.add_argument("--base-url", default=None, help="mirror URL (default: $ASC_MICIRP_URL or the cpjku_dcase23 repository)")
    p.set_defaults(func=_handler("asc_utils.dirs:cli_download"))

    # --- training and evaluation (training issue) ---
    train = sub.add_parser("train", help="train models: 'base' = stage 1, the general model")
    train_sub = train.add_subparsers(dest="train_command", required=True, metavar="STAGE")
    p = train_sub.add_parser("base", help="stage 1: train the general model on all training devices (published recipe)")
    p.add_argument("--data-dir", default=None, help="data set folder (default: $ASC_DATA_DIR or data/tutorial)")
    p.add_argument("--out", required=True, help="run folder for config.json, checkpoint.pt, history.csv/json, model.pt")
    p.add_argument("--epochs", type=int, default=None, help="number of epochs (recipe: 150)")
    p.add_argument("--batch-size", type=int, default=None, help="clips per step (recipe: 256)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate of Adam (recipe: 0.002)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    p.add_argument("--split", default=None, choices=["split5", "split10", "split25", "split50", "split100"],
                   help="training split (recipe: split25)")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="where to train (default: auto = CUDA if available)")
    p.add_argument("--no-dir", action="store_true", help="switch off device impulse response (DIR) augmentation")
    p.add_argument("--no-mixstyle", action="store_true", help="switch off Frequency-MixStyle")
    p.add_argument("--dir-dir", default=None, help="folder of measured impulse responses (default: MicIRP download, else generated)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint (with its settings)")
    p.add_argument("--overwrite", action="store_true", help="start again even if --out already holds a run")
    p.set_defaults(func=_handler("asc_utils.train:cli_train_base"))

    # --- stage 2: device fine-tuning (devices issue) ---
    p = train_sub.add_parser("devices", help="stage 2: fine-tune one copy of a stage-1 model per training device (a, b, c, s1-s3)")
    p.add_argument("--base", required=True, help="finished stage-1 run folder (of `asc train base`)")
    p.add_argument("--out", required=True, help="run folder for config.json, devices/<id>/ runs and multidevice.pt")
    p.add_argument("--data-dir", default=None, help="data set folder (default: the one the base run was trained on)")
    p.add_argument("--devices", nargs="+", default=["a", "b", "c", "s1", "s2", "s3"], help="devices to fine-tune (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per device (recipe: 50)")
    p.add_argument("--batch-size", type=int, default=None, help="clips per step (recipe: 256)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate of AdamW (recipe: 5e-4)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the base run's)")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="where to train (default: the base run's)")
    p.add_argument("--resume", action="store_true", help="skip finished devices, continue an interrupted one from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start again even if --out already holds a run")
    p.set_defaults(func=_handler("asc_utils.finetune:cli_train_devices"))

    p = sub.add_parser("eval", help="evaluate a run on the test split (fp32 and fp16): metrics.json, predictions.csv, figures")
    p.add_argument("--run", required=True, help="run folder written by `asc train`")
    p.add_argument("--data-dir", default=None, help="data set folder (default: the one the run was trained on)")
    p.add_argument("--split", default="test", choices=["test", "split5", "split10", "split25", "split50", "split100"],
                   help="split to evaluate (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run the model (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=256, help="clips per batch (default: %(default)s)")
    p.set_defaults(func=_handler("asc_utils.evaluate:cli_eval"))

    # --- DCASE2025 submission files (devices issue) ---
    p = sub.add_parser("submit", help="write complexity.json, output.csv (evaluation folder) and test_accuracy.json for a run")
    p.add_argument("--run", required=True, help="run folder (`asc train base` or `asc train devices`) or model file (.pt)")
    p.add_argument("--eval-dir", required=True, help="evaluation folder: evaluation_setup/fold1_test.csv (filename, device_id) + audio")
    p.add_argument("--out", required=True, help="output folder for the three files")
    p.add_argument("--data-dir", default=None, help="development data set for test_accuracy.json (default: $ASC_DATA_DIR or data/tutorial)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu"], help="auto = CUDA if available (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=256, help="clips per batch (default: %(default)s)")
    p.set_defaults(func=_handler("asc_utils.submit:cli_submit"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `asc` console command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
