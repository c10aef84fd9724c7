"""Device impulse responses: loading (real MicIRP files read in place), downloading from a local server, generated set."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asc_utils.audio import AudioReadError
from asc_utils.cli import main as asc_main
from asc_utils.dirs import (
    DIR_DIR_ENV,
    MICIRP_URL_ENV,
    default_dirs,
    download_micirp,
    generated_dirs,
    generated_named_dirs,
    load_dirs,
    load_named_dirs,
    micirp_checksums,
    named_dirs,
)
from asc_utils.download import DownloadError, sha256_of
from asc_utils.synth.devices import DEVICE_SPECS, device_response


@pytest.fixture(scope="module")
def micirp(shared_dir: Path) -> Path:
    return shared_dir / "micirp"


def test_shipped_checksums_match_the_reference_list(micirp: Path) -> None:
    listed = dict(reversed(line.split(maxsplit=1)) for line in (micirp / "SHA256SUMS").read_text().splitlines() if line.strip())
    assert micirp_checksums() == listed
    assert len(listed) == 66


def test_load_real_micirp(micirp: Path) -> None:
    dirs = load_named_dirs(micirp)
    assert len(dirs) == 66 and list(dirs) == sorted(dirs)
    for name, wave in dirs.items():
        assert wave.dtype == torch.float32 and wave.dim() == 1, name
        assert wave.square().sum().item() == pytest.approx(1.0, rel=1e-4), f"{name} is not energy-normalised"
    info = sf.info(str(micirp / "BBCmarconi_B.wav"))
    assert info.samplerate == 48_000, "the reference set should contain a 48 kHz file"
    assert dirs["BBCmarconi_B"].numel() == pytest.approx(info.frames * 44_100 / 48_000, abs=2), "48 kHz file not resampled to 44.1 kHz"
    assert [len(d) for d in load_dirs(micirp)] == [len(d) for d in dirs.values()]


def test_load_resamples_and_mixes_down(tmp_path: Path) -> None:
    stereo = np.zeros((1600, 2), dtype=np.float32)
    stereo[10] = [0.5, 0.3]
    sf.write(str(tmp_path / "ir.wav"), stereo, 16_000, subtype="PCM_24")
    (wave,) = load_dirs(tmp_path)
    assert wave.numel() == 4410  # 0.1 s at 44.1 kHz
    assert wave.square().sum().item() == pytest.approx(1.0, rel=1e-5)


def test_load_errors_are_explained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist.*download_micirp"):
        load_dirs(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="holds no .wav files"):
        load_dirs(tmp_path)
    (tmp_path / "broken.wav").write_bytes(b"RIFF0000WAVE not really audio")
    with pytest.raises(AudioReadError, match="broken.wav"):
        load_dirs(tmp_path)
    (tmp_path / "broken.wav").unlink()
    sf.write(str(tmp_path / "silent.wav"), np.zeros(100, dtype=np.float32), 44_100)
    with pytest.raises(ValueError, match="silent"):
        load_dirs(tmp_path)


def test_download_fetches_verifies_and_skips(micirp: Path, serve_dir, tmp_path: Path) -> None:
    base = serve_dir(micirp)
    dest = download_micirp(tmp_path / "micirp", base_url=base, progress=False)
    checksums = micirp_checksums()
    assert sorted(p.name for p in dest.iterdir()) == sorted(checksums), "exactly the 66 files, no .part left behind"
    assert all(sha256_of(dest / name) == digest for name, digest in checksums.items())
    assert ("/B%26O_BM2.wav", None) in serve_dir.requests, "names with '&' must be URL-quoted"
    before = len(serve_dir.requests)
    (dest / "Altec_639.wav").write_bytes(b"damaged on disk")
    download_micirp(dest, base_url=base, progress=False)
    assert serve_dir.requests[before:] == [("/Altec_639.wav", None)], "only the damaged file is fetched again"
    assert sha256_of(dest / "Altec_639.wav") == checksums["Altec_639.wav"]


def test_download_resumes_an_interrupted_file(micirp: Path, serve_dir, tmp_path: Path) -> None:
    dest = tmp_path / "micirp"
    dest.mkdir()
    (dest / "Coles_4038.wav.part").write_bytes((micirp / "Coles_4038.wav").read_bytes()[:10_000])
    download_micirp(dest, base_url=serve_dir(micirp), progress=False)
    assert ("/Coles_4038.wav", "bytes=10000-") in serve_dir.requests
    assert sha256_of(dest / "Coles_4038.wav") == micirp_checksums()["Coles_4038.wav"]
    assert not list(dest.glob("*.part"))


def test_corrupted_download_is_rejected_and_removed(micirp: Path, serve_dir, tmp_path: Path, monkeypatch) -> None:
    served = tmp_path / "served"
    served.mkdir()
    data = bytearray((micirp / "Altec_639.wav").read_bytes())
    data[5_000] ^= 0xFF  # one flipped byte
    (served / "Altec_639.wav").write_bytes(bytes(data))
    monkeypatch.setenv(MICIRP_URL_ENV, serve_dir(served))  # the base URL through the environment this time
    dest = tmp_path / "micirp"
    with pytest.raises(DownloadError, match="Altec_639.wav.*Checksum mismatch"):
        download_micirp(dest, progress=False)
    assert not dest.exists(), "nothing of the corrupt file may stay on disk (the folder this call created included)"
    dest.mkdir()
    (dest / "mine.txt").write_text("a file of the user's")
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        download_micirp(dest, progress=False)
    assert [p.name for p in dest.iterdir()] == ["mine.txt"], "a folder that existed before is kept, with its files"


def test_cli_download(micirp: Path, serve_dir, tmp_path: Path, capsys) -> None:
    assert asc_main(["dirs", "download", "--dest", str(tmp_path / "m"), "--base-url", serve_dir(micirp)]) == 0
    assert "66 verified" in capsys.readouterr().out
    assert len(list((tmp_path / "m").glob("*.wav"))) == 66


def _closed_port() -> int:
    """A port on 127.0.0.1 on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_download_offline_explains_in_one_paragraph(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dest = tmp_path / "new" / "micirp"
    base = f"http://127.0.0.1:{_closed_port()}/dirs"
    assert asc_main(["dirs", "download", "--dest", str(dest), "--base-url", base]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    err = err[err.index("error: "):]  # after the progress bar
    assert err.count("\n") == 1, "one paragraph"
    assert f"{base}/Altec_639.wav failed: [Errno 111] Connection refused" in err and "offline" in err, "URL and network error"
    assert f"go to '{dest}' (none is there yet)" in err, "where the files would go"
    assert "--base-url URL" in err and "asc train base --dir-dir FOLDER" in err, "the manual alternatives"
    assert err.rstrip().endswith("training uses generated responses."), "ends in words, not in a Python name"
    assert not (tmp_path / "new").exists(), "the folders this command created are removed again"


def test_cli_download_from_a_mirror_without_the_files(serve_dir, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert asc_main(["dirs", "download", "--dest", str(tmp_path / "m"), "--base-url", serve_dir(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "does not serve the MicIRP files" in err and "offline" not in err


def _magnitude_db(wave: torch.Tensor, n_fft: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    spectrum = np.abs(np.fft.rfft(wave.numpy(), n_fft))
    return np.fft.rfftfreq(n_fft, 1 / 44_100), 20 * np.log10(spectrum + 1e-12)


def test_generated_dirs_are_repeatable_and_microphone_like() -> None:
    dirs = generated_dirs(n=12, seed=3)
    assert len(dirs) == 12
    assert all(torch.equal(a, b) for a, b in zip(dirs, generated_dirs(n=12, seed=3)))
    assert all(torch.equal(a, b) for a, b in zip(dirs[:4], generated_dirs(n=4, seed=3))), "a prefix does not depend on n"
    assert not torch.equal(dirs[0], generated_dirs(n=1, seed=4)[0])
    assert list(generated_named_dirs(n=3)) == ["generated_00", "generated_01", "generated_02"]
    for wave in dirs:
        assert torch.isfinite(wave).all() and wave.square().sum().item() == pytest.approx(1.0, rel=1e-5)
        assert wave.abs().argmax() < 50, "a microphone response starts at once (minimum phase: energy at the start)"
    freqs, _ = _magnitude_db(dirs[0])
    curves = np.stack([_magnitude_db(w)[1] for w in dirs])
    curves -= np.median(curves[:, (freqs > 500) & (freqs < 3_000)], axis=1, keepdims=True)  # 0 dB = the mid band
    assert np.median(curves[:, (freqs > 15) & (freqs < 25)]) < -6, "the set should roll off at low frequencies"
    assert np.median(curves[:, freqs > 16_000]) < -6, "the set should be band-limited at high frequencies"
    assert curves[:, (freqs > 500) & (freqs < 10_000)].std(axis=0).mean() > 2, "the responses should differ from each other"
    with pytest.raises(ValueError, match="n >= 1"):
        generated_dirs(n=0)


def test_generated_dirs_are_not_the_data_set_devices() -> None:
    freqs, _ = _magnitude_db(torch.zeros(8))
    band = (freqs > 100) & (freqs < 10_000)
    generated = np.stack([_magnitude_db(w)[1][band] for w in generated_dirs()])
    for name in DEVICE_SPECS:
        device = _magnitude_db(torch.from_numpy(device_response(name)))[1][band]
        distance = np.sqrt(np.mean((generated - device) ** 2, axis=1)).min()  # RMS dB difference to the closest one
        assert distance > 0.5, f"a generated response reproduces device {name}'s response ({distance:.2f} dB apart)"


def test_default_dirs_choose_the_source(micirp: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(DIR_DIR_ENV, raising=False)
    monkeypatch.setenv("ASC_CACHE_DIR", str(tmp_path / "cache"))
    dirs, description = default_dirs()
    assert description.startswith("generated") and "not measured" in description
    assert len(dirs) == len(generated_dirs())
    dirs, description = default_dirs(micirp)
    assert len(dirs) == 66 and description.startswith("MicIRP: 66")
    monkeypatch.setenv(DIR_DIR_ENV, str(micirp))
    assert named_dirs()[1].startswith("MicIRP")
    monkeypatch.delenv(DIR_DIR_ENV)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "micirp").symlink_to(micirp, target_is_directory=True)  # a finished download in the cache
    assert default_dirs()[1].startswith("MicIRP")
    other = tmp_path / "other"
    other.mkdir()
    sf.write(str(other / "my_phone.wav"), np.eye(1, 64, 3, dtype=np.float32)[0], 44_100)
    assert default_dirs(other)[1].startswith("folder: 1 impulse responses")
