"""`asc train base` (stage 1, the general model) and `asc train devices` (stage 2, one fine-tuned copy per device).

Every training option is derived from a field of `asc_utils.recipe.TrainConfig`: its name (`--batch-size` for
`batch_size`), type, help text and choices; an option not given keeps the recipe's (or the resumed run's) value.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path

from asc_utils import runs
from asc_utils.cli.common import add_plain_option
from asc_utils.data.tau import TRAIN_SPLIT_NAMES
from asc_utils.finetune import finetune_devices
from asc_utils.labels import TRAIN_DEVICES
from asc_utils.models import MODEL_NAMES
from asc_utils.paths import default_data_dir, shell_quote
from asc_utils.recipe import COMPUTE_DEVICES, OPTIMIZERS, STAGE2_SETTINGS, TrainConfig, TrainError
from asc_utils.train import train_base

CHOICES: dict[str, tuple[str, ...]] = {"model": MODEL_NAMES, "split": TRAIN_SPLIT_NAMES, "optimizer": OPTIMIZERS,
                                       "device": COMPUTE_DEVICES}
RECIPE = TrainConfig()
BASE_EXCLUDED = ("devices",)  # stage 1 trains on every device of the split
DEVICES_EXCLUDED = ("devices", "model", "split")  # stage 2 keeps the base run's network and split
OVERWRITE_HELP = ("replace the run in --out: the old run is deleted once the new one has written its first checkpoint "
                  "(and kept when it fails before that); a folder holding anything else is refused")


def _scalar_type(annotation: object) -> type:
    """int, float or str from a field annotation such as `int` or `str | None`."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation not in (int, float, str):
        raise TypeError(f"TrainConfig field type {annotation!r} has no command-line form")
    return annotation


def add_config_options(parser: argparse.ArgumentParser, excluded: tuple[str, ...], defaults: dict, default_note: str) -> None:
    """One option per TrainConfig field not in `excluded`; `defaults` name the value used when the option is not given."""
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training settings (TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in excluded:
            continue
        kind = _scalar_type(hints[f.name])
        note = f"{default_note}: {defaults[f.name]}" if f.name in defaults else default_note
        group.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None, choices=CHOICES.get(f.name),
                           metavar=None if f.name in CHOICES else kind.__name__.upper(), help=f"{f.metadata['help']} ({note})")


def config_overrides(args: argparse.Namespace, excluded: tuple[str, ...]) -> dict:
    """The TrainConfig values given on the command line (plus --no-dir / --no-mixstyle)."""
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if f.name not in excluded and getattr(args, f.name, None) is not None}
    if getattr(args, "no_dir", False):
        overrides["dir_p"] = 0.0
    if getattr(args, "no_mixstyle", False):
        overrides["mixstyle_p"] = 0.0
    return overrides


