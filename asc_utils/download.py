"""Downloading files with a progress bar, resume after interruption, sha256 check and atomic write."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from asc_utils.errors import UserError

CHUNK = 1 << 16


class DownloadError(UserError, RuntimeError):
    """A file could not be downloaded or did not match its expected checksum.

    Besides the message it carries what callers need to explain the failure in their own words: `url`, `dest`, `reason`
    (the network error or the checksum mismatch, in words), `kind` ("network": no answer; "http": the server answered
    with an error status; "checksum": the file arrived but differs) and `partial` (a kept '.part' file, resumed next time).
    """

    def __init__(self, message: str, *, url: str | None = None, dest: Path | None = None, reason: str | None = None,
                 kind: str = "network", partial: Path | None = None) -> None:
        super().__init__(message)
        self.url, self.dest, self.reason, self.kind, self.partial = url, dest, reason, kind, partial


def _reason(exc: BaseException) -> str:
    """A network error in words: the HTTP status, or the underlying error of a URLError (e.g. connection refused)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


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
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "asc-tutorial"})  # ValueError for a malformed URL
        if offset:
            request.add_header("Range", f"bytes={offset}-")
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
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException, ValueError) as exc:
        kept = part.exists() and part.stat().st_size > 0
        if not kept:
            part.unlink(missing_ok=True)
        kind = "http" if isinstance(exc, urllib.error.HTTPError) else "network"
        reason = _reason(exc)
        hint = ("the URL (or the mirror) does not serve this file" if kind == "http"
                else "are you offline, or is the server unreachable?")
        raise DownloadError(
            f"Could not download {url}: {reason} ({hint}). The file would go to '{dest}': download it by hand and place it "
            "there, or pass the path of a local copy."
            + (f" The partial download in '{part}' is resumed next time." if kept else ""),
            url=url, dest=dest, reason=reason, kind=kind, partial=part if kept else None,
        ) from exc
    if sha256 is not None:
        found = sha256_of(part)
        if found != sha256:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"Checksum mismatch for {url}: expected sha256 {sha256}, found {found}. The corrupt download was deleted; "
                "try again, or check that the URL still serves the original file.",
                url=url, dest=dest, reason=f"Checksum mismatch (expected sha256 {sha256}, found {found})", kind="checksum",
            )
    os.replace(part, dest)
    return dest
