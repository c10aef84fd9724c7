"""`asc data fetch`: a fake TAU22 release (tiny generated clips in zip archives) served from 127.0.0.1 with range requests."""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from asc_utils.data import fetch as fetch_module
from asc_utils.data import tau
from asc_utils.data.fetch import RELEASE, FetchError, Subset, fetch, select_clips

ARCHIVES = 3
DEFLATED = 1  # index (in sorted order) of the one deflated member; every other member is stored, as wav files often are


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under folder (except the fetch's own state) by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and fetch_module.WORK not in p.parts}


def _tiny_splits(tiny: Path) -> dict[str, pd.DataFrame]:
    """The tiny set's split files, with split5/split10 cut to about 5 and 10 % of split100 (the check of real split files)."""
    splits = {name: tau.read_split_file(tiny / "split_setup" / f"{name}.csv") for name in tau.SPLIT_NAMES}
    total = len(splits["split100"])
    splits["split10"] = splits["split25"].head(round(total * 0.10))
    splits["split5"] = splits["split10"].head(round(total * 0.05))
    return splits


@pytest.fixture(scope="module")
def fake_release(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """meta.zip, three audio archives (one member deflated) and the split files, laid out as on the servers."""
    root = tmp_path_factory.mktemp("release")
    zenodo, splits = root / "zenodo", root / "splits"
    zenodo.mkdir()
    splits.mkdir()
    with zipfile.ZipFile(zenodo / fetch_module.META_ARCHIVE, "w") as zf:
        zf.write(tiny_data / "meta.csv", f"{RELEASE}/meta.csv")
    wavs = sorted((tiny_data / "audio").glob("*.wav"))
    per = -(-len(wavs) // ARCHIVES)
    for i in range(ARCHIVES):
        with zipfile.ZipFile(zenodo / fetch_module.AUDIO_ARCHIVES[i], "w") as zf:
            for j, wav in enumerate(wavs[i * per: (i + 1) * per], start=i * per):
                zf.write(wav, f"{RELEASE}/audio/{wav.name}", zipfile.ZIP_DEFLATED if j == DEFLATED else zipfile.ZIP_STORED)
    for name, table in _tiny_splits(tiny_data).items():
        table.to_csv(splits / f"{name}.csv", sep="\t", index=False)
    return root


class _Server:
    """A threaded HTTP server on 127.0.0.1 for a folder that honours Range (first-last, first-, -suffix) with 206.

    ignore_range: answer every request with the whole file (200). drop_after: after that many member requests (ranges
    that start before the last 64 KiB of a file), close connections without an answer, as a broken network would.
    """

    def __init__(self, folder: Path, ignore_range: bool = False, drop_after: int | None = None) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.member_requests = 0
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                outer.requests.append((self.path.split("?")[0], rng))
                path = Path(self.translate_path(self.path))
                if ignore_range or not rng or not path.is_file():
                    return super().do_GET()
                data = path.read_bytes()
                first, last = rng.removeprefix("bytes=").split("-")
                start, end = (len(data) - int(last), len(data) - 1) if not first else (int(first), int(last or len(data) - 1))
                start, end = max(start, 0), min(end, len(data) - 1)
                if first and start < len(data) - (1 << 16):
                    outer.member_requests += 1
                    if drop_after is not None and outer.member_requests > drop_after:
                        self.close_connection = True
                        return
                self.send_response(206)
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                self.wfile.write(data[start: end + 1])

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def serve():
    """Start servers: `serve(folder, **options)`; all are shut down afterwards."""
    servers: list[_Server] = []

    def start(folder: Path, **options) -> _Server:
        servers.append(_Server(folder, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def release(fake_release: Path, serve, monkeypatch) -> tuple[_Server, Path]:
    """The fake release on a range-honouring server; split files from the same server, test.csv's sha256 set to ours."""
    server = serve(fake_release)
    monkeypatch.setattr(tau, "SPLIT_URL", f"{server.url}/splits/{{name}}")
    monkeypatch.setattr(tau, "TEST_SHA256", hashlib.sha256((fake_release / "splits" / "test.csv").read_bytes()).hexdigest())
    monkeypatch.setattr(fetch_module, "RETRY_DELAYS", (0.0,))
    return server, fake_release


def _no_partial_files(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if p.name.endswith(".part")] if folder.exists() else []
    assert not leftovers, f"partial files left behind: {leftovers}"


def test_fetch_writes_a_checked_folder_that_trains(release, tmp_path: Path, tiny_data: Path, one_thread) -> None:
    from asc_utils.cli import main

    server, root = release
    dest = tmp_path / "mini"
    report = fetch(dest, base_url=f"{server.url}/zenodo", workers=3, progress=False)
    expected = sorted(set(tau.read_split_file(tiny_data / "split_setup" / "split25.csv")["filename"])
                      | set(tau.read_split_file(tiny_data / "split_setup" / "test.csv")["filename"]))
    assert report.clips == report.fetched == len(expected) and report.present == 0
    assert sorted(f"audio/{p.name}" for p in (dest / "audio").iterdir()) == expected
    for name in expected:  # byte-identical to the originals, the deflated member included
        assert (dest / name).read_bytes() == (tiny_data / name).read_bytes(), name
    assert report.requests < report.fetched, "neighbouring members should share requests"
    assert len(report.archives) == ARCHIVES
    meta = tau.read_split_file(dest / "meta.csv")
    assert sorted(meta["filename"]) == expected and list(meta.columns) == list(tau.META_COLUMNS)
    for name in tau.SPLIT_NAMES:
        official = tau.read_split_file(root / "splits" / f"{name}.csv")
        restricted = tau.read_split_file(dest / "split_setup" / f"{name}.csv")
        assert restricted.equals(official[official["filename"].isin(expected)].reset_index(drop=True)), name
    card = (dest / "DATA_CARD.md").read_text()
    assert "real" in card.lower() and "non-commercial" in card and "seed 0" in card
    _no_partial_files(dest)

    assert main(["data", "check", "--data-dir", str(dest)]) == 0
    assert main(["train", "base", "--data-dir", str(dest), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--batch-size", "8", "--device", "cpu"]) == 0
    assert (tmp_path / "run" / "model.pt").exists()


def test_interrupted_fetch_resumes_without_fetching_a_clip_twice(release, serve, tmp_path: Path, monkeypatch) -> None:
    server, root = release
    monkeypatch.setattr(fetch_module, "MAX_REQUEST", 300_000)  # about two clips per request: many requests
    flaky = serve(root, drop_after=4)
    dest = tmp_path / "resumed"
    with pytest.raises(FetchError, match="fetches only the rest"):
        fetch(dest, base_url=f"{flaky.url}/zenodo", workers=1, progress=False)
    _no_partial_files(dest)
    kept = {p.name for p in (dest / "audio").glob("*.wav")}
    assert kept and not (dest / "meta.csv").exists(), "an unfinished folder must not look complete"

    before = len(server.requests)
    report = fetch(dest, base_url=f"{server.url}/zenodo", workers=2, progress=False)
    assert report.present == len(kept) and report.fetched == report.clips - len(kept)
    offsets = {}
    for archive in fetch_module.AUDIO_ARCHIVES[:ARCHIVES]:
        with zipfile.ZipFile(root / "zenodo" / archive) as zf:
            offsets[archive] = [i.header_offset for i in zf.infolist() if Path(i.filename).name in kept]
    for path, rng in server.requests[before:]:
        name = Path(path).name
        if rng and name in offsets and not rng.startswith("bytes=-"):
            first, last = map(int, rng.removeprefix("bytes=").split("-"))
            assert not any(first <= o <= last for o in offsets[name]), f"{rng} of {name} fetched a clip again"
    assert fetch(dest, base_url=f"{server.url}/zenodo", progress=False).fetched == 0


def test_from_archives_gives_the_same_folder(release, tmp_path: Path) -> None:
    server, root = release
    http = tmp_path / "http"
    fetch(http, base_url=f"{server.url}/zenodo", progress=False)
    local = tmp_path / "downloads"
    shutil.copytree(root / "zenodo", local)
    for csv in (root / "splits").iterdir():  # split files next to the archives: no download needed
        shutil.copy(csv, local / csv.name)
    requests = len(server.requests)
    report = fetch(tmp_path / "local", from_archives=local, progress=False)
    assert len(server.requests) == requests, "--from-archives must not use the network"
    assert report.fetched == report.clips
    assert _files(tmp_path / "local") == _files(http)


def test_server_without_range_support_is_explained(release, serve, tmp_path: Path) -> None:
    _, root = release
    plain = serve(root, ignore_range=True)
    dest = tmp_path / "norange"
    with pytest.raises(FetchError, match=r"does not support HTTP range requests.*--from-archives"):
        fetch(dest, base_url=f"{plain.url}/zenodo", progress=False)
    assert not dest.exists(), "a failed fetch that wrote no clip must leave nothing behind"


def test_corrupted_member_is_rejected(release, serve, tmp_path: Path, tiny_data: Path) -> None:
    _, root = release
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    archive = bad / "zenodo" / fetch_module.AUDIO_ARCHIVES[2]
    selected = {Path(n).name for name in ("split25", "test") for n in tau.read_split_file(root / "splits" / f"{name}.csv")["filename"]}
    with zipfile.ZipFile(archive) as zf:
        info = next(i for i in zf.infolist() if i.compress_type == zipfile.ZIP_STORED and Path(i.filename).name in selected)
    data = bytearray(archive.read_bytes())
    data[info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 1000] ^= 0xFF  # inside the wav data
    archive.write_bytes(bytes(data))
    server = serve(bad)
    dest = tmp_path / "corrupt"
    with pytest.raises(FetchError, match="CRC-32"):
        fetch(dest, base_url=f"{server.url}/zenodo", workers=1, progress=False)
    _no_partial_files(dest)
    assert not (dest / "audio" / Path(info.filename).name).exists(), "the damaged clip must not be written"


def test_unreachable_server_is_explained(release, tmp_path: Path) -> None:
    dest = tmp_path / "offline"
    with pytest.raises(FetchError, match=r"Could not download the TAU22 meta archive.*offline.*--from-archives"):
        fetch(dest, base_url="http://127.0.0.1:9", progress=False)  # discard port: nothing listens
    assert not dest.exists()


def test_split_files_unavailable_is_explained(release, tmp_path: Path, monkeypatch) -> None:
    server, _ = release
    monkeypatch.setattr(tau, "SPLIT_URL", "http://127.0.0.1:9/{name}")
    dest = tmp_path / "nosplits"
    with pytest.raises(FetchError, match=r"split files are needed.*could not be obtained.*--from-archives"):
        fetch(dest, base_url=f"{server.url}/zenodo", progress=False)
    assert not dest.exists()


def test_cli_fetch_and_its_errors(release, tmp_path: Path, capsys) -> None:
    from asc_utils.cli import main

    server, _ = release
    dest = tmp_path / "cli"
    assert main(["data", "fetch", "--dest", str(dest), "--base-url", f"{server.url}/zenodo", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "subset 'mini'" in out and "ASC_DATA_DIR=" in out
    assert main(["data", "fetch", "--dest", str(dest), "--subset", "test", "--base-url", f"{server.url}/zenodo"]) == 2
    assert "holds the subset 'mini'" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["data", "fetch", "--dest", str(foreign), "--base-url", f"{server.url}/zenodo"]) == 2
    assert "was not written by `asc data fetch`" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine" and [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_selection_is_balanced_seeded_and_within_the_splits(tiny_data: Path) -> None:
    meta = tau.load_meta(tiny_data)
    split25 = tau.read_split_file(tiny_data / "split_setup" / "split25.csv")
    test = tau.read_split_file(tiny_data / "split_setup" / "test.csv")
    spec = Subset("small", "test", train_clips=13, test_per_cell=1)
    chosen = select_clips(meta, split25, test, spec, seed=0)
    assert chosen == select_clips(meta, split25, test, spec, seed=0)
    rows = meta.set_index("filename").loc[chosen]
    train = rows[rows.index.isin(split25["filename"])]
    tested = rows[rows.index.isin(test["filename"])]
    assert len(train) == 13 and len(tested) == len(chosen) - 13
    full = meta.set_index("filename").loc[split25["filename"], "device"].value_counts()
    picked = train["device"].value_counts()
    assert abs(picked.get("a", 0) - 13 * full["a"] / full.sum()) <= 1, "training devices keep split25's proportions"
    assert tested.groupby("scene_label").size().eq(9).all() and len(tested) == 90, "one clip per class and device"
    assert tested["device"].value_counts().eq(10).all()


def test_selection_keeps_parallel_versions_together() -> None:
    """Device b takes the recordings device a gave (when it has them), so the subset holds the same sound on both."""
    names = [f"audio/park-lyon-{loc}-{seg}-{sub}-{dev}.wav" for loc in range(100, 110) for seg in (10, 20, 30)
             for sub in range(10) for dev in ("a", "b")]
    fields = [tau.parse_filename(n) for n in names]
    meta = tau.add_columns(pd.DataFrame({"filename": names, "scene_label": "park",
                                         "identifier": [f"lyon-{f['location']}" for f in fields],
                                         "source_label": [f["device"] for f in fields]}))
    split = pd.DataFrame({"filename": names})
    for seed in range(3):
        chosen = select_clips(meta, split, split.head(0), Subset("p", "p", train_clips=60, test_per_cell=0), seed=seed)
        a = {n.removesuffix("-a.wav") for n in chosen if n.endswith("-a.wav")}
        b = {n.removesuffix("-b.wav") for n in chosen if n.endswith("-b.wav")}
        assert len(a) == len(b) == 30 and a == b
        assert len({n.split("-")[2] for n in a}) == 3, "three recordings from three locations"


def test_mini_on_the_real_test_split(shared_dir: Path) -> None:
    """The mini subset's test part on the official test split: 20 clips per class and device, from many locations."""
    test = tau.read_split_file(shared_dir / "reference" / "tau22_test_split.csv")
    fields = test["filename"].map(tau.parse_filename)
    meta = tau.add_columns(test.assign(identifier=[f"{f['city']}-{f['location']}" for f in fields],
                                       source_label=[f["device"] for f in fields]))
    chosen = select_clips(meta, test.head(0), test, fetch_module.SUBSETS["mini"], seed=0)
    rows = meta.set_index("filename").loc[chosen]
    assert len(rows) == 1800 and rows["device"].value_counts().eq(200).all()
    assert rows.groupby("scene_label").size().eq(180).all()
    assert rows["location"].nunique() >= 40, "picks rotate over the recording locations"
    recordings = rows.index.str.replace(r"-\d+-[^-]+\.wav$", "", regex=True) + rows["device"]
    assert pd.Series(recordings).value_counts().eq(10).all(), "whole 10 s recordings (10 clips each)"
    assert select_clips(meta, test.head(0), test, fetch_module.SUBSETS["mini"], seed=1) != chosen, "the seed matters"
    assert fetch_module.subset_size(1800 + 1800) == 476_438_400 < 500e6
    assert fetch_module.subset_size(len(test)) == 3_927_969_920


def test_clip_size_matches_a_real_clip(shared_dir: Path) -> None:
    assert (shared_dir / "reference" / "sntl" / "dummy.wav").stat().st_size == fetch_module.CLIP_BYTES


def test_dest_and_source_errors(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="Unknown subset 'huge'"):
        fetch(tmp_path / "x", subset="huge", progress=False)
    with pytest.raises(FetchError, match="both given"):
        fetch(tmp_path / "x", base_url="http://127.0.0.1:9", from_archives=tmp_path, progress=False)
    with pytest.raises(FetchError, match=re.escape(fetch_module.META_ARCHIVE)):
        fetch(tmp_path / "x", from_archives=tmp_path, progress=False)
    assert not (tmp_path / "x").exists()
