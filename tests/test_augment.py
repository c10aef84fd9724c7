"""Batch augmentations: DIR convolution (real MicIRP and generated sets), Frequency-MixStyle, frequency masking, time roll."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asc_utils.augment import DIRAugment, FreqMixStyle, FrequencyMask, TimeRoll, freq_mask, generated_dirs, load_dirs
from asc_utils.features import LogMelFrontend

DEVICES_ON = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module", params=["micirp", "generated"])
def dir_set(request) -> list[torch.Tensor]:
    """Both DIR sets: the real MicIRP files (read in place from ../shared) and the generated offline set."""
    if request.param == "micirp":
        return load_dirs(request.getfixturevalue("shared_dir") / "micirp")
    return generated_dirs()


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _waves(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, length, generator=_gen(seed)) * 2 - 1


def test_dir_changes_only_device_a_and_keeps_lengths(dir_set) -> None:
    devices = ["a", "b", "s1", "a", "c", "s4", "s6", "a"]
    waves = _waves(len(devices), 3_000)
    out = DIRAugment(dir_set, p=1.0)(waves, devices, generator=_gen())
    assert out.shape == waves.shape and out.dtype == waves.dtype
    for i, device in enumerate(devices):
        assert torch.equal(out[i], waves[i]) == (device != "a"), f"example {i} (device {device})"


def test_dir_equals_numpy_convolve_on_a_full_clip(dir_set) -> None:
    h = min(dir_set, key=len)  # the shortest response keeps the direct reference affordable (N * L multiply-adds)
    waves = _waves(1, 44_100, seed=1)
    out = DIRAugment([h], p=1.0)(waves, ["a"])
    reference = np.convolve(waves[0, 0].double().numpy(), h.double().numpy())[:44_100]
    np.testing.assert_allclose(out[0, 0].double().numpy(), reference, rtol=0, atol=1e-5)


def test_dir_draws_a_random_response_per_example(dir_set) -> None:
    length = 1_000  # shorter than every response: truncation cuts inside the response
    waves = _waves(12, length, seed=1)
    out = DIRAugment(dir_set, p=1.0)(waves, ["a"] * 12, generator=_gen(2)).double().numpy()
    chosen = set()
    for i in range(12):
        x = waves[i, 0].double().numpy()
        head = [np.abs(np.convolve(x[:64], h[:64].double().numpy())[:64] - out[i, 0, :64]).max() for h in dir_set]
        k = int(np.argmin(head))  # the candidate response, found on the first 64 samples
        reference = np.convolve(x, dir_set[k].double().numpy())[:length]
        np.testing.assert_allclose(out[i, 0], reference, rtol=0, atol=1e-5, err_msg=f"example {i}")
        chosen.add(k)
    assert len(chosen) > 3, "the impulse response should be drawn at random per example"


def test_dir_probability_determinism_and_modes() -> None:
    dirs = generated_dirs(n=4)
    waves = _waves(400, 64)
    aug = DIRAugment(dirs, p=0.5)
    out = aug(waves, ["a"] * 400, generator=_gen(5))
    changed = (out != waves).flatten(1).any(1).float().mean().item()
    assert 0.4 < changed < 0.6, f"p=0.5 changed a fraction {changed:.2f} of the examples"
    assert torch.equal(out, aug(waves, ["a"] * 400, generator=_gen(5))), "same generator, same output"
    assert not torch.equal(out, aug(waves, ["a"] * 400, generator=_gen(6)))
    assert torch.equal(DIRAugment(dirs, p=0.0)(waves, ["a"] * 400), waves)
    assert torch.equal(aug.eval()(waves, ["a"] * 400), waves), "identity in eval() mode"
    half = _waves(3, 64).half()
    assert DIRAugment(dirs, p=1.0)(half, ["a", "b", "a"]).dtype == torch.float16


def test_dir_errors_are_explained() -> None:
    aug = DIRAugment(generated_dirs(n=2), p=1.0)
    with pytest.raises(ValueError, match=r"\[B, 1, N\]"):
        aug(torch.zeros(2, 100), ["a", "a"])
    with pytest.raises(ValueError, match="one device id per example"):
        aug(torch.zeros(2, 1, 100), ["a"])
    with pytest.raises(ValueError, match="at least one impulse response"):
        DIRAugment([], p=0.5)


@pytest.mark.parametrize("device", DEVICES_ON)
def test_dir_buffer_follows_the_module(device: str) -> None:
    aug = DIRAugment(generated_dirs(n=3), p=1.0).to(device)
    assert aug.dirs.device.type == device and "dirs" not in aug.state_dict()
    waves = _waves(4, 5_000).to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    out = aug(waves, ["a", "b", "a", "c"], generator=generator)
    assert out.device.type == device and torch.equal(out[1], waves[1])
    on_cpu_generator = aug(waves, ["a", "b", "a", "c"], generator=_gen(0))  # a CPU generator drives any device
    assert on_cpu_generator.device.type == device
    reference = DIRAugment(generated_dirs(n=3), p=1.0)(waves.cpu(), ["a", "b", "a", "c"], generator=_gen(0))
    torch.testing.assert_close(on_cpu_generator.cpu(), reference, rtol=0, atol=1e-5)


def _stats(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example, per-frequency mean and std over channel and time, as documented: [B, F] each."""
    return x.mean(dim=(1, 3)), (x.var(dim=(1, 3)) + eps).sqrt()


