"""The DCASE2025 inference-package API on generated wav files: published weights, our run folders and files, bad input."""

from __future__ import annotations

import copy
import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from asc_utils import inference, runs
from asc_utils.audio import read_wav, write_wav
from asc_utils.features import FrontendConfig, LogMelFrontend
from asc_utils.labels import CLASSES
from asc_utils.models import build_model
from asc_utils.multidevice import MultiDeviceModel


@pytest.fixture(scope="module")
def wav_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four short generated clips: 1 s at 44.1 kHz, 0.5 s (padded), 1 s at 22.05 kHz (resampled), 1 s stereo."""
    folder = tmp_path_factory.mktemp("wavs")
    rng = np.random.default_rng(0)
    t = np.arange(44_100) / 44_100
    paths = []
    for i, (n, sr) in enumerate([(44_100, 44_100), (22_050, 44_100), (22_050, 22_050), (44_100, 44_100)]):
        wave = 0.1 * np.sin(2 * np.pi * (200 + 300 * i) * t[:n]) + 0.02 * rng.standard_normal(n)
        paths.append(folder / f"clip{i}.wav")
        write_wav(paths[-1], wave, sr)
    import soundfile as sf  # one stereo file: load_inputs averages the channels

    sf.write(paths[3], np.stack([rng.standard_normal(44_100), rng.standard_normal(44_100)], 1) * 0.05, 44_100, subtype="PCM_24")
    return paths


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_model()
    for p in net.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    return net.eval()


def _reference_logits(net: torch.nn.Module, path: Path, half_arithmetic: bool = False) -> torch.Tensor:
    """The path written out by hand: fp32 log-mel of the 1 s clip, then the fp16-rounded net (in fp16 or fp32 arithmetic)."""
    wave, sr = read_wav(path)
    assert sr == 44_100
    x = torch.from_numpy(wave.mean(0))[None, :44_100]
    x = torch.nn.functional.pad(x, (0, 44_100 - x.shape[1]))
    rounded = copy.deepcopy(net).half()
    with torch.no_grad():
        mel = LogMelFrontend().eval()(x)
        return (rounded(mel.half()) if half_arithmetic else rounded.float()(mel))[0].float()


def test_published_weights_match_the_expected_logits(shared_dir: Path) -> None:
    ref = shared_dir / "reference" / "sntl"
    expected = json.loads((ref / "expected_logits.json").read_text())["weights"]["task1_2"]["logits_dummy_wav"]
    logits, classes = inference.predict([ref / "dummy.wav"], ["a"], ref / "sntl_task1_2_state_dict.pt", use_cuda=False, progress=False)
    assert classes == list(CLASSES) and len(logits) == 1 and logits[0].shape == (10,)
    torch.testing.assert_close(logits[0], torch.tensor(expected), atol=0.05, rtol=0)  # fp16 network vs the fp32 reference


def test_published_model_is_shared_by_every_device(shared_dir: Path, wav_files: list[Path]) -> None:
    weights = shared_dir / "reference" / "sntl" / "sntl_task1_1_state_dict.pt"
    model = inference.load_model(weights)
    assert model.devices == () and model.model_name == "sntl_task1_1"
    assert next(model.parameters()).dtype == torch.float16
    assert inference.get_model_for_device(model, "a") is inference.get_model_for_device(model, "s10")
    logits, _ = inference.predict([wav_files[0]] * 3, ["a", "s4", "s10"], weights, use_cuda=False, progress=False)
    # same network for every device; the batch position may change the float rounding (vectorised tails), ~1e-6
    torch.testing.assert_close(logits[0], logits[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[0], logits[2], rtol=0, atol=1e-5)


def test_default_model_is_the_published_task1_2(shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """model_file_path=None takes the published task1_2 weights from the download cache (pre-filled here: no network)."""
    import shutil

    from asc_utils.pretrained import published_weights_path

    monkeypatch.setenv("ASC_CACHE_DIR", str(tmp_path))
    cached = tmp_path / "weights" / "sntl_task1_2_model_state_dict.pt"
    cached.parent.mkdir()
    shutil.copyfile(shared_dir / "reference" / "sntl" / "sntl_task1_2_state_dict.pt", cached)
    assert published_weights_path("task1_2", progress=False) == cached  # found in the cache, sha256 accepted
    model = inference.load_model()
    reference = inference.load_model(cached)
    assert model.model_name == "sntl_task1_2" and model.devices == ()
    for name, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], value)


def test_load_inputs_gives_one_second_mono_at_the_model_rate(wav_files: list[Path]) -> None:
    model = MultiDeviceModel(build_model(), frontend_config=FrontendConfig())
    waves = inference.load_inputs(wav_files, ["a", "b", "c", "s1"], model)
    assert [tuple(w.shape) for w in waves] == [(44_100,)] * 4 and all(w.dtype == torch.float32 for w in waves)
    assert waves[1][22_050:].abs().max() == 0  # the 0.5 s clip is zero-padded


def test_multidevice_run_routes_each_file_to_its_device(tmp_path: Path, wav_files: list[Path]) -> None:
    run = tmp_path / "run"
    nets = {"general": _net(0), "a": _net(1), "b": _net(2)}
    MultiDeviceModel(nets["general"], {"a": nets["a"], "b": nets["b"]}).save(run / runs.MULTIDEVICE)
    devices = ["b", "a", "s5", "b"]
    paths = [wav_files[0], wav_files[0], wav_files[0], wav_files[3]]
    logits, _ = inference.predict(paths, devices, run, use_cuda=False, batch_size=3, progress=False)
    for path, device, got in zip(paths, devices, logits):  # on the CPU: fp16 weights in fp32 arithmetic
        net = nets.get(device, nets["general"])
        torch.testing.assert_close(got, _reference_logits(net, path), atol=1e-4, rtol=0)
        torch.testing.assert_close(got, _reference_logits(net, path, half_arithmetic=True), atol=0.05, rtol=0)
    assert not torch.allclose(logits[0], logits[1], atol=1e-2)  # same clip, different device -> different network
    model = inference.load_model(run / runs.MULTIDEVICE)
    assert model.devices == ("a", "b") and inference.get_model_for_device(model, "s5") is model.general


def test_base_run_folder_model_and_checkpoint(tmp_path: Path, wav_files: list[Path]) -> None:
    """A real (one-step) `fit` run: its folder, model.pt and checkpoint.pt all load as the same general model."""
    from asc_utils.train import TrainConfig, fit

    rng = np.random.default_rng(0)
    arrays = types.SimpleNamespace(waves=(0.1 * rng.standard_normal((4, 44_100))).astype(np.float32), labels=np.arange(4),
                                   devices=["a", "b", "a", "c"], filenames=[f"f{i}.wav" for i in range(4)])
    fit(build_model(), arrays, TrainConfig(epochs=1, batch_size=4, dir_p=0.0, device="cpu"), tmp_path / "base", progress=False)
    outputs = [inference.predict(wav_files[:2], ["a", "s9"], source, use_cuda=False, progress=False)[0]
               for source in (tmp_path / "base", tmp_path / "base" / "model.pt", tmp_path / "base" / "checkpoint.pt")]
    for other in outputs[1:]:
        torch.testing.assert_close(torch.stack(other), torch.stack(outputs[0]), rtol=0, atol=0)
    (tmp_path / "base" / "model.pt").unlink()
    with pytest.raises(inference.ModelFileError, match="has not finished"):
        inference.load_model(tmp_path / "base")


def test_bad_input_is_explained(tmp_path: Path, wav_files: list[Path]) -> None:
    model_file = tmp_path / "model.pt"
    torch.save(build_model().state_dict(), model_file)
    with pytest.raises(ValueError, match="2 file paths but 1 device ids"):
        inference.predict(wav_files[:2], ["a"], model_file, progress=False)
    with pytest.raises(FileNotFoundError, match="1 of 2 audio files do not exist.*nowhere.wav"):
        inference.predict([wav_files[0], tmp_path / "nowhere.wav"], ["a", "b"], model_file, progress=False)
    with pytest.raises(TypeError, match="lists"):
        inference.predict(str(wav_files[0]), ["a"], model_file, progress=False)
    with pytest.raises(FileNotFoundError, match="Model file not found"):
        inference.load_model(tmp_path / "missing.pt")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(inference.ModelFileError, match="without multidevice.pt or model.pt"):
        inference.load_model(tmp_path / "empty_folder")
    with pytest.raises(inference.ModelFileError, match="Could not read"):
        inference.load_model(wav_files[0])
    torch.save({"epoch": 3}, tmp_path / "other.pt")
    with pytest.raises(inference.ModelFileError, match="not a model file"):
        inference.load_model(tmp_path / "other.pt")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(inference.ModelFileError, match="fits none of the networks"):
        inference.load_model(tmp_path / "foreign.pt")


def test_device_ids_are_case_insensitive_and_unknown_ids_warn_once(tmp_path: Path, wav_files: list[Path]) -> None:
    import warnings

    from asc_utils.multidevice import UnknownDeviceWarning

    run = tmp_path / "run"
    MultiDeviceModel(_net(0), {"a": _net(1), "b": _net(2)}).save(run / runs.MULTIDEVICE)
    paths = [wav_files[0]] * 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownDeviceWarning)  # 'A', 'B' and the unseen 's9' are valid ids
        upper, _ = inference.predict(paths, ["A", "B", "s9", "S9"], run, use_cuda=False, batch_size=2, progress=False)
        lower, _ = inference.predict(paths, ["a", "b", "s9", "s9"], run, use_cuda=False, batch_size=2, progress=False)
        model = inference.load_model(run)
        assert inference.get_model_for_device(model, "A") is model.device_models["a"]
    torch.testing.assert_close(torch.stack(upper), torch.stack(lower), rtol=0, atol=0)
    assert not torch.allclose(upper[0], upper[2], atol=1e-2), "'A' must use device a's network, not the general model"
    with pytest.warns(UnknownDeviceWarning) as record:  # batch_size=1: four batches, still one warning
        unknown, _ = inference.predict(paths, ["xyz", "", "a", "xyz"], run, use_cuda=False, batch_size=1, progress=False)
    assert len(record) == 1 and "['xyz', '']" in str(record[0].message) and "3 of 4 clips" in str(record[0].message)
    torch.testing.assert_close(unknown[0], lower[2], atol=1e-5, rtol=0)  # unknown -> the general model, like 's9'
    with pytest.warns(UnknownDeviceWarning, match="xyz"):
        assert inference.get_model_for_device(model, "xyz") is model.general


def test_prefetching_gives_the_same_logits_in_order_and_the_same_errors(tmp_path: Path, wav_files: list[Path]) -> None:
    """Decoding the next batch in the background (fast default) changes neither the logits, their order, nor the errors."""
    model = MultiDeviceModel(_net(3), {"b": _net(4)}).half().eval()
    files, ids = wav_files * 3, ["a", "b", "c", "s4"] * 3  # 12 files in batches of 5: the last batch is short
    plain = inference.predict_files(model, files, ids, use_cuda=False, batch_size=5, progress=False, prefetch=False)
    ahead = inference.predict_files(model, files, ids, use_cuda=False, batch_size=5, progress=False, prefetch=True)
    assert torch.equal(plain, ahead) and plain.shape == (12, len(CLASSES))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav")
    for prefetch in (False, True):
        with pytest.raises(Exception, match="broken.wav"):
            inference.predict_files(model, [*files[:6], broken, files[0]], [*ids[:6], "a", "a"], use_cuda=False,
                                    batch_size=5, progress=False, prefetch=prefetch)
