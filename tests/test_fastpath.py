"""The fast CPU paths compute what the reference paths compute: torchaudio's log-mel, the eager network's logits."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torchaudio

from asc_utils.audio import read_wav
from asc_utils.features import FrontendConfig, LogMelFrontend
from asc_utils.models import ConvBN, build_model
from asc_utils.multidevice import MultiDeviceModel
from asc_utils.pretrained import load_published
from asc_utils.speed import FastMelSpectrogram, FastSNTL, fast_frontend, for_inference, for_training, plain_layout
from asc_utils.speed.training import RepeatedInputConv2d


def _log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x + 1e-5)


def _torchaudio_mel(**settings) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(**settings)


@pytest.fixture(scope="module")
def dummy_wave(shared_dir) -> torch.Tensor:
    wave, sr = read_wav(shared_dir / "reference" / "sntl" / "dummy.wav")
    assert sr == 44_100
    return torch.from_numpy(wave)  # [1, 44100]


def test_fast_mel_matches_torchaudio_on_random_audio():
    torch.manual_seed(0)
    waves = torch.randn(11, 44_100) * torch.logspace(-4, 0, 11)[:, None]  # quiet to loud; 11 clips = chunks of 4 + a rest of 3
    c = FrontendConfig()
    reference = _torchaudio_mel(sample_rate=c.sample_rate, n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length,
                                n_mels=c.n_mels)(waves)
    fast = FastMelSpectrogram()(waves)
    assert fast.shape == reference.shape == (11, 256, 33)
    diff = (_log(fast) - _log(reference)).abs().max().item()
    print(f"\nrandom audio: max |log-mel difference| = {diff:.2e}")
    assert diff < 1e-4


def test_fast_mel_matches_torchaudio_on_real_audio(dummy_wave):
    frontend, reference = fast_frontend(LogMelFrontend()).eval(), LogMelFrontend().eval()
    with torch.no_grad():
        diff = (frontend(dummy_wave) - reference(dummy_wave)).abs().max().item()
    print(f"\ndummy.wav: max |log-mel difference| = {diff:.2e}")
    assert diff < 1e-4


@pytest.mark.parametrize("settings", [
    {"n_fft": 8912, "hop_length": 1364, "n_mels": 256, "f_min": 1.0},  # the published training script's quirk
    {"n_fft": 2048, "win_length": 1024, "hop_length": 512, "n_mels": 128, "f_max": 16_000.0},  # window shorter than n_fft
    {"n_fft": 512, "hop_length": 160, "n_mels": 256},  # more mels than bins: some filters are empty
])
@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
def test_fast_mel_matches_torchaudio_for_other_settings(settings):
    torch.manual_seed(1)
    waves = torch.randn(3, 22_050)
    reference = _torchaudio_mel(sample_rate=44_100, **settings)(waves)
    fast = FastMelSpectrogram(sample_rate=44_100, **settings)(waves)
    assert fast.shape == reference.shape
    assert (_log(fast) - _log(reference)).abs().max().item() < 1e-4


def test_frontend_uses_fast_path_on_cpu_and_still_masks_in_training():
    torch.manual_seed(2)
    waves = torch.randn(6, 1, 44_100)
    frontend = fast_frontend(LogMelFrontend())
    assert type(frontend).mel_power is not LogMelFrontend.mel_power and frontend.config == LogMelFrontend().config
    masked = frontend.train()(waves)
    floor = torch.log(torch.tensor(1e-5))
    assert masked.shape == (6, 1, 256, 33)
    assert (masked == floor).all(dim=-1).any(), "frequency masking sets whole bands to log(1e-5) in train() mode"
    assert not (frontend.eval()(waves) == floor).all(dim=-1).any()


def test_frontend_stays_differentiable_for_inputs_that_need_a_gradient():
    wave = (torch.randn(2, 44_100) * 0.1).requires_grad_()
    fast_frontend().eval()(wave).sum().backward()  # falls back to torchaudio: the fast path computes in place
    assert wave.grad is not None and torch.isfinite(wave.grad).all()


def test_fast_mel_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        FastMelSpectrogram()(torch.zeros(44_100))
    with pytest.raises(ValueError, match="too short"):
        FastMelSpectrogram()(torch.zeros(2, 1000))


def _randomise_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters (a freshly built network has mean 0, var 1)."""
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            for tensor, low, high in ((module.running_mean, -1, 1), (module.running_var, 0.3, 3), (module.weight, 0.5, 1.5),
                                      (module.bias, -0.5, 0.5)):
                tensor.data.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    for p in (model.mix_avg, model.mix_max, model.mix_head, model.mix_pools):
        p.data.fill_(float(torch.rand(1, generator=generator)))
    return model.eval()


