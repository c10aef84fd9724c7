"""Shared fixtures: the reference material in ../shared and a tiny embedded data set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_path() -> Path:
    return Path(os.environ.get("ASC_SHARED_DIR", REPO / ".." / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (or $ASC_SHARED_DIR); skip when absent, but fail when ASC_REQUIRE_SHARED=1 (as in CI)."""
    path = _shared_path()
    if not (path / "README.md").exists():
        message = f"reference folder not found at {path} (set ASC_SHARED_DIR); users' clones do not have it"
        if os.environ.get("ASC_REQUIRE_SHARED") == "1":
            pytest.fail(message + " - ASC_REQUIRE_SHARED=1 forbids skipping")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny embedded data set (preset 'tiny'), generated once per test session."""
    from asc_utils.synth import synthesize

    out = tmp_path_factory.mktemp("tiny_data") / "tiny"
    synthesize(out, preset="tiny", seed=0)
    return out


@pytest.fixture
def serve_dir():
    """Start an HTTP server on 127.0.0.1 for a folder: `base_url = serve_dir(folder)`; every server is shut down afterwards."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    requests: list[tuple[str, str | None]] = []  # (path, Range header) of every GET, for tests to inspect

    class QuietHandler(SimpleHTTPRequestHandler):
        """Serves files; honours 'Range: bytes=N-' with 206 Partial Content so resumed downloads can be tested."""

        def do_GET(self) -> None:
            requests.append((self.path, self.headers.get("Range")))
            rng = self.headers.get("Range")
            path = Path(self.translate_path(self.path))
            if not rng or not rng.startswith("bytes=") or not path.is_file():
                return super().do_GET()
            data = path.read_bytes()
            start = int(rng[len("bytes="):].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            self.wfile.write(data[start:])

        def log_message(self, *args) -> None:  # keep test output clean
            pass

    servers = []

    def start(folder: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    start.requests = requests
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def one_thread():
    """One intra-op torch thread: on a busy 2-core machine two spinning OpenMP threads are many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
