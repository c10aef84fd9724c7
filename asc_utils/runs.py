"""The run folder: the one place that knows which files a training run holds and how to read and write them.

A run of `asc train base` (kind "base") holds:

    config.json        what was run: kind, the TrainConfig, front-end settings, data folder, clips, speed layer on/off
    history.json/.csv  one row per finished epoch
    checkpoint.pt      everything needed to continue bit-exactly (written atomically after every epoch)
    model.pt           the final weights (state dict), written when training finished

A run of `asc train devices` (kind "devices") holds config.json, one base-kind run per device under devices/<id>/, and
multidevice.pt (the general model plus every device model in one file) when all devices are done. `asc eval` adds
metrics.json, predictions.csv and figures to either kind.

Two rules keep a user's files safe (`lock_run`, `replace_run`):

- One process at a time trains into a run folder. It holds the lock file `.<name>.lock` beside the folder (created with
  O_EXCL, holding its process id); a second one is refused, and the lock of a process that no longer runs is removed.
- A new run never mixes its files with an old run's. The old folder is moved aside to `.<name>.replaced` and deleted only
  once the new run has written its first checkpoint; when the new run fails before that, the old one is put back (also
  on the next start, after a process was killed). Only folders that hold a run of this project and nothing else are
  replaced; any other content is refused with a message that lists it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from asc_utils.features import FrontendConfig
from asc_utils.labels import DEVICES
from asc_utils.models import build_model
from asc_utils.multidevice import MultiDeviceModel
from asc_utils.paths import shell_quote
from asc_utils.recipe import TrainConfig, TrainError

CONFIG = "config.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
MULTIDEVICE = "multidevice.pt"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
DEVICES_DIR = "devices"
FIGURES = ("training_curves.png", "confusion_matrices.png", "device_accuracy.png")  # written by `asc eval`
HISTORY_COLUMNS = ("epoch", "loss", "train_acc", "lr", "seconds", "clips_per_s")
RUN_KINDS = ("base", "devices")
# every kind of folder config.json can describe: the two runs above and one device's run inside a "devices" run
FOLDER_KINDS = {"base": "a stage-1 run (`asc train base`)", "devices": "a stage-2 run (`asc train devices`)",
                "device": "one device's fine-tuning run inside a stage-2 run"}
BENCHMARK_TIMING = "results_timing.json"  # written into run folders by the speed benchmark (benchmarks/results.py)
RUN_FILES = frozenset({CONFIG, HISTORY_JSON, HISTORY_CSV, CHECKPOINT, MODEL, MULTIDEVICE, METRICS, PREDICTIONS, *FIGURES,
                       BENCHMARK_TIMING})
SYSTEM_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})  # written by file browsers, never a user's work
_OWN_HIDDEN = re.compile(r"^\..+\.(tmp|lock|replaced)$")  # atomic_write's temporary files, locks, a device run moved aside
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "rng", "epoch", "history", "config", "signature")
STALE_UNREADABLE_LOCK_S = 10.0  # a lock file still empty after this long was left by a process killed while creating it


class RunLockedError(TrainError):
    """Another process is training into the run folder."""


def _short(exc: BaseException, limit: int = 300) -> str:
    """An exception as 'Type: message' for a user's message, cut to `limit` characters (torch lists every key)."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call write(temporary path) and move the result onto `path` in one step: readers never see a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | os.PathLike, content: Any) -> Path:
    """Write `content` as indented JSON, atomically."""
    return atomic_write(path, lambda p: p.write_text(json.dumps(content, indent=2)))


def read_config(run_dir: str | os.PathLike) -> dict:
    """The config.json of a run folder, with a clear error when the folder is not a run."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise TrainError(f"{run_dir} is not a training run (no {CONFIG}); train one with `asc train base --out {shell_quote(run_dir)}`.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TrainError(f"{path} is not valid JSON ({exc}); the run folder is damaged. Train again into a new --out folder.") from exc


def write_config(run_dir: str | os.PathLike, info: dict) -> Path:
    """Write a run's config.json (atomically)."""
    return write_json(Path(run_dir) / CONFIG, info)


