"""Figures for training runs: training curves, confusion-matrix heatmaps per device, per-device accuracy bars (seaborn)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from asc_utils.labels import DEVICE_GROUPS, DEVICES


def plot_history(history: Sequence[dict] | pd.DataFrame, title: str | None = None) -> Figure:
    """Training loss, training accuracy (%) and learning rate per epoch, side by side."""
    sns.set_theme()
    frame = pd.DataFrame(history)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].plot(frame["epoch"], frame["loss"], marker="o")
    axes[0].set(xlabel="epoch", ylabel="cross-entropy loss (nats)", title="training loss")
    axes[1].plot(frame["epoch"], 100 * frame["train_acc"], marker="o")
    axes[1].set(xlabel="epoch", ylabel="accuracy (%)", title="training accuracy (augmented clips)")
    axes[2].plot(frame["epoch"], frame["lr"], marker="o")
    axes[2].set(xlabel="epoch", ylabel="learning rate (at epoch end)", title="schedule")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion(counts: pd.DataFrame, ax: Axes | None = None, normalize: bool = True, annotate: str | None = "counts",
                   title: str | None = None, cbar: bool = True) -> Axes:
    """One confusion-matrix heatmap: colours row-normalised (% of each true class); annotate with 'counts', 'percent' or None."""
    sns.set_theme()
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 6.5))
    rows = counts.sum(axis=1).replace(0, 1)
    percent = 100 * counts.div(rows, axis=0)
    annot = {"counts": counts, "percent": percent.round(0).astype(int), None: None}[annotate]
    sns.heatmap(percent if normalize else counts, ax=ax, vmin=0, vmax=100 if normalize else None, cmap="Blues",
                annot=annot if annot is not None else False, fmt="d", cbar=cbar, square=True,
                cbar_kws={"label": "% of true class" if normalize else "clips"}, annot_kws={"fontsize": 8})
    ax.set(xlabel="predicted class", ylabel="true class", title=title or "")
    return ax


def plot_confusion_grid(confusions: Mapping[str, pd.DataFrame], ncols: int = 3, title: str | None = None) -> Figure:
    """A grid of row-normalised confusion matrices, one per device (a..s6 order; 'all' is skipped)."""
    sns.set_theme()
    names = [d for d in DEVICES if d in confusions] + [d for d in confusions if d not in DEVICES and d != "all"]
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.8 * nrows), squeeze=False)
    group_of = {d: g for g, members in DEVICE_GROUPS.items() for d in members}
    for ax, name in zip(axes.flat, names):
        counts = confusions[name]
        acc = 100 * counts.values.trace() / max(1, counts.values.sum())
        plot_confusion(counts, ax=ax, annotate=None, cbar=False,
                       title=f"device {name} ({group_of.get(name, 'other')}): {acc:.1f} % of {counts.values.sum()} clips")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(("Confusion matrices per device, row-normalised (% of true class)" + (f" - {title}" if title else "")))
    fig.tight_layout()
    return fig


def plot_device_accuracy(per_device: Mapping[str, Mapping[str, float | None]] | pd.DataFrame, ax: Axes | None = None,
                         title: str | None = None) -> Figure:
    """Grouped bars of accuracy (%) per device, one colour per series ({series: {device: fraction}} or a device x series table)."""
    sns.set_theme()
    frame = per_device if isinstance(per_device, pd.DataFrame) else pd.DataFrame(per_device)
    frame = frame.loc[[d for d in frame.index if d in DEVICES or d not in DEVICE_GROUPS]]
    long = (100 * frame.astype(float)).rename_axis("device").reset_index().melt(id_vars="device", var_name="run", value_name="accuracy")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.8))
    sns.barplot(data=long, x="device", y="accuracy", hue="run", ax=ax)
    group_of = {d: g for g, members in DEVICE_GROUPS.items() for d in members}
    for i, device in enumerate(frame.index):
        if group_of.get(device) == "unseen":
            ax.axvspan(i - 0.5, i + 0.5, color="grey", alpha=0.12, lw=0)
    ax.set(xlabel="recording device (shaded: unseen in training)", ylabel="accuracy (%)", ylim=(0, 100),
           xlim=(-0.5, len(frame.index) - 0.5), title=title or "accuracy per device")
    ax.legend(title=None, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    return ax.figure
