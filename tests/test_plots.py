"""Figures: training curves, the per-device confusion grid, per-device accuracy bars (labelled axes)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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
