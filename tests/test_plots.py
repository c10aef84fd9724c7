"""Figures: training curves, confusion grid, accuracy bars, log-mel images, magnitude responses; no global style changes."""

from __future__ import annotations

import inspect

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from asc_utils import plots  # noqa: E402
from asc_utils.evaluate import confusion_matrices  # noqa: E402
from asc_utils.labels import CLASSES, DEVICES  # noqa: E402


def _labelled(ax: plt.Axes) -> bool:
    return bool(ax.get_xlabel()) and bool(ax.get_ylabel())


def test_history_plot() -> None:
    history = [{"epoch": e, "loss": 2.3 / e, "train_acc": 0.1 * e, "lr": 0.002 * e / 3, "seconds": 1.0, "clips_per_s": 9.0} for e in (1, 2, 3)]
    fig = plots.plot_history(history)
    assert len(fig.axes) == 3 and all(_labelled(ax) for ax in fig.axes)
    assert "%" in fig.axes[1].get_ylabel()
    plt.close(fig)


def test_confusion_grid_has_one_heatmap_per_device_with_class_names() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 900)
    devices = np.repeat(DEVICES, 100)
    cms = confusion_matrices(labels, np.where(rng.random(900) < 0.6, labels, rng.integers(0, 10, 900)), devices)
    fig = plots.plot_confusion_grid(cms)
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(visible) == 9 and all(_labelled(ax) for ax in visible)
    assert [t.get_text() for t in visible[0].get_xticklabels()] == list(CLASSES)
    assert visible[3].get_title().startswith("device s1 (seen)")
    plt.close(fig)
    ax = plots.plot_confusion(cms["a"], annotate="counts")
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(cms["a"].values.ravel().tolist())
    plt.close(ax.figure)


def test_device_accuracy_bars() -> None:
    fig = plots.plot_device_accuracy({"fp32": {d: 0.5 for d in DEVICES}, "fp16": {d: 0.4 for d in DEVICES}})
    ax = fig.axes[0]
    assert _labelled(ax) and "%" in ax.get_ylabel()
    heights = sorted(round(bar.get_height()) for bars in ax.containers for bar in bars)
    assert heights == [40] * 9 + [50] * 9
    plt.close(fig)


# ------------------------------------------------------------------------------------------- log-mel images (01, 02, 03)

def test_logmel_image_has_time_and_mel_axes_and_a_colour_bar() -> None:
    from asc_utils.features import FrontendConfig

    config = FrontendConfig()
    mel = np.random.default_rng(0).normal(size=(config.n_mels, 33))
    fig, ax = plt.subplots()
    image = plots.plot_logmel(ax, torch.from_numpy(mel)[None, None], "one clip")  # as the front end returns it: [1, 1, F, T]
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel() == "mel band" and ax.get_title() == "one clip"
    np.testing.assert_array_equal(image.get_array(), mel)
    step = config.hop_length / config.sample_rate  # pixel centres on the frame times and the band numbers
    np.testing.assert_allclose(image.get_extent(), [-step / 2, 32.5 * step, -0.5, config.n_mels - 0.5])
    assert image.get_clim() == (mel.min(), mel.max())
    colorbars = [a for a in fig.axes if a is not ax]
    assert len(colorbars) == 1 and colorbars[0].get_ylabel() == "log mel power"
    plt.close(fig)
    fig, ax = plt.subplots()
    plots.plot_logmel(ax, mel, colorbar=False, sample_rate=16_000, hop_length=160)
    assert fig.axes == [ax] and ax.get_title() == ""
    assert ax.images[0].get_extent()[1] == pytest.approx(32.5 * 0.01)
    with pytest.raises(ValueError, match=r"\[n_mels, frames\]"):
        plots.plot_logmel(ax, np.zeros((2, 256, 33)))
    plt.close(fig)