def run_kind(run: dict) -> str:
    """The kind of a run ('base' or 'devices') from its config.json content."""
    return run.get("kind", "base")


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch rows of a run (empty when no epoch has finished)."""
    path = Path(run_dir) / HISTORY_JSON
    return json.loads(path.read_text()) if path.is_file() else []


def write_history(run_dir: str | os.PathLike, history: list[dict]) -> None:
    """Write history.json and history.csv (atomically)."""
    run_dir = Path(run_dir)
    write_json(run_dir / HISTORY_JSON, history)
    atomic_write(run_dir / HISTORY_CSV, lambda p: pd.DataFrame(history, columns=list(HISTORY_COLUMNS)).to_csv(p, index=False))


def read_metrics(run_dir: str | os.PathLike) -> dict:
    """The metrics.json of an evaluated run, with a clear error when it has not been evaluated."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise TrainError(f"{run_dir} has no {METRICS}; evaluate the run first: `asc eval --run {shell_quote(run_dir)}`.")
    return json.loads(path.read_text())


def save_checkpoint(run_dir: str | os.PathLike, state: dict) -> Path:
    """Write checkpoint.pt (atomically)."""
    return atomic_write(Path(run_dir) / CHECKPOINT, lambda p: torch.save(state, p))


def load_checkpoint(run_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The content of checkpoint.pt (our own file, which holds random-number states); clear errors when missing or damaged."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise TrainError(_nothing_to_resume(run_dir, "base"))
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for a truncated, empty or foreign file
        raise TrainError(f"could not read {path} ({_short(exc)}): the file is damaged (cut short, e.g. by a "
                         f"full disk) or not a checkpoint of this project, so the run cannot be continued. "
                         f"{_restart_hint(run_dir)}") from exc
    missing = [key for key in CHECKPOINT_KEYS if key not in state] if isinstance(state, dict) else list(CHECKPOINT_KEYS)
    if missing:
        raise TrainError(f"{path} is not a complete checkpoint of this project (it lacks {', '.join(missing)}), so the run "
                         f"cannot be continued. {_restart_hint(run_dir)}")
    return state


def save_model(run_dir: str | os.PathLike, model: nn.Module) -> Path:
    """Write the final weights model.pt (atomically)."""
    return atomic_write(Path(run_dir) / MODEL, lambda p: torch.save(model.state_dict(), p))


def load_base_model(run_dir: str | os.PathLike) -> tuple[nn.Module, TrainConfig]:
    """The final model of a finished stage-1 run (in eval mode) and its config."""
    run_dir = Path(run_dir)
    run = read_config(run_dir)
    config = TrainConfig.from_dict(run["train"])
    weights = run_dir / MODEL
    if not weights.is_file():
        raise TrainError(f"{run_dir} has no {MODEL}: training did not finish. "
                         f"Continue it with `{_continue_command(run_dir, run)}`.")
    model = build_model(config.model)
    try:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as exc:  # truncated, empty or foreign file, or weights of another network
        raise TrainError(f"could not read {weights} as the weights of the run's network {config.model} "
                         f"({_short(exc)}): the file is damaged or not this run's. "
                         f"{_model_fix(run_dir, run)}") from exc
    return model.eval(), config


def load_devices_model(run_dir: str | os.PathLike) -> MultiDeviceModel:
    """The multi-device model of a finished `asc train devices` run (fp32, eval mode)."""
    run_dir = Path(run_dir)
    run = read_config(run_dir)
    again = _devices_command(run_dir, run, "--resume")
    if not (run_dir / MULTIDEVICE).is_file():
        raise TrainError(f"{run_dir} has no {MULTIDEVICE}: fine-tuning did not finish. Continue it with `{again}`.")
    try:
        return MultiDeviceModel.load(run_dir / MULTIDEVICE).float()
    except ValueError as exc:
        raise TrainError(f"{exc} `{again}` writes it again from the run's finished device models.") from exc


def load_run_model(run_dir: str | os.PathLike) -> tuple[nn.Module, FrontendConfig, dict]:
    """The model of a run folder of either kind, its front-end settings and the run's config.json content."""
    run = read_config(run_dir)
    kind = run_kind(run)
    if kind == "devices":
        model = load_devices_model(run_dir)
        return model, model.frontend_config, run
    if kind != "base":
        raise TrainError(f"{run_dir} holds a run of kind {kind!r}; expected one of {', '.join(RUN_KINDS)}.")
    model, _ = load_base_model(run_dir)
    return model, FrontendConfig(**run["frontend"]), run


def device_run_dir(run_dir: str | os.PathLike, device_id: str) -> Path:
    """The folder of one device's fine-tuning run inside a devices run."""
    return Path(run_dir) / DEVICES_DIR / device_id


# ---- the commands a message suggests -------------------------------------------------------------------------------


def _base_command(run_dir: Path, info: dict, flag: str) -> str:
    """`asc train base` for run_dir with `flag` and the settings its config.json records (those that differ from the recipe)."""
    parts = ["asc train base"]
    if info.get("data_dir"):
        parts.append(f"--data-dir {shell_quote(info['data_dir'])}")
    parts += [f"--out {shell_quote(run_dir)}", flag]
    if flag != "--resume":  # a resumed run keeps its recorded settings by itself
        try:
            saved = TrainConfig.from_dict(info["train"]).to_dict()
        except (KeyError, TypeError, TrainError):
            saved = {}
        recipe = TrainConfig().to_dict()
        parts += [f"--{key.replace('_', '-')} {shell_quote(value)}" for key, value in saved.items()
                  if key != "devices" and value is not None and value != recipe[key]]
        if info.get("speed_layer") is False:
            parts.append("--plain")
    return " ".join(parts)


def _devices_command(run_dir: Path, info: dict, flag: str) -> str:
    """`asc train devices` for the stage-2 run in run_dir (its base run as recorded) with `flag`."""
    return f"asc train devices --base {shell_quote(info.get('base_run') or 'BASE_RUN')} --out {shell_quote(run_dir)} {flag}"


def _config_or_empty(run_dir: Path) -> dict:
    """config.json of a folder of this project, or {} (for messages about folders that may be damaged)."""
    try:
        info = json.loads((run_dir / CONFIG).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _continue_command(run_dir: Path, info: dict) -> str:
    """The command that continues the unfinished run in run_dir."""
    if info.get("kind") == "device":
        return _devices_command(run_dir.parent.parent, info, "--resume")
    return _base_command(run_dir, info, "--resume")


def _restart_hint(run_dir: Path) -> str:
    """What to run when a run's checkpoint is unusable: start it (or, in a stage-2 run, its device) again."""
    info = _config_or_empty(run_dir)
    if info.get("kind") == "device":
        return (f"Start this device again: delete the folder {run_dir}, then run "
                f"`{_devices_command(run_dir.parent.parent, info, '--resume')}` (finished devices are kept).")
    return (f"Start the run again with `{_base_command(run_dir, info, '--overwrite')}` (its finished epochs are lost), "
            "or train into another --out folder.")


def _model_fix(run_dir: Path, info: dict) -> str:
    """What to run when a run's model.pt is unusable: write it again from the final checkpoint, else train again."""
    from_checkpoint = (run_dir / CHECKPOINT).is_file()
    if info.get("kind") == "device":
        what = f"the file {run_dir / MODEL}" if from_checkpoint else f"the folder {run_dir}"
        result = "it is written again from the device's last checkpoint" if from_checkpoint else "the device is fine-tuned again"
        return f"Delete {what}, then run `{_devices_command(run_dir.parent.parent, info, '--resume')}`: {result}."
    if from_checkpoint:
        return f"Write it again from the run's last checkpoint: `{_base_command(run_dir, info, '--resume')}`."
    return f"Train the run again: `{_base_command(run_dir, info, '--overwrite')}`."


def _nothing_to_resume(run_dir: Path, kind: str, base_run: str | os.PathLike | None = None) -> str:
    """The message for --resume on a folder without a run of `kind` ('base' or 'devices') to continue."""
    found = folder_kind(run_dir)
    info = _config_or_empty(run_dir) if found else {}
    head = f"nothing to resume in {run_dir}: it holds {describe_folder(run_dir)}"
    empty = not run_dir.is_dir() or not any(run_dir.iterdir())
    if kind == "devices":
        base = shell_quote(base_run or "BASE_RUN")
        if empty:
            advice = f"Start the stage-2 run: `asc train devices --base {base} --out {shell_quote(run_dir)}`."
        else:
            head += ", not a stage-2 run"
            advice = ("Pass the folder of the stage-2 run to continue, or start one in a new folder: "
                      f"`asc train devices --base {base} --out NEW_FOLDER`.")
    elif found == "base":
        advice = ("The run stopped before its first epoch ended, so there is no checkpoint to continue from. Start it again: "
                  f"`{_base_command(run_dir, info, '--overwrite')}`.")
    elif found == "device":
        advice = f"Continue the stage-2 run it belongs to (this device starts again): `{_continue_command(run_dir, info)}`."
    elif found == "devices":
        advice = f"It is a stage-2 run: continue it with `{_devices_command(run_dir, info, '--resume')}`."
    elif empty:
        advice = f"Start a new run: `asc train base --out {shell_quote(run_dir)}`."
    else:
        advice = "Pass the folder of the run to continue, or start a new run in a new folder: `asc train base --out NEW_FOLDER`."
    return f"{head}. {advice} Nothing was started or changed."


def require_resumable(run_dir: str | os.PathLike, kind: str, base_run: str | os.PathLike | None = None) -> dict:
    """The config.json of the run `--resume` continues in run_dir, else an error that says what the folder holds instead.

    kind "base": a stage-1 run with a checkpoint; kind "devices": a stage-2 run (its devices keep their own checkpoints).
    `base_run` (stage 2) goes into the suggested command when there is no run to continue.
    """
    run_dir = Path(run_dir)
    found = folder_kind(run_dir)
    ok = found == "devices" if kind == "devices" else found == "base" and (run_dir / CHECKPOINT).is_file()
    if not ok:
        raise TrainError(_nothing_to_resume(run_dir, kind, base_run))
    return read_config(run_dir)


# ---- what a folder holds ---------------------------------------------------------------------------------------------


def folder_kind(run_dir: str | os.PathLike) -> str | None:
    """The kind of run a folder holds ('base', 'devices' or 'device', see FOLDER_KINDS), or None when it holds none."""
    info = _config_or_empty(Path(run_dir))
    kind = info.get("kind")
    needed = "stage2" if kind == "devices" else "train"  # a config.json of this project, not just any file of that name
    return kind if kind in FOLDER_KINDS and needed in info else None


def _listing(names: list[str], shown: int = 5) -> str:
    """'3 entries (a, b, c)' for messages, the first `shown` names only."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} {'entry' if len(names) == 1 else 'entries'} ({', '.join(names[:shown])}{more})"


def _progress(run_dir: Path, kind: str, info: dict) -> str:
    """How far a run got, in words."""
    if kind == "devices":
        wanted = [str(d) for d in info.get("devices", [])]
        done = [d for d in wanted if (device_run_dir(run_dir, d) / MODEL).is_file()]
        text = f"{len(done)} of {len(wanted)} devices fine-tuned" + (f" ({', '.join(done)})" if done else "")
        if (run_dir / MULTIDEVICE).is_file():
            text += f", finished ({MULTIDEVICE})"
    elif (run_dir / CHECKPOINT).is_file():
        try:
            done = str(len(read_history(run_dir)))
        except (OSError, ValueError):
            done = "?"
        text = f"{done} of {info.get('train', {}).get('epochs', '?')} epochs done"
        if (run_dir / MODEL).is_file():
            text += f", finished ({MODEL})"
    else:
        text = f"no finished epoch (no {CHECKPOINT})"
    if (run_dir / METRICS).is_file():
        text += f", evaluated ({METRICS})"
    return text


def describe_folder(run_dir: str | os.PathLike) -> str:
    """What a folder holds, in words for messages: nothing, which run and how far it got, or its first entries."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return "nothing (the folder does not exist)"
    if not run_dir.is_dir():
        return "a file, not a folder"
    entries = sorted(e.name for e in run_dir.iterdir() if e.name not in SYSTEM_FILES)
    if not entries:
        return "nothing (the folder is empty)"
    kind = folder_kind(run_dir)
    if kind is None:
        note = f"; its {CONFIG} is not one this project writes" if CONFIG in entries else ""
        return f"no run of this project but {_listing(entries)}{note}"
    return f"{FOLDER_KINDS[kind]}, {_progress(run_dir, kind, _config_or_empty(run_dir))}"


def foreign_entries(run_dir: str | os.PathLike) -> list[str]:
    """The entries of a folder (paths relative to it) that no run of this project writes: replacing it would delete them."""
    run_dir = Path(run_dir)
    kind = folder_kind(run_dir)
    found: list[str] = []
    for entry in sorted(run_dir.iterdir()):
        name = entry.name
        if name in SYSTEM_FILES or _OWN_HIDDEN.match(name):
            continue
        if kind is not None and name in RUN_FILES and entry.is_file() and not entry.is_symlink():
            continue
        if kind == "devices" and name == DEVICES_DIR and entry.is_dir() and not entry.is_symlink():
            for device in sorted(entry.iterdir()):
                if device.name in SYSTEM_FILES or _OWN_HIDDEN.match(device.name):
                    continue
                one_device_run = device.is_dir() and not device.is_symlink() and folder_kind(device) in (None, "device")
                if device.name in DEVICES and one_device_run:
                    found += [f"{DEVICES_DIR}/{device.name}/{inner}" for inner in foreign_entries(device)]
                else:
                    found.append(f"{DEVICES_DIR}/{device.name}")
            continue
        found.append(name)
    return found


def _has_checkpoint(run_dir: Path) -> bool:
    """True when a run in run_dir (or one of its devices) has finished an epoch."""
    return (run_dir / CHECKPOINT).is_file() or any((run_dir / DEVICES_DIR).glob(f"*/{CHECKPOINT}"))


# ---- replacing a run as a whole --------------------------------------------------------------------------------------


def _sibling(run_dir: str | os.PathLike, suffix: str) -> Path:
    path = Path(os.path.abspath(run_dir))
    return path.parent / f".{path.name}{suffix}"


def lock_path(run_dir: str | os.PathLike) -> Path:
    """The lock file of a run folder: `.<name>.lock` beside it (it survives the folder being moved aside)."""
    return _sibling(run_dir, ".lock")


def aside_path(run_dir: str | os.PathLike) -> Path:
    """Where a run that is being replaced waits until the new run has written its first checkpoint."""
    return _sibling(run_dir, ".replaced")


def check_replaceable(run_dir: str | os.PathLike) -> None:
    """Refuse (TrainError) a folder that a new run may not replace: a file, or a folder holding anything but a run of ours."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise TrainError(f"{run_dir} is a file; expected a run folder (a new or empty folder, or a run of this project). "
                         "Choose another --out path.")
    foreign = foreign_entries(run_dir)
    if not foreign and any(run_dir.iterdir()):  # a run of ours: it will be moved aside, which these two cases forbid
        if run_dir.is_symlink():
            raise TrainError(f"{run_dir} is a symbolic link to {run_dir.resolve()}; a run is replaced by moving its folder "
                             f"aside, so pass the folder itself: --out {shell_quote(run_dir.resolve())}. Nothing was changed.")
        cwd = Path.cwd().resolve()
        if cwd == run_dir.resolve() or run_dir.resolve() in cwd.parents:
            raise TrainError(f"{run_dir} holds the current working folder {cwd}; a run is replaced by moving its folder "
                             "aside, so run the command from outside it. Nothing was changed.")
    if not foreign:
        return
    if folder_kind(run_dir) is None:
        raise TrainError(f"{run_dir} holds {describe_folder(run_dir)}, not a training run of this project, so a new run may "
                         "not replace it; nothing was changed. Choose a new or empty --out folder.")
    raise TrainError(f"{run_dir} holds {describe_folder(run_dir)}, and also {_listing(foreign)} that no run of this project "
                     "writes; replacing the run would delete them, so nothing was changed. Move them out of the folder, or "
                     "choose another --out folder.")


class Replacement:
    """A new run started in a folder; `commit()` deletes the run it replaces (call it once the first checkpoint is written)."""

    def __init__(self, run_dir: Path, aside: Path | None) -> None:
        self.run_dir = run_dir
        self.aside = aside  # the replaced run, moved aside (None when the folder was new or empty)
        self.committed = False

    def commit(self) -> None:
        """Delete the replaced run: the new one has a checkpoint now (further calls do nothing)."""
        if self.aside is not None:
            shutil.rmtree(self.aside)
            self.aside = None
        self.committed = True


def _empty_folder(run_dir: Path) -> None:
    for entry in run_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@contextmanager
def replace_run(run_dir: str | os.PathLike) -> Iterator[Replacement]:
    """Start a new run in run_dir (hold `lock_run` around it): the old run waits aside until `commit()` deletes it.

    A folder holding anything but a run of this project is refused (`check_replaceable`). When the block raises before
    `commit()`, everything the new run wrote is removed and the old run is put back; after `commit()` the new run stays
    (it can be resumed). A block that ends normally commits.
    """
    run_dir = Path(run_dir)
    check_replaceable(run_dir)
    existed = run_dir.exists()
    aside = aside_path(run_dir) if existed and any(run_dir.iterdir()) else None
    try:
        if aside is not None:
            os.replace(run_dir, aside)
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if aside is not None and aside.exists() and not run_dir.exists():
            os.replace(aside, run_dir)
        raise TrainError(f"could not start a new run in {run_dir} ({exc}); the folder must be writable. Nothing was "
                         "deleted.") from exc
    replacement = Replacement(run_dir, aside)
    try:
        yield replacement
    except BaseException:
        if not replacement.committed:
            try:
                if existed and aside is None:
                    _empty_folder(run_dir)  # the user's empty folder stays, empty again
                else:
                    shutil.rmtree(run_dir)
                if aside is not None:
                    os.replace(aside, run_dir)
            except OSError:
                pass  # left for the next start in this folder, which finishes the undo under the lock (_recover)
        raise
    replacement.commit()


def _recover(run_dir: Path) -> None:
    """Finish or undo a replacement that a killed process left half-done (called with the lock held)."""
    aside = aside_path(run_dir)
    if not aside.exists():
        return
    if not aside.is_dir() or folder_kind(aside) is None or foreign_entries(aside):
        raise TrainError(f"{aside} is in the way: it is where a run waits while {run_dir} is replaced, but it holds "
                         f"{describe_folder(aside)}. Move it elsewhere, then run the command again.")
    if _has_checkpoint(run_dir):
        shutil.rmtree(aside)  # the new run had written its first checkpoint: the old one was due to be deleted
        return
    if run_dir.exists():
        if not run_dir.is_dir() or foreign_entries(run_dir):
            raise TrainError(f"the run in {run_dir} was being replaced when its process stopped: the old run waits in {aside}, "
                             f"and {run_dir} now holds {describe_folder(run_dir)}. Move one of them elsewhere, then run the "
                             "command again.")
        shutil.rmtree(run_dir)  # only what the new run wrote before its first checkpoint (config.json)
    os.replace(aside, run_dir)


# ---- one process per run folder --------------------------------------------------------------------------------------

_HELD: set[str] = set()  # lock files this process holds: nested lock_run calls on the same folder share the lock


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from /proc (Linux), or None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def _process_runs(pid: int, start: str | None) -> bool:
    """True when process `pid` runs (and, where recorded, is the same process that started at `start`)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        return True  # cannot be checked without extra packages: treated as running, the message names the lock file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # runs, as another user
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    return state != "Z" and (start is None or started == start)  # a zombie has ended; another start = a reused pid


def _live_holder(lock: Path) -> dict | None:
    """The record of the process that holds `lock`, or None when the lock is gone or stale (its process has ended)."""
    try:
        text = lock.read_text()
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"pid": "unknown", "command": f"lock file unreadable: {exc}"}
    try:
        record = json.loads(text)
        record = {"pid": record} if isinstance(record, int) else record  # a bare process id
        pid = int(record["pid"])
    except (ValueError, KeyError, TypeError):
        # empty or garbled: being written right now, or left by a process killed while writing it
        return {"pid": "unknown", "command": "lock being created"} if age < STALE_UNREADABLE_LOCK_S else None
    if record.get("host") not in (None, socket.gethostname()):
        return record  # a process on another machine (a shared folder): it cannot be checked from here
    return record if _process_runs(pid, record.get("start")) else None


def _acquire(lock: Path, run_dir: Path) -> None:
    """Create the lock file atomically (O_EXCL) with this process's id; refuse when a running process holds it."""
    stat = _proc_stat(os.getpid())
    record = {"pid": os.getpid(), "host": socket.gethostname(), "start": stat[1] if stat else None,
              "command": " ".join(sys.argv)[:300], "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _live_holder(lock)
            if holder is not None:
                raise RunLockedError(
                    f"{run_dir} is in use: process {holder.get('pid')} (on {holder.get('host', 'this machine')}, since "
                    f"{holder.get('since', '?')}: {holder.get('command') or '?'}) is training into it, and two runs in one "
                    f"folder would overwrite each other's files. Wait for it to finish or stop it, or choose another --out "
                    f"folder. If no such process runs any more, delete the lock file {lock}.") from None
            lock.unlink(missing_ok=True)  # stale: its process has ended
            continue
        except OSError as exc:
            raise TrainError(f"cannot create the lock file {lock} ({exc}); the folder {lock.parent} must be writable. "
                             "Choose another --out folder.") from exc
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record))
        return
    raise RunLockedError(f"could not lock {run_dir}: its lock file {lock} keeps reappearing. Another process is starting a "
                         "run there; wait for it, or choose another --out folder.")