@pytest.mark.parametrize("name", ["sntl_task1_1", "sntl_task1_2"])
@pytest.mark.parametrize("batch", [1, 7, 37])  # 37 > chunk: processed in chunks of 16
def test_fast_network_matches_eager_network(name, batch):
    torch.manual_seed(4)
    model = _randomise_batchnorm(build_model(name))
    mel = torch.randn(batch, 1, 256, 33) * 3 - 4
    mel[:, :, ::2] += torch.randn(batch, 1, 1, 1) * 4  # examples that differ, so that their logits differ too
    with torch.no_grad():  # BatchNorm statistics measured on the input: every layer passes on its variation
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None
        model.train()(mel)
        model.eval()
    fast = for_inference(model)
    assert isinstance(fast, FastSNTL)
    with torch.no_grad():
        reference, logits = model(mel), fast(mel)
    if batch > 1:
        assert reference.std(dim=0).max().item() > 1e-3, "the test network must respond to its input"
    assert logits.shape == (batch, 10) and logits.dtype == torch.float32
    assert (logits - reference).abs().max().item() < 1e-4
    assert torch.equal(logits.argmax(1), reference.argmax(1))


@pytest.mark.parametrize("variant", ["task1_1", "task1_2"])
def test_fast_path_reproduces_published_logits(shared_dir, dummy_wave, variant, record_property):
    reference = shared_dir / "reference" / "sntl"
    expected = json.loads((reference / "expected_logits.json").read_text())["weights"][variant]
    model = load_published(variant, path=reference / expected["file"])
    logits = for_inference(model)(fast_frontend().eval()(dummy_wave))[0]
    diff = (logits - torch.tensor(expected["logits_dummy_wav"])).abs().max().item()
    record_property(f"fast_max_abs_logit_diff_{variant}", diff)
    print(f"\n{variant} fast path: max |logit - expected| = {diff:.2e}")
    assert diff < 1e-3


def test_fast_model_is_inference_only_and_keeps_weights_of_fp16_models():
    model = _randomise_batchnorm(build_model("sntl_task1_2"))
    fast = for_inference(model.half())
    mel = torch.randn(3, 1, 256, 33).half().float()
    with torch.no_grad():
        expected = model.float()(mel)  # the fp16-rounded weights, computed in fp32
    assert (fast(mel.half()) - expected).abs().max().item() < 1e-4
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()
    assert for_inference(fast) is fast


def test_fast_multidevice_model_routes_like_the_original():
    general, special = (_randomise_batchnorm(build_model("sntl_task1_2")) for _ in range(2))
    with torch.no_grad():
        special.classifier.bias.add_(1.0)
    model = MultiDeviceModel(general, {"a": special}).eval()
    fast = for_inference(model)
    assert isinstance(fast, MultiDeviceModel) and fast.devices == ("a",)
    mel, devices = torch.randn(5, 1, 256, 33), ["a", "s4", "a", "b", "s1"]
    with torch.no_grad():
        assert (fast(mel, devices) - model(mel, devices)).abs().max().item() < 1e-4


def test_other_networks_get_an_eval_copy():
    model = build_model("cp_mobile_baseline").train()
    copy = for_inference(model)
    assert copy is not model and not copy.training and model.training


def test_training_layout_changes_speed_only():
    torch.manual_seed(5)
    model = build_model("sntl_task1_2").train()
    reference = copy.deepcopy(model)
    assert for_training(model) is model
    assert model.stem.conv.weight.is_contiguous() and model.expand.conv.weight.is_contiguous()
    assert model.time_conv.conv.weight.is_contiguous(memory_format=torch.channels_last)
    mel, labels = torch.randn(6, 1, 256, 33), torch.arange(6)
    losses = []
    for net in (reference, model):
        torch.manual_seed(6)  # the same dropout masks
        loss = torch.nn.functional.cross_entropy(net(mel), labels)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for (name, p), q in zip(reference.named_parameters(), model.parameters()):
        if p.grad is not None:
            assert (p.grad - q.grad).abs().max() <= 1e-4 * p.grad.abs().max() + 1e-6, name
    assert isinstance(model.freq_conv.conv, RepeatedInputConv2d)
    assert plain_layout(model) is model
    assert {type(m).__name__ for m in model.modules()} == {type(m).__name__ for m in reference.modules()}
    assert model.time_conv.conv.weight.is_contiguous()


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("c_in, c_out", [(36, 72), (4, 12)])
def test_repeated_input_conv_matches_the_grouped_conv(c_in, c_out, memory_format):
    """The repeated-channel depthwise conv (training layout, CPU) gives the grouped conv's outputs and gradients."""
    torch.manual_seed(0)
    layer = ConvBN(c_in, c_out, (5, 1), padding=(2, 0), groups=c_in).train().to(memory_format=torch.channels_last)
    layer.conv.__class__ = RepeatedInputConv2d  # what asc_utils.speed.for_training does to such convolutions
    x = torch.randn(3, c_in, 16, 8).contiguous(memory_format=memory_format).requires_grad_()
    g = torch.randn(3, c_out, 16, 8)
    y = layer(x)
    (y * g).sum().backward()
    shortcut = (y.detach(), x.grad.clone(), layer.conv.weight.grad.clone())
    x.grad, layer.conv.weight.grad = None, None
    layer.conv.__class__ = torch.nn.Conv2d
    plain = layer(x)  # the grouped convolution itself
    (plain * g).sum().backward()
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(shortcut[0], plain.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(shortcut[1], x.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(shortcut[2], layer.conv.weight.grad, rtol=1e-4, atol=1e-4)
