"""Downloading files with a progress bar, resume after interruption, sha256 check and atomic write."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from asc_utils.errors import UserError

CHUNK = 1 << 16


class DownloadError(UserError, RuntimeError):
    """A file could not be downloaded or did not match its expected checksum."""


def sha256_of(path: str | os.PathLike) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, progress: bool = True, timeout: float = 30.0) -> Path:
    """Download url to dest (resuming a partial '.part' file), verify sha256 if given, then rename into place.

    An existing dest with the right hash is kept as is. On a hash mismatch nothing is left on disk.
    """
    dest = Path(dest)
    if dest.exists() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "asc-tutorial"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if offset and response.status != 206:  # server ignored the range: start again
                offset = 0
            total = response.headers.get("Content-Length")
            total = int(total) + offset if total is not None else None
            with open(part, "ab" if offset else "wb") as fh, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress, leave=False
            ) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    fh.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        kept = part.exists() and part.stat().st_size > 0
        if not kept:
            part.unlink(missing_ok=True)
        raise DownloadError(
            f"Could not download {url} -> {dest}: {exc}. Are you offline? Download the file by hand and place it at "
            f"'{dest}', or pass the path of a local copy."
            + (f" The partial download in '{part}' is resumed next time." if kept else "")
        ) from exc
    if sha256 is not None:
        found = sha256_of(part)
        if found != sha256:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"Checksum mismatch for {url}: expected sha256 {sha256}, found {found}. The corrupt download was deleted; "
                "try again, or check that the URL still serves the original file."
            )
    os.replace(part, dest)
    return dest