def _release(lock: Path) -> None:
    """Delete the lock file if this process holds it."""
    try:
        if json.loads(lock.read_text()).get("pid") == os.getpid():
            lock.unlink()
    except (OSError, ValueError, AttributeError):
        pass  # gone or replaced: not ours to delete


@contextmanager
def lock_run(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the run folder's lock (`lock_path`) for the block: a second process is refused (RunLockedError).

    The lock is released on every way out of the block; a lock left by a process that no longer runs is removed. On
    entry, a replacement that a killed process left half-done is finished or undone (see `replace_run`). Parent folders
    created for the lock are removed again when the block fails and leaves them empty.
    """
    lock = lock_path(run_dir)
    if str(lock) in _HELD:
        yield
        return
    created = []
    parent = lock.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainError(f"cannot create the folder {lock.parent} ({exc}); choose an --out folder in a writable place.") from exc
    failed = True
    try:
        _acquire(lock, Path(run_dir))
        _HELD.add(str(lock))
        try:
            _recover(Path(run_dir))
            yield
            failed = False
        finally:
            _HELD.discard(str(lock))
            _release(lock)
    finally:
        if failed:
            for folder in created:  # deepest first; stops at the first one that is not empty
                try:
                    folder.rmdir()
                except OSError:
                    break
