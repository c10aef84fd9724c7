"""Training: one config object (defaults = the published stage-1 recipe), the warm-up + cosine schedule, a resumable loop."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from asc_utils.fast_training import to_training_layout
from asc_utils.features import FrontendConfig, LogMelFrontend

HISTORY_COLUMNS = ("epoch", "loss", "train_acc", "lr", "seconds", "clips_per_s")


class TrainError(ValueError):
    """A problem with the training inputs that the user can fix (bad data folder, empty split, foreign run folder)."""


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting in one place; the defaults are the published stage-1 recipe (general model, 25 % split)."""

    model: str = "sntl_task1_2"
    split: str = "split25"
    devices: tuple[str, ...] | None = None  # train only on clips of these devices (stage 2: one device); None = all
    epochs: int = 150
    batch_size: int = 256
    optimizer: str = "adam"  # "adam" (stage 1) or "adamw" (stage 2)
    lr: float = 0.002
    weight_decay: float = 0.0
    warmup_steps: int = 20
    num_cycles: float = 0.4
    grad_clip: float = 0.5  # max global gradient norm; 0 = off
    mixstyle_p: float = 0.4  # Frequency-MixStyle probability per batch; 0 = off
    mixstyle_alpha: float = 0.3
    freq_mask: int = 48  # FrequencyMasking(48, iid_masks=True) on the mel power; 0 = off
    dir_p: float = 0.4  # device impulse response augmentation probability, on device-'a' clips only; 0 = off
    dir_dir: str | None = None  # folder of real MicIRP wavs; None = the downloaded set if present, else generated DIRs
    time_roll: int = 0  # circular shift by up to +-time_roll samples (stage 2: 4410 = 0.1 s); 0 = off
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA if available), "cpu" or "cuda"

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise TrainError(f"optimizer must be 'adam' or 'adamw'; got {self.optimizer!r}.")
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainError(f"epochs and batch_size must be >= 1; got epochs={self.epochs}, batch_size={self.batch_size}.")
        if self.devices is not None and not isinstance(self.devices, tuple):  # JSON gives a list back: keep configs comparable
            object.__setattr__(self, "devices", tuple(self.devices))

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Rebuild a config saved with to_dict (unknown keys are an error)."""
        return cls(**values)

    def frontend_config(self) -> FrontendConfig:
        """The shared front-end settings with this run's frequency-mask width."""
        return dataclasses.replace(FrontendConfig(), freq_mask=self.freq_mask)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, num_cycles: float = 0.4) -> float:
    """LR multiplier: linear warm-up step/warmup, then max(0, 0.5 * (1 + cos(pi * 2 * num_cycles * progress)))."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * num_cycles * progress)))


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError("--device cuda was requested but torch sees no CUDA GPU; use --device auto or --device cpu.")
    return torch.device(name)


class Trainer:
    """Model + front end + augmentations + optimiser + schedule; `step` runs one optimisation step on a batch."""

    def __init__(self, model: nn.Module, config: TrainConfig, steps_per_epoch: int, dirs: list[torch.Tensor] | None = None) -> None:
        from asc_utils import augment

        self.config = config
        self.device = resolve_device(config.device)
        # channels-last makes the backward pass of the small grouped convolutions several times faster on CPU (oneDNN);
        # the 7- and 12-channel stem stays NCHW, where its BatchNorms are faster (asc_utils.fast_training)
        self.model = to_training_layout(model.to(self.device))
        self.frontend = LogMelFrontend(config.frontend_config()).to(self.device)
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
        logits = self.model(mel.contiguous(memory_format=torch.channels_last))
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


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_history(out_dir: Path, history: list[dict]) -> None:
    import pandas as pd

    _atomic_write(out_dir / "history.json", lambda p: p.write_text(json.dumps(history, indent=1)))
    _atomic_write(out_dir / "history.csv", lambda p: pd.DataFrame(history, columns=list(HISTORY_COLUMNS)).to_csv(p, index=False))


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
) -> FitResult:
    """Train `model` on `arrays` (a SplitArrays: .waves [N, samples], .labels, .devices, .filenames) as `config` says.

    Writes config.json, history.csv/json, checkpoint.pt (atomically, every epoch) and finally model.pt into out_dir.
    `resume=True` continues from checkpoint.pt and ends bit-exactly where an uninterrupted run would (on CPU).
    `dirs` are the impulse responses for DIR augmentation (default: augment.default_dirs(config.dir_dir)).
    `on_epoch_end(row)` is called after each epoch's checkpoint (e.g. to draw live curves).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = training_rows(arrays, config.devices)
    signature = _signature(arrays, rows)
    dir_source = None
    if config.dir_p > 0 and dirs is None:
        from asc_utils.augment import default_dirs

        dirs, dir_source = default_dirs(config.dir_dir)
    steps_per_epoch = math.ceil(len(rows) / config.batch_size)
    checkpoint_path = out_dir / "checkpoint.pt"
    history: list[dict] = []
    start_epoch = 0
    torch.manual_seed(config.seed)  # dropout and frequency masks draw from the global generator
    trainer = Trainer(model, config, steps_per_epoch, dirs)
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=trainer.device, weights_only=False)  # our own file: holds RNG states
        _check_same_run(state, config, signature, out_dir)
        trainer.load_state_dict(state)
        history, start_epoch = state["history"], state["epoch"]
    else:
        run_info = {
            "kind": "base",
            "train": config.to_dict(),
            "frontend": config.frontend_config().to_dict(),
            "dir_source": dir_source if config.dir_p > 0 else None,
            "n_train_clips": int(len(rows)),
            "torch": torch.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **(info or {}),
        }
        _atomic_write(out_dir / "config.json", lambda p: p.write_text(json.dumps(run_info, indent=2)))
        (out_dir / "model.pt").unlink(missing_ok=True)
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
        _atomic_write(checkpoint_path, lambda p: torch.save(state, p))
        _write_history(out_dir, history)
        if progress:
            tqdm.write(f"epoch {row['epoch']:>3}/{config.epochs}  loss {row['loss']:.4f}  train acc {row['train_acc']:.3f}  "
                       f"lr {row['lr']:.2e}  {row['clips_per_s']:.0f} clips/s")
        if on_epoch_end is not None:
            on_epoch_end(row)
    model = trainer.model.to(memory_format=torch.contiguous_format)
    _atomic_write(out_dir / "model.pt", lambda p: torch.save(model.state_dict(), p))
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