def register(sub: argparse._SubParsersAction) -> None:
    """Add `train base` and `train devices`."""
    train = sub.add_parser("train", help="train models: 'base' = stage 1 (general model), 'devices' = stage 2 (fine-tuning)")
    train_sub = train.add_subparsers(dest="train_command", required=True, metavar="STAGE")

    p = train_sub.add_parser("base", help="stage 1: train the general model on all training devices (published recipe)")
    p.add_argument("--data-dir", default=None, help="data set folder (default: $ASC_DATA_DIR or data/tutorial)")
    p.add_argument("--out", required=True, help="run folder for config.json, checkpoint.pt, history.csv/json, model.pt")
    p.add_argument("--no-dir", action="store_true", help="switch off device impulse response (DIR) augmentation (= --dir-p 0)")
    p.add_argument("--no-mixstyle", action="store_true", help="switch off Frequency-MixStyle (= --mixstyle-p 0)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint (with its settings)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    add_plain_option(p)
    add_config_options(p, BASE_EXCLUDED, RECIPE.to_dict(), "recipe")
    p.set_defaults(func=run_base)

    p = train_sub.add_parser("devices", help="stage 2: fine-tune one copy of a stage-1 model per training device (a, b, c, s1-s3)")
    p.add_argument("--base", required=True, help="finished stage-1 run folder (of `asc train base`)")
    p.add_argument("--out", required=True, help="run folder for config.json, devices/<id>/ runs and multidevice.pt")
    p.add_argument("--data-dir", default=None, help="data set folder (default: the one the base run was trained on)")
    p.add_argument("--devices", nargs="+", default=None, choices=TRAIN_DEVICES, metavar="DEVICE",
                   help=f"devices to fine-tune (default: {' '.join(TRAIN_DEVICES)}, or the resumed run's)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out with its settings: skip finished devices, "
                   "continue an interrupted one from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    add_plain_option(p)
    add_config_options(p, DEVICES_EXCLUDED, STAGE2_SETTINGS, "stage 2, else the base run's")
    p.set_defaults(func=run_devices)


def _one_of_resume_overwrite(args: argparse.Namespace) -> None:
    """--resume (continue the run) and --overwrite (replace it) exclude each other."""
    if args.resume and args.overwrite:
        raise TrainError("--resume continues the run in --out and --overwrite replaces it; pass only one of them.")


def _refuse_existing_run(out: Path, overwrite: bool, kind: str, command: str) -> None:
    """A new run may go into a new or empty folder, or replace a run of ours with --overwrite; anything else is refused."""
    found = runs.folder_kind(out)
    if found is not None and not overwrite:
        resumable = found == kind and (kind == "devices" or (out / runs.CHECKPOINT).is_file())
        resume = f"Continue it with `{command} --resume`, or add" if resumable else "Add"
        raise TrainError(f"{out} already holds {runs.describe_folder(out)}; nothing was changed. {resume} --overwrite to this "
                         "command to replace it (the old run is deleted once the new one has written its first checkpoint), "
                         "or choose another --out folder.")
    runs.check_replaceable(out)


def run_base(args: argparse.Namespace) -> int:
    """Stage-1 training of the general model into a run folder (--resume continues it, --overwrite replaces it)."""
    out = Path(args.out)
    _one_of_resume_overwrite(args)
    with runs.lock_run(out):  # refuses a second process at once, before the clips are cached
        if args.resume:
            saved = runs.require_resumable(out, "base")  # a resumed run keeps its own settings and data
        else:
            _refuse_existing_run(out, args.overwrite, "base", f"asc train base --out {shell_quote(out)}")
            saved = {}
        base = TrainConfig.from_dict(saved["train"]) if saved else RECIPE
        config = dataclasses.replace(base, **config_overrides(args, BASE_EXCLUDED))
        data_dir = args.data_dir or saved.get("data_dir") or default_data_dir()
        result = train_base(data_dir, out, config, resume=args.resume, fast=not args.plain)
    last = result.history[-1]
    print(f"done: {len(result.history)} epochs, last loss {last['loss']:.4f}, train acc {last['train_acc']:.3f}; "
          f"model in {out / runs.MODEL}. Next: asc eval --run {shell_quote(out)}")
    return 0


def run_devices(args: argparse.Namespace) -> int:
    """Stage-2 fine-tuning of one model per training device, on top of a stage-1 run (--resume keeps the run's settings)."""
    out = Path(args.out)
    _one_of_resume_overwrite(args)
    overrides = config_overrides(args, DEVICES_EXCLUDED)
    devices, data_dir = args.devices, args.data_dir
    with runs.lock_run(out):
        if args.resume:
            saved = runs.require_resumable(out, "devices", args.base)
            settable = {f.name for f in dataclasses.fields(TrainConfig)} - set(DEVICES_EXCLUDED)
            overrides = {**{k: v for k, v in saved.get("stage2", {}).items() if k in settable}, **overrides}
            devices = devices or saved.get("devices")
            data_dir = data_dir or saved.get("data_dir")
        else:
            command = f"asc train devices --base {shell_quote(args.base)} --out {shell_quote(out)}"
            _refuse_existing_run(out, args.overwrite, "devices", command)
        result = finetune_devices(args.base, out, data_dir, tuple(devices or TRAIN_DEVICES), resume=args.resume,
                                  fast=not args.plain, **overrides)
    for device, history in result.histories.items():
        print(f"device {device}: {len(history)} epochs, last loss {history[-1]['loss']:.4f}, train acc {history[-1]['train_acc']:.3f}")
    print(f"done: {out / runs.MULTIDEVICE}. Next: asc eval --run {shell_quote(out)}   (general vs device-specific side by side)")
    return 0
