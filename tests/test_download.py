"""The downloader: sha256 check, atomic write, resume, clear offline error (local HTTP server only)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from asc_utils.download import DownloadError, download, sha256_of


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "srv"
    folder.mkdir()
    data = bytes(range(256)) * 1000
    (folder / "file.bin").write_bytes(data)
    return folder, hashlib.sha256(data).hexdigest()


def test_download_verifies_and_renames(payload, serve_dir, tmp_path: Path) -> None:
    folder, digest = payload
    dest = download(f"{serve_dir(folder)}/file.bin", tmp_path / "dl" / "file.bin", sha256=digest, progress=False)
    assert sha256_of(dest) == digest
    assert not dest.with_name("file.bin.part").exists()


def test_corrupt_download_is_rejected_and_removed(payload, serve_dir, tmp_path: Path) -> None:
    folder, _ = payload
    dest = tmp_path / "dl" / "file.bin"
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        download(f"{serve_dir(folder)}/file.bin", dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not dest.with_name("file.bin.part").exists()


def test_download_resumes_a_partial_file(payload, serve_dir, tmp_path: Path) -> None:
    folder, digest = payload
    dest = tmp_path / "dl" / "file.bin"
    dest.parent.mkdir()
    dest.with_name("file.bin.part").write_bytes((folder / "file.bin").read_bytes()[:1000])
    download(f"{serve_dir(folder)}/file.bin", dest, sha256=digest, progress=False)
    assert sha256_of(dest) == digest
    assert serve_dir.requests[-1] == ("/file.bin", "bytes=1000-"), "the partial file was not resumed"


def test_offline_error_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="offline"):
        download("http://127.0.0.1:9/none.bin", tmp_path / "none.bin", progress=False, timeout=2)
    assert not (tmp_path / "none.bin").exists()
