"""The downloader: sha256 check, atomic write, resume, clear offline error (local HTTP server only)."""

from __future__ import annotations

import hashlib
import socket
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


def _closed_port() -> int:
    """A port on 127.0.0.1 on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_offline_error_is_explained(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/none.bin"
    with pytest.raises(DownloadError, match="offline") as info:
        download(url, tmp_path / "none.bin", progress=False, timeout=2)
    error = info.value
    assert (error.url, error.dest, error.kind, error.partial) == (url, tmp_path / "none.bin", "network", None)
    assert "refused" in error.reason.lower() and error.reason in str(error) and str(tmp_path / "none.bin") in str(error)
    assert list(tmp_path.iterdir()) == []


def test_http_error_and_malformed_url_are_explained(payload, serve_dir, tmp_path: Path) -> None:
    folder, _ = payload
    with pytest.raises(DownloadError, match="HTTP 404.*does not serve this file") as info:
        download(f"{serve_dir(folder)}/missing.bin", tmp_path / "dl" / "missing.bin", progress=False)
    assert info.value.kind == "http" and not list((tmp_path / "dl").iterdir())
    with pytest.raises(DownloadError, match="not-a-url"):  # urllib raises ValueError for this: still a DownloadError
        download("not-a-url/file.bin", tmp_path / "dl" / "file.bin", progress=False)
