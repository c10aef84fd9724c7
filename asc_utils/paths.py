"""Where the data, caches and outputs live (overridable with environment variables)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

DATA_ENV = "ASC_DATA_DIR"
CACHE_ENV = "ASC_CACHE_DIR"


def repo_root() -> Path:
    """The repository root (the folder that holds asc_utils/), for an editable install."""
    return Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """The data set to use: $ASC_DATA_DIR if set (e.g. the real TAU22 folder), else the embedded data/tutorial."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else repo_root() / "data" / "tutorial"


def cache_dir() -> Path:
    """Cache for downloads (published weights, MicIRP): $ASC_CACHE_DIR, else ~/.cache/asc-tutorial."""
    value = os.environ.get(CACHE_ENV)
    path = Path(value).expanduser() if value else Path.home() / ".cache" / "asc-tutorial"
    return path


def shell_quote(path: object) -> str:
    """A path as a shell needs it in a suggested command (quoted when it holds spaces or other special characters)."""
    return shlex.quote(str(path))
