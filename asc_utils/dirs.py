"""Device impulse responses (DIRs): load a folder of wav files, download the real MicIRP set, or generate responses offline.

MicIRP (micirp.blogspot.com, Creative Commons; credit MicIRP and Xaudia.com) is a set of 66 measured impulse responses of
(mostly vintage) microphones, used for DIR augmentation in DCASE low-complexity systems. Its file names and sha256 hashes
ship with this package (``micirp_sha256.txt``); `download_micirp` fetches the files from the public copy in the
cpjku_dcase23 repository. Without a download, `generated_dirs` provides synthetic microphone-like responses so that the
tutorial runs offline; they are labelled "generated" wherever they are used.
"""

from __future__ import annotations

import os
import urllib.parse
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from asc_utils.audio import SAMPLE_RATE, read_wav, resample, to_mono
from asc_utils.download import DownloadError, download, sha256_of
from asc_utils.paths import cache_dir
from asc_utils.responses import GENERATED_DIR_STREAM, IR_TAPS, mic_like_response

MICIRP_URL = "https://github.com/fschmid56/cpjku_dcase23/raw/main/datasets/dirs/"
MICIRP_URL_ENV = "ASC_MICIRP_URL"  # overrides MICIRP_URL (a mirror, or a local server in the tests)
DIR_DIR_ENV = "ASC_DIR_DIR"  # a folder of impulse responses to use instead of the generated set


