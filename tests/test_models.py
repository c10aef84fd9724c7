"""The networks: names, shapes, parameter counts, MACs and exactness against the published SNTL-NTU logits."""

from __future__ import annotations

import json

import pytest
import torch
from torchinfo import summary

from asc_utils.audio import read_wav
from asc_utils.cp_mobile import make_divisible
from asc_utils.features import LogMelFrontend
from asc_utils.models import MODEL_INPUT_SIZES, MODEL_NAMES, SNTLNet, build_model, channel_shuffle
from asc_utils.pretrained import load_published


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, expected", [("sntl_task1_1", 58_171), ("sntl_task1_2", 58_605), ("cp_mobile_baseline", 61_148)])
def test_parameter_counts(name, expected):
    assert n_params(build_model(name)) == expected


def test_default_model_is_task1_2():
    model = build_model()
    assert isinstance(model, SNTLNet) and model.variant == "task1_2"


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        build_model("sntl_task9")
    for name in MODEL_NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("batch", [1, 7])
def test_output_shape_and_dtype(name, batch):
    torch.manual_seed(0)
    model = build_model(name).eval()
    _, c, f, t = MODEL_INPUT_SIZES[name]
    with torch.no_grad():
        logits = model(torch.randn(batch, c, f, t))
    assert logits.shape == (batch, 10)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["sntl_task1_1", "sntl_task1_2"])
def test_torchinfo_macs(name):
    model = build_model(name)
    assert summary(model, input_size=(1, 1, 256, 33), verbose=0, device="cpu").total_mult_adds == 10_902_300


def test_unused_task1_2_modules_get_no_gradient():
    torch.manual_seed(0)
    model = build_model("sntl_task1_2").train()
    model(torch.randn(2, 1, 256, 33)).sum().backward()
    unused = {n for n, p in model.named_parameters() if p.grad is None}
    assert unused == {"unused_norm.weight", "unused_norm.bias", "unused_linear.weight", "unused_linear.bias"}
    assert n_params(model.unused_norm) + n_params(model.unused_linear) == 434


def test_cp_mobile_channel_rounding():
    assert [make_divisible(32 * 1.8**s) for s in range(3)] == [32, 56, 104]
    assert [make_divisible(c * 2.1) for c in (32, 56)] == [64, 120]


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(12.0).view(1, 12, 1, 1)
    assert channel_shuffle(x, 6).flatten().tolist() == [0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11]


def test_eval_is_deterministic_and_train_uses_dropout():
    torch.manual_seed(0)
    model = build_model("sntl_task1_2")
    x = torch.randn(4, 1, 256, 33)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))


@pytest.fixture(scope="module")
def dummy_logmel(shared_dir):
    wave, sr = read_wav(shared_dir / "reference" / "sntl" / "dummy.wav")
    assert sr == 44_100 and wave.shape == (1, 44_100)
    with torch.no_grad():
        return LogMelFrontend().eval()(torch.from_numpy(wave))


@pytest.mark.parametrize("variant", ["task1_1", "task1_2"])
def test_published_weights_reproduce_expected_logits(shared_dir, dummy_logmel, variant, record_property):
    reference = shared_dir / "reference" / "sntl"
    expected = json.loads((reference / "expected_logits.json").read_text())["weights"][variant]
    model = load_published(variant, path=reference / expected["file"])
    assert n_params(model) == expected["params"]
    with torch.no_grad():
        logits = model(dummy_logmel)[0]
    diff = (logits - torch.tensor(expected["logits_dummy_wav"])).abs().max().item()
    record_property(f"max_abs_logit_diff_{variant}", diff)
    print(f"\n{variant}: max |logit - expected| = {diff:.2e} (fp32)")
    assert diff < 1e-3


@pytest.mark.parametrize("variant", ["task1_1", "task1_2"])
def test_fp16_inference_gives_the_same_class(shared_dir, dummy_logmel, variant):
    model = load_published(variant, path=shared_dir / "reference" / "sntl" / f"sntl_{variant}_state_dict.pt")
    with torch.no_grad():
        fp32 = model(dummy_logmel)
        fp16 = model.half()(dummy_logmel.half())
    assert fp16.dtype == torch.float16
    assert fp16.argmax(dim=1).item() == fp32.argmax(dim=1).item()