def test_logmel_images_share_a_colour_scale() -> None:
    rng = np.random.default_rng(1)
    quiet, loud = rng.normal(-8, 1, size=(256, 33)), rng.normal(2, 1, size=(256, 33))
    vmin, vmax = plots.shared_color_limits(quiet, torch.from_numpy(loud))
    both = np.concatenate([quiet.ravel(), loud.ravel()])
    assert (vmin, vmax) == pytest.approx(tuple(np.percentile(both, [1, 99.9])))
    assert plots.shared_color_limits(quiet, loud, percentiles=(0, 100)) == (both.min(), both.max())
    fig, axes = plt.subplots(1, 2)
    images = [plots.plot_logmel(ax, mel, vmin=vmin, vmax=vmax, colorbar=False) for ax, mel in zip(axes, (quiet, loud))]
    assert images[0].get_clim() == images[1].get_clim() == (vmin, vmax)
    assert vmin < quiet.mean() and loud.mean() < vmax  # one range covers both images
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one image"):
        plots.shared_color_limits()


# ------------------------------------------------------------------------------- magnitude responses of impulse responses

def test_unit_impulse_is_flat_at_0_db_whatever_its_delay() -> None:
    for ir in ([1.0], [0.0, 0.0, 1.0, 0.0]):
        freqs, db = plots.magnitude_response_db(np.array(ir), n_fft=1024, sample_rate=44_100)
        assert len(freqs) == len(db) == 513 and freqs[0] == 0 and freqs[-1] == 22_050
        np.testing.assert_allclose(db, 0.0, atol=1e-9)
    _, db = plots.magnitude_response_db(torch.tensor([0.5]), n_fft=64)
    np.testing.assert_allclose(db, 20 * np.log10(0.5))  # -6.02 dB re. unit gain ...
    np.testing.assert_allclose(plots.magnitude_response_db([0.5], n_fft=64, reference="peak")[1], 0.0, atol=1e-9)  # ... 0 re. peak


def test_two_tap_averager_has_its_notch_at_nyquist() -> None:
    # y[n] = (x[n] + x[n-1]) / 2: |H(f)| = |cos(pi f / fs)|, 0 dB at 0 Hz, -3.01 dB at fs/4, a zero at fs/2
    freqs, db = plots.magnitude_response_db([0.5, 0.5], n_fft=4096, sample_rate=48_000)
    expected = 20 * np.log10(np.abs(np.cos(np.pi * freqs / 48_000))[:-1])
    np.testing.assert_allclose(db[:-1], expected, atol=1e-9)
    assert db[0] == pytest.approx(0.0, abs=1e-12) and db[1024] == pytest.approx(-3.0103, abs=1e-4)
    assert db[-1] == pytest.approx(20 * np.log10(plots.MAGNITUDE_FLOOR))  # the notch: finite, at the floor
    _, aligned = plots.magnitude_response_db([0.5, 0.5], n_fft=4096, sample_rate=48_000, reference=(1_000, 5_000))
    band = (freqs >= 1_000) & (freqs <= 5_000)
    assert np.median(aligned[band]) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(aligned - db, aligned[0] - db[0])  # the same curve, shifted


def test_a_response_longer_than_n_fft_is_not_cut() -> None:
    echo = np.zeros(3000)
    echo[[0, 2999]] = 1.0  # a tap and its echo 2999 samples later: peaks at +6.02 dB (only the first tap: flat 0 dB)
    freqs, db = plots.magnitude_response_db(echo, n_fft=1024)
    assert len(freqs) == 4096 // 2 + 1
    assert db.max() == pytest.approx(20 * np.log10(2), abs=1e-6)
    with pytest.raises(ValueError, match="non-empty"):
        plots.magnitude_response_db(np.zeros(0))
    with pytest.raises(ValueError, match="'unit', 'peak' or a band"):
        plots.magnitude_response_db([1.0], reference="max")
    with pytest.raises(ValueError, match="reference band"):
        plots.magnitude_response_db([1.0], n_fft=16, reference=(30_000, 40_000))