def micirp_checksums() -> dict[str, str]:
    """The 66 MicIRP file names and their sha256 hashes, as shipped with the package."""
    text = resources.files("asc_utils").joinpath("micirp_sha256.txt").read_text(encoding="utf-8")
    pairs = (line.split(maxsplit=1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {name.strip(): digest for digest, name in pairs}


def micirp_dir() -> Path:
    """Where `download_micirp` puts the files by default: <cache_dir>/micirp."""
    return cache_dir() / "micirp"


def _energy_normalise(wave: torch.Tensor, what: str) -> torch.Tensor:
    """Scale an impulse response to unit energy (L2 norm 1); refuse an all-zero one."""
    energy = float(wave.square().sum())
    if not energy > 0.0:
        raise ValueError(f"Impulse response {what} is silent (all zeros); expected a measured response. Remove or replace it.")
    return wave / energy**0.5


def _wav_files(folder: Path) -> list[Path]:
    """The .wav files of a folder, sorted by name (the order is the same on every system)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".wav")


def load_named_dirs(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Impulse responses of a folder of wav files as {file stem: tensor [L]} (see `load_dirs`)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Impulse response folder '{folder}' does not exist. Expected a folder of .wav files (e.g. MicIRP: run "
            "asc_utils.augment.download_micirp() or `asc dirs download`), or pass None to use the generated responses."
        )
    files = _wav_files(folder)
    if not files:
        raise FileNotFoundError(
            f"Impulse response folder '{folder}' holds no .wav files. Expected impulse responses such as the 66 MicIRP "
            "files; download them with asc_utils.augment.download_micirp(dest) or point to the right folder."
        )
    dirs = {}
    for path in files:
        data, sr = read_wav(path)  # raises AudioReadError naming the file
        wave = resample(torch.from_numpy(to_mono(data)).float(), sr, SAMPLE_RATE)
        dirs[path.stem] = _energy_normalise(wave, f"'{path}'")
    return dirs


def load_dirs(folder: str | os.PathLike) -> list[torch.Tensor]:
    """Impulse responses of a folder of wav files (sorted by name) as mono 44.1 kHz tensors [L] with unit energy.

    Any sample rate is resampled to 44.1 kHz; several channels are averaged. Each response is scaled to unit energy
    (sum of squares 1) rather than unit peak: white noise filtered by h has its power multiplied by sum(h**2) (Parseval),
    so with unit energy a broadband clip keeps roughly its loudness and the augmentation changes its spectral colour,
    not its level; peak normalisation would make the level depend on how sharp each response happens to be.
    """
    return list(load_named_dirs(folder).values())


def download_micirp(dest: str | os.PathLike | None = None, base_url: str | None = None, progress: bool = True) -> Path:
    """Download the 66 MicIRP responses into dest (default <cache_dir>/micirp), checking every sha256; return dest.

    Files already present with the right hash are skipped; an interrupted file resumes from its '.part' file; a file
    with the wrong hash is deleted and reported. base_url (default $ASC_MICIRP_URL, else MICIRP_URL) points to a mirror.
    A failure raises DownloadError with one paragraph: the URL and the error, where the files go, and the alternatives.
    Folders this call created are removed again when a failure leaves them empty; nothing else is deleted.
    """
    dest = Path(dest).expanduser() if dest is not None else micirp_dir()
    base = base_url or os.environ.get(MICIRP_URL_ENV) or MICIRP_URL
    base = base if base.endswith("/") else base + "/"
    checksums = micirp_checksums()
    created = []  # the folders this call will create (download() makes them), deepest first
    for folder in (dest, *dest.parents):
        if folder.exists():
            break
        created.append(folder)
    for name, digest in tqdm(checksums.items(), desc="MicIRP", unit="file", disable=not progress, leave=False):
        target = dest / name
        if target.exists() and sha256_of(target) == digest:
            continue
        try:
            download(base + urllib.parse.quote(name), target, sha256=digest, progress=False)
        except DownloadError as exc:
            for folder in created:  # empty folders of this call only; rmdir never removes a folder with files
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise DownloadError(_micirp_failure(exc, name, dest, base, checksums), url=exc.url, dest=exc.dest,
                                reason=exc.reason, kind=exc.kind, partial=exc.partial) from exc
    return dest


def _micirp_failure(exc: DownloadError, name: str, dest: Path, base: str, checksums: dict[str, str]) -> str:
    """One paragraph for a failed MicIRP download: what failed, where the files go, and what to do instead."""
    done = sum((dest / n).is_file() for n in checksums)
    url = exc.url or base + urllib.parse.quote(name)
    if exc.kind == "checksum":
        what = f"{url} did not arrive intact: {exc.reason}; the corrupt download was deleted."
    elif exc.kind == "http":
        what = f"{url} failed: {exc.reason}: the URL (or mirror) {base} does not serve the MicIRP files."
    else:
        what = f"{url} failed: {exc.reason}. Are you offline, or is the server unreachable?"
    there = f"{done} of {len(checksums)} verified files are there and are kept" if done else "none is there yet"
    kept = f"; the partial download of {name} is resumed next time" if exc.partial else ""
    return (
        f"MicIRP download stopped at '{name}': {what} The {len(checksums)} impulse responses go to '{dest}' ({there}{kept}). "
        "Run the same command again to continue (`asc dirs download`, or "
        "asc_utils.dirs.download_micirp() in Python), or fetch the files elsewhere: from a mirror that holds them with "
        f"`--base-url URL` (base_url=..., or ${MICIRP_URL_ENV}), or by hand into that folder. Training does not need the "
        "download: give a folder of impulse responses you have as .wav files with `asc train base --dir-dir FOLDER` "
        f"(TrainConfig(dir_dir=...) in Python, or ${DIR_DIR_ENV}); without one, training uses generated responses."
    )


def generated_named_dirs(n: int = 24, seed: int = 0, taps: int = IR_TAPS) -> dict[str, torch.Tensor]:
    """Generated microphone-like responses as {'generated_NN': tensor [taps]} (see `generated_dirs`)."""
    if n < 1:
        raise ValueError(f"generated_dirs needs n >= 1 responses; got {n}.")
    rng = np.random.default_rng([GENERATED_DIR_STREAM, seed])  # the generated DIRs' own seed stream (see asc_utils.responses)
    dirs = {}
    for i in range(n):
        strength = rng.uniform(0.8, 1.4)  # as far from flat as the non-reference devices of the data set (0.8-1.3)
        dirs[f"generated_{i:02d}"] = torch.from_numpy(mic_like_response(rng, strength, taps))
    return dirs


def generated_dirs(n: int = 24, seed: int = 0, taps: int = IR_TAPS) -> list[torch.Tensor]:
    """n GENERATED (not measured) microphone-like impulse responses, 44.1 kHz, unit energy, repeatable for a seed.

    They come from the family of microphone-like responses that also renders the devices of the embedded data set
    (`asc_utils.responses.mic_like_response`: high-pass and low-pass corners, a spectral tilt, resonances and notches,
    a gentle ripple, minimum phase), drawn with seeds of their own, so they are new "microphones", never the data set's
    devices. They let the tutorial run offline; the real MicIRP measurements (`download_micirp`) are the set to use
    for actual training. The first k responses of a seed do not depend on n.
    """
    return list(generated_named_dirs(n, seed, taps).values())


def _is_complete_micirp(folder: Path) -> bool:
    """True when folder holds every MicIRP file name (a finished download)."""
    return folder.is_dir() and all((folder / name).is_file() for name in micirp_checksums())


def named_dirs(dir_dir: str | os.PathLike | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Like `default_dirs`, with each response keyed by its name (file stem, or 'generated_NN')."""
    chosen = dir_dir if dir_dir is not None else os.environ.get(DIR_DIR_ENV) or None
    if chosen is None and _is_complete_micirp(micirp_dir()):
        chosen = micirp_dir()
    if chosen is None:
        dirs = generated_named_dirs()
        return dirs, (
            f"generated: {len(dirs)} synthetic microphone-like responses (not measured). For the real MicIRP set run "
            "asc_utils.augment.download_micirp() or pass its folder as DIR_DIR."
        )
    dirs = load_named_dirs(chosen)
    known = micirp_checksums()
    source = "MicIRP" if all(f"{name}.wav" in known for name in dirs) else "folder"
    return dirs, f"{source}: {len(dirs)} impulse responses from {Path(chosen).expanduser()}"


def default_dirs(dir_dir: str | os.PathLike | None = None) -> tuple[list[torch.Tensor], str]:
    """The DIRs to use and a description: dir_dir, else $ASC_DIR_DIR, else a complete MicIRP download, else generated ones."""
    dirs, description = named_dirs(dir_dir)
    return list(dirs.values()), description
