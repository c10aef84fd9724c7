"""Stage-1 training: the `Trainer` (one optimisation step of the recipe) and `fit`, the resumable loop over epochs.

The recipe's settings live in `asc_utils.recipe` (TrainConfig), the run folder's files in `asc_utils.runs`. `fast=True`
(the default) trains through the speed layer (`asc_utils.speed`: the same arithmetic in a faster layout and front end);
`fast=False` trains the readable modules exactly as notebook 05 writes them out.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from asc_utils import augment, runs, speed
from asc_utils.data import load_split_arrays
from asc_utils.dirs import default_dirs
from asc_utils.features import LogMelFrontend
from asc_utils.models import build_model
from asc_utils.paths import shell_quote
from asc_utils.recipe import TrainConfig, TrainError, resolve_device, warmup_cosine

__all__ = ["FitResult", "TrainConfig", "TrainError", "Trainer", "fit", "resolve_device", "train_base", "training_rows",
           "warmup_cosine"]


class Trainer:
    """Model + front end + augmentations + optimiser + schedule; `step` runs one optimisation step on a batch."""

    def __init__(self, model: nn.Module, config: TrainConfig, steps_per_epoch: int, dirs: list[torch.Tensor] | None = None,
                 fast: bool = True) -> None:
        self.config = config
        self.fast = fast
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.frontend = LogMelFrontend(config.frontend_config()).to(self.device)
        if fast:  # the speed layer: same parameters and arithmetic, faster layout and mel spectrogram
            self.model = speed.for_training(self.model)
            self.frontend = speed.fast_frontend(self.frontend)
        self.dir_aug = augment.DIRAugment(dirs, p=config.dir_p).to(self.device) if config.dir_p > 0 and dirs else None
        self.mixstyle = augment.FreqMixStyle(p=config.mixstyle_p, alpha=config.mixstyle_alpha) if config.mixstyle_p > 0 else None
        self.time_roll = augment.TimeRoll(config.time_roll) if config.time_roll > 0 else None
        opt_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        self.optimizer = opt_class(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        total = config.epochs * steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, config.warmup_steps, total, config.num_cycles)
        )
        self.generator = torch.Generator().manual_seed(config.seed)  # batch order, DIR, time roll and MixStyle draws

    def step(self, waves: torch.Tensor, labels: torch.Tensor, devices: list[str]) -> tuple[float, int]:
        """One optimisation step on waveforms [B, N]; returns (mean loss, number of correct predictions)."""
        self.model.train()
        self.frontend.train()
        x = waves.to(self.device, non_blocking=True).float().unsqueeze(1)  # [B, 1, N]
        y = labels.to(self.device, non_blocking=True)
        if self.dir_aug is not None:
            x = self.dir_aug(x, devices, generator=self.generator)
        if self.time_roll is not None:
            x = self.time_roll(x, generator=self.generator)
        mel = self.frontend(x)
        if self.mixstyle is not None:
            mel = self.mixstyle(mel, generator=self.generator)
        logits = self.model(mel.contiguous(memory_format=torch.channels_last) if self.fast else mel)
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item(), int((logits.argmax(1) == y).sum())

    def state_dict(self) -> dict:
        """Everything needed to continue bit-exactly: weights, optimiser, schedule and every random-number state."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "generator": self.generator.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state written by state_dict."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rng = state["rng"]
        self.generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])


@dataclass
class FitResult:
    """What fit returns: the trained model (last epoch), the per-epoch history and the run folder."""

    model: nn.Module
    history: list[dict]
    out_dir: Path


def training_rows(arrays: Any, devices: tuple[str, ...] | None) -> np.ndarray:
    """Row indices of the clips to train on (all, or those recorded by `devices`), with clear errors when empty."""
    n = len(arrays.labels)
    if n == 0:
        raise TrainError("the training split holds no clips: check the split file under split_setup/ of the data folder.")
    if devices is None:
        return np.arange(n)
    rows = np.flatnonzero(np.isin(np.asarray(arrays.devices), list(devices)))
    if len(rows) == 0:
        found = sorted(set(arrays.devices))
        raise TrainError(f"no training clips from device(s) {list(devices)}; the split has devices {found}. Pick one of those.")
    return rows