def test_magnitude_response_plot_is_db_over_log_frequency() -> None:
    fig, ax = plt.subplots()
    line = plots.plot_magnitude_response(ax, [0.5, 0.5], "averager", n_fft=2048, color="tab:red", lw=2)
    freqs, db = plots.magnitude_response_db([0.5, 0.5], n_fft=2048)
    np.testing.assert_array_equal(line.get_xdata(), freqs[1:])  # no 0 Hz on a log axis
    np.testing.assert_array_equal(line.get_ydata(), db[1:])
    assert ax.get_xscale() == "log" and ax.get_xlim() == pytest.approx((20, 22_050))
    assert ax.get_xlabel() == "frequency (Hz)" and ax.get_ylabel() == "magnitude (dB)" and ax.get_title() == "averager"
    assert line.get_color() == "tab:red" and line.get_linewidth() == 2
    plots.plot_magnitude_response(ax, [1.0], reference="peak", ylim=(-60, 3), xlim=(50, 10_000))
    assert ax.get_ylabel() == "magnitude (dB re. peak)" and ax.get_ylim() == (-60, 3) and ax.get_xlim() == pytest.approx((50, 10_000))
    plots.plot_magnitude_response(ax, [1.0], reference=(500, 3000))
    assert ax.get_ylabel() == "magnitude (dB re. 500-3000 Hz)"
    plt.close(fig)


# -------------------------------------------------------------------------------------------- no global matplotlib state

def _rc() -> dict:
    return {key: matplotlib.rcParams[key] for key in matplotlib.rcParams}


@pytest.fixture
def no_global_style(monkeypatch: pytest.MonkeyPatch):
    """Default rcParams for the test, restored afterwards; any seaborn/matplotlib call that sets a global style raises."""
    import seaborn as sns

    def refuse(*args, **kwargs):
        raise AssertionError("a plot function changed the global matplotlib style; the notebooks set it once")

    for name in ("set_theme", "set", "set_style", "set_context", "set_palette", "reset_defaults", "reset_orig"):
        monkeypatch.setattr(sns, name, refuse)
    monkeypatch.setattr(matplotlib.style, "use", refuse)
    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # a style set earlier in the session would hide one set by the functions under test
        yield


def test_no_plot_function_changes_global_matplotlib_state(no_global_style) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300)
    cms = confusion_matrices(labels, np.where(rng.random(300) < 0.6, labels, rng.integers(0, 10, 300)), np.repeat(DEVICES[:3], 100))
    mel = rng.normal(size=(256, 33))
    history = [{"epoch": e, "loss": 1.0 / e, "train_acc": 0.2 * e, "lr": 0.001} for e in (1, 2)]
    before = _rc()
    calls = {
        "plot_history": lambda: plots.plot_history(history, title="run"),
        "plot_confusion": lambda: plots.plot_confusion(cms["a"]),
        "plot_confusion_grid": lambda: plots.plot_confusion_grid(cms),
        "plot_device_accuracy": lambda: plots.plot_device_accuracy({"fp32": {d: 0.5 for d in DEVICES}}),
        "plot_logmel": lambda: plots.plot_logmel(plt.subplots()[1], mel, "x"),
        "plot_magnitude_response": lambda: plots.plot_magnitude_response(plt.subplots()[1], [0.5, 0.5]),
        "magnitude_response_db": lambda: plots.magnitude_response_db([1.0]),
        "shared_color_limits": lambda: plots.shared_color_limits(mel),
    }
    public = {name for name, f in inspect.getmembers(plots, inspect.isfunction) if f.__module__ == plots.__name__ and not name.startswith("_")}
    assert public - {"theme"} == set(calls), "call every public function of plots.py here"
    for name, call in calls.items():
        call()
        assert _rc() == before, f"plots.{name} changed matplotlib.rcParams"
    plt.close("all")


def test_theme_applies_the_notebook_look_only_inside_its_block(no_global_style) -> None:
    before = _rc()
    with plots.theme():
        assert matplotlib.rcParams["axes.facecolor"].upper() == "#EAEAF2" and matplotlib.rcParams["axes.grid"]  # darkgrid
        fig = plots.plot_history([{"epoch": 1, "loss": 1.0, "train_acc": 0.5, "lr": 0.001}])
        assert fig.axes[0].get_facecolor() != matplotlib.colors.to_rgba("white")
    assert _rc() == before
    plt.close(fig)
