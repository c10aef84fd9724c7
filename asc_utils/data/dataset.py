"""The torch Dataset over a TAU22-layout folder (real or embedded): the reference-style pipeline of benchmarks/run.py."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from asc_utils.data.tau import load_clip, load_split


class TAUDataset(Dataset):
    """Reference-style per-file loading (benchmarks/run.py); item = (wave [1, 44100] float32, label, device, city, filename)."""

    def __init__(self, data_dir: str | os.PathLike, split: str) -> None:
        self.data_dir = Path(data_dir)
        self.split = split
        self.table = load_split(self.data_dir, split)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str, str, str]:
        row = self.table.iloc[index]
        wave = torch.from_numpy(load_clip(self.data_dir / row["filename"])).unsqueeze(0)
        return wave, int(row["label"]), str(row["device"]), str(row["city"]), str(row["filename"])