def _signature(arrays: Any, rows: np.ndarray) -> str:
    names = "\n".join(arrays.filenames[i] for i in rows)
    return hashlib.sha1(names.encode()).hexdigest()


def fit(
    model: nn.Module,
    arrays: Any,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    dirs: list[torch.Tensor] | None = None,
    info: dict | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    progress: bool = True,
    fast: bool = True,
) -> FitResult:
    """Train `model` on `arrays` (a SplitArrays: .waves [N, samples], .labels, .devices, .filenames) as `config` says.

    Writes config.json, history.csv/json, checkpoint.pt (atomically, every epoch) and finally model.pt into out_dir.
    A new run replaces a run already in out_dir as a whole: the old folder is deleted once the new run has written its
    first checkpoint, and put back when it fails before that (`asc_utils.runs.replace_run`); a folder holding anything
    else is refused. One process at a time trains into a folder (`asc_utils.runs.lock_run`).
    `resume=True` continues from checkpoint.pt (an error when there is none) and ends bit-exactly where an uninterrupted
    run would (on CPU).
    `dirs` are the impulse responses for DIR augmentation (default: augment.default_dirs(config.dir_dir)).
    `on_epoch_end(row)` is called after each epoch's checkpoint (e.g. to draw live curves).
    `fast=False` trains the readable modules without the speed layer (the same results up to float rounding).
    """
    out_dir = Path(out_dir)
    with runs.lock_run(out_dir):
        rows = training_rows(arrays, config.devices)
        signature = _signature(arrays, rows)
        dir_source = None
        if config.dir_p > 0 and dirs is None:
            dirs, dir_source = default_dirs(config.dir_dir)
        steps_per_epoch = math.ceil(len(rows) / config.batch_size)
        torch.manual_seed(config.seed)  # dropout and frequency masks draw from the global generator
        trainer = Trainer(model, config, steps_per_epoch, dirs, fast=fast)
        if resume:
            state = runs.load_checkpoint(out_dir, map_location=trainer.device)
            _check_same_run(state, config, signature, out_dir)
            try:
                trainer.load_state_dict(state)
            except (KeyError, RuntimeError, TypeError, ValueError) as exc:  # a checkpoint of another network or version
                raise TrainError(f"{out_dir / runs.CHECKPOINT} does not fit this run's network and optimiser "
                                 f"({str(exc)[:300]}); it cannot be continued. Start the run again in a new --out "
                                 "folder.") from exc
            return _epochs(trainer, arrays, rows, signature, out_dir, state["history"], state["epoch"], on_epoch_end,
                           progress, fast)
        run_info = {
            "kind": "base",
            "train": config.to_dict(),
            "frontend": config.frontend_config().to_dict(),
            "dir_source": dir_source if config.dir_p > 0 else None,
            "n_train_clips": int(len(rows)),
            "speed_layer": fast,
            "torch": torch.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **(info or {}),
        }
        with runs.replace_run(out_dir) as replacement:
            runs.write_config(out_dir, run_info)

            def after_epoch(row: dict) -> None:
                replacement.commit()  # the new run has its first checkpoint: the run it replaces goes
                if on_epoch_end is not None:
                    on_epoch_end(row)

            return _epochs(trainer, arrays, rows, signature, out_dir, [], 0, after_epoch, progress, fast)


