"""Importing the published weights: key mapping, error messages, and the cached, checksummed download."""

from __future__ import annotations

import functools
import shutil
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from asc_utils import pretrained
from asc_utils.download import DownloadError
from asc_utils.models import build_model
from asc_utils.pretrained import (
    PublishedWeights,
    WeightsMismatchError,
    canonical_variant,
    check_state_dict,
    load_published,
    map_published_keys,
    read_state_dict,
)


@pytest.fixture(scope="module")
def weights(shared_dir):
    folder = shared_dir / "reference" / "sntl"
    return {v: folder / f"sntl_{v}_state_dict.pt" for v in ("task1_1", "task1_2")}


@pytest.mark.parametrize("name, expected", [("task1_1", "task1_1"), ("sntl_task1_2", "task1_2"), ("SNTL_TASK1_1", "task1_1")])
def test_canonical_variant(name, expected):
    assert canonical_variant(name) == expected


def test_unknown_variant_is_explained():
    with pytest.raises(ValueError, match="task1_1, task1_2"):
        canonical_variant("task1_3")


@pytest.mark.parametrize("variant", ["task1_1", "task1_2"])
def test_every_published_key_maps_onto_the_model(weights, variant):
    published = read_state_dict(weights[variant])
    mapped = map_published_keys(published)
    model = build_model(f"sntl_{variant}")
    assert set(mapped) == set(model.state_dict())
    check_state_dict(model, mapped)
    assert mapped["mix_avg"].dtype == torch.float32 and mapped["stem.bn.num_batches_tracked"].dtype == torch.int64
    assert torch.equal(mapped["max_branch.se.squeeze.weight"], published["se_2_1.fc1.weight"].float())


def test_loaded_model_is_fp32_and_in_eval_mode(weights):
    model = load_published("sntl_task1_2", path=weights["task1_2"])
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_training_checkpoint_format_loads_the_same_weights(weights, tmp_path):
    published = read_state_dict(weights["task1_1"])
    checkpoint = tmp_path / "last.ckpt"
    state = {f"model.{k}": v.float() for k, v in published.items()}
    state["mel.0.spectrogram.window"] = torch.hann_window(8192)  # the training wrapper's front end: ignored
    torch.save({"epoch": 149, "state_dict": state}, checkpoint)
    a = load_published("task1_1", path=weights["task1_1"]).state_dict()
    b = load_published("task1_1", path=checkpoint).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_wrong_variant_lists_unknown_keys_with_a_hint(weights):
    with pytest.raises(WeightsMismatchError) as info:
        load_published("task1_1", path=weights["task1_2"])
    message = str(info.value)
    assert "unknown keys (7)" in message and "unused_norm.weight" in message and "unused_linear.bias" in message
    assert "task1_1 file as task1_2" in message


def test_missing_and_misshaped_keys_are_listed(weights):
    state = map_published_keys(read_state_dict(weights["task1_2"]))
    del state["gru.bias_hh_l0"]
    state["stem.conv.weight"] = torch.zeros(7, 1, 5, 5)
    with pytest.raises(WeightsMismatchError) as info:
        check_state_dict(build_model("sntl_task1_2"), state)
    message = str(info.value)
    assert "missing keys (1): gru.bias_hh_l0" in message
    assert "stem.conv.weight: file (7, 1, 5, 5), model (7, 1, 3, 3)" in message


def test_unreadable_and_absent_files(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"this is not a torch file")
    with pytest.raises(WeightsMismatchError, match="Could not read"):
        load_published("task1_2", path=broken)
    with pytest.raises(FileNotFoundError, match="path=None to download"):
        load_published("task1_2", path=tmp_path / "absent.pt")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture()
def served(tmp_path, weights, monkeypatch):
    """A local HTTP server on 127.0.0.1 serving a good and a corrupted copy of the task1_2 weights; cache in tmp."""
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(weights["task1_2"], root / "good.pt")
    corrupted = bytearray(weights["task1_2"].read_bytes())
    corrupted[1000] ^= 0xFF
    (root / "corrupted.pt").write_bytes(bytes(corrupted))
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    cache = tmp_path / "cache"
    monkeypatch.setenv("ASC_CACHE_DIR", str(cache))
    yield f"http://127.0.0.1:{server.server_address[1]}", cache, server
    server.shutdown()
    server.server_close()
    thread.join()


def _point_to(monkeypatch, url: str) -> None:
    sha = pretrained.PUBLISHED["task1_2"].sha256
    monkeypatch.setitem(pretrained.PUBLISHED, "task1_2", PublishedWeights(url, sha))


def test_download_then_cache(served, monkeypatch):
    base, cache, server = served
    _point_to(monkeypatch, f"{base}/good.pt")
    model = load_published("task1_2", progress=False)
    assert (cache / "weights" / "sntl_task1_2_model_state_dict.pt").is_file()
    assert sum(p.numel() for p in model.parameters()) == 58_605
    server.shutdown()  # the second call must not need the network
    again = load_published("sntl_task1_2", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_corrupted_download_is_rejected_and_deleted(served, monkeypatch):
    base, cache, _ = served
    _point_to(monkeypatch, f"{base}/corrupted.pt")
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        load_published("task1_2", progress=False)
    assert not any((cache / "weights").iterdir())


def test_offline_error_says_what_to_do(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a port on which nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("ASC_CACHE_DIR", str(tmp_path))
    _point_to(monkeypatch, f"http://127.0.0.1:{port}/model_state_dict.pt")
    with pytest.raises(DownloadError) as info:
        load_published("task1_2", progress=False)
    assert "offline" in str(info.value) and "path='/path/to/model_state_dict.pt'" in str(info.value)
