"""The notebook explorers: built live (ipywidgets) and static, and a changed control redraws caption, figure and sound."""

from __future__ import annotations

import inspect
import io
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from asc_utils import widgets as W
from asc_utils.data import load_clip, load_meta
from asc_utils.dirs import generated_named_dirs
from asc_utils.evaluate import confusion_matrices
from asc_utils.labels import CLASSES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _decode(wav: bytes) -> np.ndarray:
    data, sr = sf.read(io.BytesIO(wav), dtype="float32")
    assert sr == 44100
    return data


@pytest.fixture
def fake_kernel(monkeypatch: pytest.MonkeyPatch):
    """Pretend to run inside an IPython kernel (get_ipython() returns a shell with a kernel)."""
    import IPython

    monkeypatch.delenv(W.WIDGETS_ENV, raising=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(kernel=object()))


def test_live_only_for_a_kernel_started_by_a_jupyter_server(fake_kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert not W.widgets_live()  # papermill / nbconvert: a kernel, but no Jupyter server
    monkeypatch.setenv("JPY_SESSION_NAME", "/notebooks/05_baseline_training.ipynb")
    assert W.widgets_live()
    monkeypatch.setenv(W.WIDGETS_ENV, "static")
    assert not W.widgets_live()


def test_no_kernel_means_static_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(W.WIDGETS_ENV, raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", "x.ipynb")
    assert not W.widgets_live()  # pytest runs outside any kernel
    monkeypatch.setenv(W.WIDGETS_ENV, "LIVE")
    assert W.widgets_live()
    monkeypatch.setenv(W.WIDGETS_ENV, "sometimes")
    with pytest.raises(ValueError, match="'live' or 'static'"):
        W.widgets_live()


@pytest.fixture(scope="module")
def confusions() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 600)
    preds = np.where(rng.random(600) < 0.6, labels, rng.integers(0, 10, 600))
    devices = rng.choice(["a", "b", "s4"], 600)
    return confusion_matrices(labels, preds, devices)


def test_confusion_explorer_redraws_for_another_device(confusions) -> None:
    ex = W.confusion_explorer(confusions, static=False)
    assert list(ex.controls["device"].options) == ["a", "b", "s4", "all"]
    assert bytes(ex.image.value).startswith(PNG_MAGIC)
    counts = confusions["s4"].to_numpy()
    before = ex.image.value
    ex.controls["device"].value = "s4"
    assert ex.image.value != before
    assert f"device s4 (unseen): {100 * np.trace(counts) / counts.sum():.1f} % of {counts.sum()} clips" in ex.caption.value
    before = ex.image.value
    ex.controls["numbers"].value = "percent"
    assert ex.image.value != before
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle  # PNG for an HTML export
    assert "JupyterLab" in repr(ex)


def test_compare_explorer_shows_each_run(confusions) -> None:
    better = {d: c + np.diag(np.full(len(CLASSES), 5)) for d, c in confusions.items()}
    ex = W.compare_confusion_explorer({"general": confusions, "device-specific": better}, static=False)
    acc = {name: 100 * np.trace(runs["a"].to_numpy()) / runs["a"].to_numpy().sum() for name, runs in
           (("general", confusions), ("device-specific", better))}
    assert f"general: {acc['general']:.1f} %, device-specific: {acc['device-specific']:.1f} %" in ex.caption.value
    ex.controls["device"].value = "b"
    assert "device b (real)" in ex.caption.value


def test_confusion_explorer_static_view_and_empty_input(confusions) -> None:
    view = W.confusion_explorer(confusions, static=True)
    assert isinstance(view, W.StaticView)
    assert "static view" in view.note and "device a" in view.note and "\n" not in view.note
    kinds = [set(b) for b in view.outputs()]
    assert {"text/markdown", "text/plain"} <= kinds[0] and "image/png" in kinds[1]
    with pytest.raises(ValueError, match="no confusion matrices"):
        W.confusion_explorer({}, static=False)


def test_clip_explorer_follows_scene_and_device(tiny_data: Path) -> None:
    ex = W.clip_explorer(tiny_data, static=False)
    first_sound = ex.players["clip"].value
    path = tiny_data / ex.controls["clip"].value
    np.testing.assert_allclose(_decode(first_sound), np.clip(load_clip(path), -1, 1), atol=1 / 2**14)
    ex.controls["device"].value = "s4"
    assert ex.controls["clip"].value.endswith("-s4.wav")
    assert "device s4" in ex.caption.value and ex.players["clip"].value != first_sound
    image = ex.image.value
    ex.controls["scene"].value = "park"
    assert ex.controls["clip"].value.startswith("audio/park-") and "park" in ex.caption.value
    assert ex.image.value != image


def test_clip_explorer_reports_an_unreadable_clip_in_the_caption(tiny_data: Path) -> None:
    meta = load_meta(tiny_data)
    broken = meta.iloc[[0]].assign(filename="audio/airport-nowhere-1-1-0-zz.wav", device="zz")
    ex = W.clip_explorer(tiny_data, meta=pd.concat([meta, broken]), static=False)
    ex.controls["device"].value = "zz"
    assert "Could not draw" in ex.caption.value and "airport-nowhere-1-1-0-zz.wav" in ex.caption.value


def test_clip_explorer_static(tiny_data: Path) -> None:
    view = W.clip_explorer(tiny_data, static=True)
    assert view.frame.png.startswith(PNG_MAGIC) and "clip" in view.frame.sounds
    assert any("text/html" in b and "<audio" in b["text/html"] for b in view.outputs())


def test_dir_explorer_plays_the_convolved_clip(tiny_data: Path) -> None:
    dirs = generated_named_dirs(n=3)
    meta = load_meta(tiny_data)
    clip = load_clip(tiny_data / meta[meta["device"] == "a"]["filename"].iloc[0])
    ex = W.dir_explorer(clip, dirs, static=False)
    original = ex.players["before"].value
    name = list(dirs)[2]
    ex.controls["dir"].value = name
    assert name in ex.caption.value and ex.players["before"].value == original
    expected = np.convolve(clip, dirs[name].numpy())[: clip.size]  # full convolution, first N samples (DIRAugment)
    np.testing.assert_allclose(_decode(ex.players["after"].value), np.clip(expected, -1, 1), atol=1 / 2**14)
    assert W.dir_explorer(torch.from_numpy(clip), dirs, static=True).frame.caption.startswith("DIR generated_00")
    with pytest.raises(ValueError, match="at least one impulse response"):
        W.dir_explorer(clip, {}, static=False)


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list:
    """The figures the frames render (figure_png is wrapped to keep each figure)."""
    figures = []
    original = W.figure_png

    def keep(fig, dpi: int = W.DPI) -> bytes:
        figures.append(fig)
        return original(fig, dpi)

    monkeypatch.setattr(W, "figure_png", keep)
    return figures


def _noise_clip(tmp_path: Path) -> Path:
    path = tmp_path / "airport-lisbon-1-1-0-a.wav"
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal(44_100), 44_100, subtype="PCM_16")
    return path


