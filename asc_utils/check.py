"""Environment check: prints [OK]/[FAIL] per dependency, for the audio back end, the accelerator and the data directory."""

from __future__ import annotations

import importlib
import tempfile
from importlib import metadata
from pathlib import Path

from asc_utils.paths import default_data_dir, shell_quote

# import name -> distribution name
PACKAGES: dict[str, str] = {
    "torch": "torch",
    "torchaudio": "torchaudio",
    "torchinfo": "torchinfo",
    "soundfile": "soundfile",
    "numpy": "numpy",
    "pandas": "pandas",
    "matplotlib": "matplotlib",
    "seaborn": "seaborn",
    "ipywidgets": "ipywidgets",
    "tqdm": "tqdm",
    "jupyterlab": "jupyterlab",
    "papermill": "papermill",
}


def _line(ok: bool, what: str, detail: str) -> bool:
    print(f"[{'OK' if ok else 'FAIL'}] {what}: {detail}")
    return ok


def check_packages() -> bool:
    """Import every dependency and print its version."""
    ok = True
    for module, dist in PACKAGES.items():
        try:
            importlib.import_module(module)
            ok &= _line(True, module, metadata.version(dist))
        except Exception as exc:  # any import failure is a finding, not a crash
            ok &= _line(False, module, f"{type(exc).__name__}: {exc} -> run `make setup` (or pip install -e '.[notebooks,test]')")
    return ok


def check_audio() -> bool:
    """Write and read back a 24-bit wav with soundfile."""
    import numpy as np

    from asc_utils.audio import SAMPLE_RATE, read_wav, write_wav

    try:
        with tempfile.TemporaryDirectory() as tmp:
            wave = (0.5 * np.sin(np.linspace(0, 2 * np.pi * 440, SAMPLE_RATE))).astype(np.float32)
            write_wav(Path(tmp) / "probe.wav", wave)
            back, sr = read_wav(Path(tmp) / "probe.wav")
        err = float(np.abs(back[0] - wave).max())
        return _line(sr == SAMPLE_RATE and err < 1e-5, "audio back end", f"soundfile wrote and read a 24-bit wav (max error {err:.1e})")
    except Exception as exc:
        return _line(False, "audio back end", f"{exc} -> install libsndfile (pip install soundfile ships it)")


def check_accelerator() -> bool:
    """Report the accelerator that `--device auto` will use."""
    import torch

    if torch.cuda.is_available():
        return _line(True, "accelerator", f"CUDA: {torch.cuda.get_device_name(0)} (torch {torch.__version__})")
    return _line(True, "accelerator", f"none found, using the CPU with {torch.get_num_threads()} threads (torch {torch.__version__})")


def check_data_dir(data_dir: str | Path | None = None) -> bool:
    """Print the data line: `asc_utils.data.check.check_data_dir` (what `asc data check` runs) in one line; True if ok."""
    import os

    from asc_utils.data.check import check_data_dir as check_folder
    from asc_utils.paths import DATA_ENV

    path = Path(data_dir) if data_dir else default_data_dir()
    source = f" (from ${DATA_ENV})" if not data_dir and os.environ.get(DATA_ENV) else ""
    result = check_folder(path)
    kind = "embedded (synthetic) data set" if result.embedded else "TAU22 layout"
    if not result.exists:  # a file (the problem says so and what to do) or a missing folder
        todo = "" if path.exists() else f" -> run `make data` for the embedded set, or set {DATA_ENV} to your TAU22 folder"
        return _line(False, "data directory", f"{path}{source}: {result.problems[0]}{todo}")
    if not result.ok:
        return _line(False, "data directory", f"{path}{source} ({kind}): {len(result.problems)} problem(s), the first: "
                     f"{result.problems[0]} -> run `asc data check --data-dir {shell_quote(path)}` for all of them")
    notes = "; ".join(n for n in result.notes if "downloaded on first use" in n)
    return _line(True, "data directory", f"{path}{source} ({kind}; `asc data check` finds no problem{'; ' + notes if notes else ''})")


def run_checks(data_dir: str | Path | None = None) -> bool:
    """Run every check; True when all passed."""
    results = [check_packages(), check_audio(), check_accelerator(), check_data_dir(data_dir)]
    return all(results)


if __name__ == "__main__":
    raise SystemExit(0 if run_checks() else 1)