def _epochs(trainer: Trainer, arrays: Any, rows: np.ndarray, signature: str, out_dir: Path, history: list[dict],
            start_epoch: int, on_epoch_end: Callable[[dict], None] | None, progress: bool, fast: bool) -> FitResult:
    """The epochs from start_epoch on: train, checkpoint and history after each, model.pt at the end."""
    config = trainer.config
    steps_per_epoch = math.ceil(len(rows) / config.batch_size)
    labels = torch.tensor(np.asarray(arrays.labels)[rows], dtype=torch.int64)
    devices = [arrays.devices[i] for i in rows]
    # On a GPU the clips stay resident in its memory (float16: 3 GB for TAU22's 25 % split); on the CPU they are read
    # from the (memory-mapped) array batch by batch.
    resident = torch.from_numpy(np.array(arrays.waves[rows])).to(trainer.device) if trainer.device.type == "cuda" else None
    for epoch in range(start_epoch, config.epochs):
        start = time.perf_counter()
        order = torch.randperm(len(rows), generator=trainer.generator)  # positions in `rows`
        loss_sum, correct = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
        for b in bar:
            pos = order[b * config.batch_size : (b + 1) * config.batch_size]
            batch = resident[pos.to(trainer.device)] if resident is not None else torch.from_numpy(arrays.waves[rows[pos.numpy()]])
            loss, n_correct = trainer.step(batch, labels[pos], [devices[i] for i in pos.tolist()])
            loss_sum += loss * len(pos)
            correct += n_correct
            bar.set_postfix(loss=f"{loss:.3f}")
        seconds = time.perf_counter() - start
        row = {
            "epoch": epoch + 1,
            "loss": loss_sum / len(rows),
            "train_acc": correct / len(rows),
            "lr": trainer.optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "clips_per_s": len(rows) / seconds,
        }
        history.append(row)
        state = {**trainer.state_dict(), "epoch": epoch + 1, "history": history, "config": config.to_dict(), "signature": signature}
        runs.save_checkpoint(out_dir, state)
        runs.write_history(out_dir, history)
        if progress:
            tqdm.write(f"epoch {row['epoch']:>3}/{config.epochs}  loss {row['loss']:.4f}  train acc {row['train_acc']:.3f}  "
                       f"lr {row['lr']:.2e}  {row['clips_per_s']:.0f} clips/s")
        if on_epoch_end is not None:
            on_epoch_end(row)
    model = speed.plain_layout(trainer.model) if fast else trainer.model
    runs.save_model(out_dir, model)
    return FitResult(model, history, out_dir)


def _check_same_run(state: dict, config: TrainConfig, signature: str, out_dir: Path) -> None:
    saved = TrainConfig.from_dict(state["config"]).to_dict()
    wanted = config.to_dict()
    diff = sorted(k for k in wanted if k != "device" and saved[k] != wanted[k])  # the device may change between sessions
    if diff:
        raise TrainError(f"{out_dir} holds a run with different settings ({', '.join(diff)}); "
                         "resume with the same settings, or choose another --out folder.")
    if state["signature"] != signature:
        raise TrainError(f"{out_dir} was trained on a different list of clips; resume with the same data folder and split.")


def train_base(data_dir: str | Path, out_dir: str | Path, config: TrainConfig, *, resume: bool = False, progress: bool = True,
               fast: bool = True) -> FitResult:
    """Stage 1: load the split's cached arrays, build a fresh model (seeded) and fit it (see `fit` for out_dir and resume)."""
    data_dir = Path(data_dir)
    if not (data_dir / "meta.csv").exists():
        raise TrainError(f"no TAU22 data set at {data_dir} (expected meta.csv, audio/ and split_setup/). "
                         f"Point --data-dir / $ASC_DATA_DIR at your TAU22 folder (`asc data check --data-dir {shell_quote(data_dir)}` "
                         "explains what it lacks), or generate the embedded data set into a new folder with "
                         "`asc data synth --preset tutorial --out data/tutorial` and use that.")
    with runs.lock_run(out_dir):  # held from before the (possibly long) caching of the clips to the end of training
        if resume:
            runs.require_resumable(out_dir, "base")
        else:
            runs.check_replaceable(out_dir)
        arrays = load_split_arrays(data_dir, config.split, progress=progress)
        torch.manual_seed(config.seed)
        model = build_model(config.model)
        return fit(model, arrays, config, out_dir, resume=resume, progress=progress, fast=fast,
                   info={"data_dir": str(data_dir.resolve())})