def test_clip_frame_draws_a_labelled_logmel_with_a_colour_bar(drawn: list, tmp_path: Path) -> None:
    W.clip_frame(_noise_clip(tmp_path), "noise")
    (fig,) = drawn
    wave_ax, mel_ax = fig.axes[:2]
    assert len(mel_ax.images) == 1 and mel_ax.images[0].get_array().shape == (256, 33)
    assert (mel_ax.get_xlabel(), mel_ax.get_ylabel()) == ("time (s)", "mel band") and wave_ax.get_xlabel() == "time (s)"
    assert [ax.get_ylabel() for ax in fig.axes[2:]] == ["log mel power"]


def test_dir_frame_compares_before_and_after_on_one_colour_scale(drawn: list) -> None:
    clip = 0.1 * np.random.default_rng(1).standard_normal(44_100).astype(np.float32)
    averager = torch.tensor([0.5, 0.5])  # a low-pass: the top mel bands of the "after" image get darker
    frame = W.dir_frame("averager", averager, clip)
    assert frame.caption.startswith("DIR averager: 2 taps")
    (fig,) = drawn
    _, mag_ax, before_ax, after_ax = fig.axes[:4]
    assert mag_ax.get_xscale() == "log" and mag_ax.get_ylabel() == "magnitude (dB re. peak)" and mag_ax.get_ylim() == (-60, 3)
    line = mag_ax.get_lines()[0]
    cos = np.abs(np.cos(np.pi * line.get_xdata() / 44_100))
    np.testing.assert_allclose(line.get_ydata()[:-1], 20 * np.log10(cos[:-1]), atol=1e-9)  # peak 1 at 0 Hz: re. peak = re. unit
    before, after = before_ax.images[0], after_ax.images[0]
    assert before.get_clim() == after.get_clim()
    assert before.get_clim() == pytest.approx(W.shared_color_limits(before.get_array(), after.get_array()))
    change = after.get_array().mean(axis=1) - before.get_array().mean(axis=1)  # per mel band, natural log of power
    assert abs(change[:40]).max() < 0.1 and change[-40:].mean() < -1.5  # low bands kept, the top ones cut (about -2.5)
    assert all((ax.get_xlabel(), ax.get_ylabel()) == ("time (s)", "mel band") for ax in (before_ax, after_ax))


def test_no_frame_or_explorer_changes_global_matplotlib_state(tiny_data: Path, confusions, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib
    import seaborn as sns

    def refuse(*args, **kwargs):
        raise AssertionError("a widget changed the global matplotlib style; the notebooks set it once")

    for name in ("set_theme", "set", "set_style", "set_context", "set_palette", "reset_defaults", "reset_orig"):
        monkeypatch.setattr(sns, name, refuse)
    monkeypatch.setattr(matplotlib.style, "use", refuse)
    clip = load_clip(_noise_clip(tmp_path))
    dirs = {"averager": torch.tensor([0.5, 0.5]), "impulse": torch.tensor([1.0])}
    calls = {
        "clip_frame": lambda: W.clip_frame(_noise_clip(tmp_path), "noise"),
        "clip_explorer": lambda: W.clip_explorer(tiny_data, static=False).controls["device"].set_trait("value", "s4"),
        "dir_frame": lambda: W.dir_frame("averager", dirs["averager"], clip),
        "dir_explorer": lambda: W.dir_explorer(clip, dirs, static=False).controls["dir"].set_trait("value", "impulse"),
        "confusion_frame": lambda: W.confusion_frame({"run": confusions}, "b"),
        "confusion_explorer": lambda: W.confusion_explorer(confusions, static=True),
        "compare_confusion_explorer": lambda: W.compare_confusion_explorer({"x": confusions, "y": confusions}, static=False),
    }
    drawing = {name for name, f in inspect.getmembers(W, inspect.isfunction)
               if f.__module__ == W.__name__ and name.endswith(("_frame", "_explorer"))}
    assert drawing == set(calls), "call every frame and explorer of widgets.py here"
    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # a style set earlier in the session would hide one set by the widgets
        before = {key: matplotlib.rcParams[key] for key in matplotlib.rcParams}
        for name, call in calls.items():
            call()
            assert {key: matplotlib.rcParams[key] for key in matplotlib.rcParams} == before, f"widgets.{name} changed rcParams"