def train_base(data_dir: str | Path, out_dir: str | Path, config: TrainConfig, *, resume: bool = False, progress: bool = True) -> FitResult:
    """Stage 1: load the split's cached arrays, build a fresh model (seeded) and fit it."""
    from asc_utils.data import load_split_arrays
    from asc_utils.models import build_model

    data_dir = Path(data_dir)
    if not (data_dir / "meta.csv").exists():
        raise TrainError(f"no TAU22 data set at {data_dir} (expected meta.csv, audio/ and split_setup/). "
                         f"Generate the embedded one with `asc data synth --preset tutorial --out {data_dir}` "
                         "or point --data-dir / $ASC_DATA_DIR at your TAU22 folder.")
    arrays = load_split_arrays(data_dir, config.split, progress=progress)
    torch.manual_seed(config.seed)
    model = build_model(config.model)
    return fit(model, arrays, config, out_dir, resume=resume, progress=progress, info={"data_dir": str(data_dir.resolve())})


def load_run_config(run_dir: str | Path) -> dict:
    """The config.json of a run folder, with a clear error when the folder is not a run."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise TrainError(f"{run_dir} is not a training run (no config.json); train one with `asc train base --out {run_dir}`.")
    return json.loads(path.read_text())


def load_base_model(run_dir: str | Path) -> tuple[nn.Module, TrainConfig]:
    """The last-epoch model of a finished stage-1 run (in eval mode) and its config."""
    from asc_utils.models import build_model

    run = load_run_config(run_dir)
    config = TrainConfig.from_dict(run["train"])
    weights = Path(run_dir) / "model.pt"
    if not weights.exists():
        raise TrainError(f"{run_dir} has no model.pt: training did not finish. Continue it with "
                         f"`asc train base --out {run_dir} --resume`.")
    model = build_model(config.model)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval(), config


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """`base` (default: the recipe) overridden by the command-line options that were given."""
    names = ("epochs", "batch_size", "lr", "seed", "device", "split", "dir_dir")
    overrides = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if args.no_dir:
        overrides["dir_p"] = 0.0
    if args.no_mixstyle:
        overrides["mixstyle_p"] = 0.0
    return dataclasses.replace(base or TrainConfig(), **overrides)


def cli_train_base(args: argparse.Namespace) -> int:
    """`asc train base`: stage-1 training of the general model into a run folder (--resume continues it)."""
    from asc_utils.audio import AudioReadError
    from asc_utils.data import DataError
    from asc_utils.paths import default_data_dir

    out = Path(args.out)
    started = (out / "checkpoint.pt").exists()
    if started and not (args.resume or args.overwrite):
        print(f"error: {out} already holds a run. Pass --resume to continue it or --overwrite to start again.", file=sys.stderr)
        return 2
    try:
        saved = load_run_config(out) if args.resume and started else {}  # a resumed run keeps its own settings and data
        config = config_from_args(args, TrainConfig.from_dict(saved["train"]) if saved else None)
        data_dir = args.data_dir or saved.get("data_dir") or default_data_dir()
        result = train_base(data_dir, out, config, resume=args.resume)
    except (TrainError, DataError, AudioReadError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    last = result.history[-1]
    print(f"done: {len(result.history)} epochs, last loss {last['loss']:.4f}, train acc {last['train_acc']:.3f}; "
          f"model in {out / 'model.pt'}. Next: asc eval --run {out}")
    return 0