def _log_mels(batch: int = 16, seed: int = 0) -> torch.Tensor:
    """Random 'log-mels' whose examples have clearly different per-frequency means and spreads."""
    g = _gen(seed)
    centre = torch.randn(batch, 1, 20, 1, generator=g) * 3
    spread = torch.rand(batch, 1, 20, 1, generator=g) * 2 + 0.5
    return centre + spread * torch.randn(batch, 1, 20, 30, generator=g)


def test_mixstyle_keeps_shape_and_p0_is_identity() -> None:
    x = _log_mels()
    assert FreqMixStyle(p=1.0)(x, generator=_gen()).shape == x.shape
    assert torch.equal(FreqMixStyle(p=0.0)(x), x)
    assert torch.equal(FreqMixStyle(p=1.0).eval()(x), x)
    applied = [not torch.equal(FreqMixStyle(p=0.4)(x, generator=_gen(s)), x) for s in range(200)]
    assert 0.3 < np.mean(applied) < 0.5, "applied per batch with probability p"


def test_mixstyle_mixes_statistics_as_documented() -> None:
    x = _log_mels().requires_grad_(True)
    mix = FreqMixStyle(p=1.0, alpha=0.3)
    out = mix(x, generator=_gen(3))
    mu, sig = _stats(x.detach(), mix.eps)
    out_mu, out_sig = _stats(out.detach(), 0.0)
    partners, lams = [], []
    for i in range(len(x)):
        best = None
        for j in range(len(x)):  # find lam and the partner j with out stats = lam * own + (1 - lam) * partner's
            diff = mu[i] - mu[j]
            lam = 1.0 if j == i else float((out_mu[i] - mu[j]) @ diff / (diff @ diff))
            residual = max((out_mu[i] - (lam * mu[i] + (1 - lam) * mu[j])).abs().max().item(),
                           (out_sig[i] - (lam * sig[i] + (1 - lam) * sig[j])).abs().max().item())
            if best is None or residual < best[0]:
                best = (residual, j, lam)
        residual, j, lam = best
        assert residual < 1e-4, f"example {i}: output statistics are no mix of its own and another example's"
        assert -1e-6 <= lam <= 1 + 1e-6
        lams.append(lam)
        if abs(1 - lam) > 1e-3:
            partners.append(j)
    assert len(set(partners)) == len(partners), "partners come from a permutation"
    assert min(lams) < 0.5, "Beta(0.3, 0.3) should move some examples far towards their partner"
    out.sum().backward()  # statistics are detached: d out / d x = sig_mix / sig, element-wise
    sig_mix = (out_sig / sig)[:, None, :, None].expand_as(x)
    torch.testing.assert_close(x.grad, sig_mix, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out, mix(x, generator=_gen(3)), msg="same generator, same output")


def test_freq_mask_matches_torchaudio_and_is_deterministic() -> None:
    import torchaudio

    spec = torch.rand(32, 1, 256, 33) + 0.1
    torch.manual_seed(7)
    expected = torchaudio.transforms.FrequencyMasking(48, iid_masks=True)(spec)
    torch.manual_seed(7)
    assert torch.equal(FrequencyMask(48)(spec), expected), "same rule and random draws as torchaudio's iid_masks"
    out = freq_mask(spec, 48, generator=_gen(1))
    assert torch.equal(out, freq_mask(spec, 48, generator=_gen(1)))
    bands = []
    for i in range(len(spec)):
        rows = (out[i, 0] == 0).all(dim=-1).nonzero().flatten()  # masked bins are zero over all frames
        assert torch.equal((out[i, 0] == 0).any(dim=-1), (out[i, 0] == 0).all(dim=-1)), "whole frequency rows are masked"
        if rows.numel():
            assert rows.numel() < 48 and rows[-1] - rows[0] + 1 == rows.numel(), "one contiguous band of < 48 bins"
        bands.append(tuple(rows.tolist()))
    assert len(set(bands)) > 20, "masks are drawn independently per example"
    assert torch.equal(FrequencyMask(48).eval()(spec), spec)


def test_frontend_masking_is_repeatable_under_manual_seed() -> None:
    frontend = LogMelFrontend().train()
    wave = _waves(4, 44_100)[:, 0]
    torch.manual_seed(0)
    first = frontend(wave)
    torch.manual_seed(0)
    assert torch.equal(first, frontend(wave))
    assert not torch.equal(first, frontend.eval()(wave)), "training mode masks some mel bins"


def test_time_roll_shifts_each_example_within_range() -> None:
    waves = torch.arange(6 * 50, dtype=torch.float32).view(6, 1, 50)
    out = TimeRoll(5)(waves, generator=_gen(0))
    shifts = []
    for i in range(6):
        matches = [s for s in range(-5, 6) if torch.equal(out[i], torch.roll(waves[i], s, dims=-1))]
        assert len(matches) == 1, f"example {i} is no circular shift within +-5 samples"
        shifts += matches
    assert len(set(shifts)) > 1, "every example draws its own shift"
    assert torch.equal(out, TimeRoll(5)(waves, generator=_gen(0)))
    assert torch.equal(TimeRoll(0)(waves), waves) and torch.equal(TimeRoll(5).eval()(waves), waves)
