"""Figures: log-mel images, magnitude responses of impulse responses, training curves, confusion matrices, accuracy bars.

Every function draws on axes (its own or the ones passed in) and leaves global matplotlib state alone: the notebooks set
their seaborn theme once in their import cell; scripts that save figures can wrap them in `with theme():`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike

from asc_utils.audio import SAMPLE_RATE
from asc_utils.labels import DEVICE_GROUPS, DEVICES

# 0 dB reference of a magnitude response: gain 1 ("unit"), its maximum ("peak"), or its median over a band (low, high) in Hz
MagnitudeReference = Literal["unit", "peak"] | tuple[float, float]
MAGNITUDE_FLOOR = 1e-9  # |H| below this is drawn at -180 dB, so exact zeros (notches) stay finite


@contextmanager
def theme() -> Iterator[None]:
    """The notebooks' seaborn look (darkgrid, notebook context, deep palette) for figures made inside this block only."""
    rc = {**sns.axes_style("darkgrid"), **sns.plotting_context("notebook"), "axes.prop_cycle": cycler(color=sns.color_palette("deep"))}
    with plt.rc_context(rc):
        yield


def _as_array(values: ArrayLike) -> np.ndarray:
    """A float64 NumPy array from an array-like or a torch tensor (on any device, with or without grad)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def shared_color_limits(*images: ArrayLike, percentiles: tuple[float, float] = (1.0, 99.9)) -> tuple[float, float]:
    """One colour range (vmin, vmax) for several images: percentiles of all their values, so colours compare across them."""
    if not images:
        raise ValueError("shared_color_limits needs at least one image.")
    values = np.concatenate([_as_array(image).ravel() for image in images])
    low, high = np.percentile(values, percentiles)
    return float(low), float(high)


def plot_logmel(ax: Axes, logmel: ArrayLike, title: str | None = None, *, sample_rate: int | None = None, hop_length: int | None = None,
                vmin: float | None = None, vmax: float | None = None, colorbar: bool = True,
                colorbar_label: str = "log mel power", cmap: str = "magma") -> AxesImage:
    """Draw a log-mel [n_mels, frames] as an image (time in s across, mel band upwards); returns the image for a shared colour bar.

    `logmel` is an array or tensor as the front end returns it (leading size-1 axes are dropped); `sample_rate` and
    `hop_length` default to the front end's (`FrontendConfig`). Pass the same `vmin`/`vmax` (e.g. `shared_color_limits`)
    to images that are to be compared, and `colorbar=False` when one colour bar serves several axes.
    """
    mel = _as_array(logmel)
    while mel.ndim > 2 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.ndim != 2:
        raise ValueError(f"plot_logmel expects one log-mel [n_mels, frames]; got shape {tuple(_as_array(logmel).shape)}.")
    if sample_rate is None or hop_length is None:
        from asc_utils.features import FrontendConfig

        config = FrontendConfig()
        sample_rate = config.sample_rate if sample_rate is None else sample_rate
        hop_length = config.hop_length if hop_length is None else hop_length
    n_mels, frames = mel.shape
    step = hop_length / sample_rate
    # frame t is centred at t * hop / sr (centred STFT) and band k at k: each pixel is centred on its frame time and band
    image = ax.imshow(mel, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                      extent=(-step / 2, (frames - 0.5) * step, -0.5, n_mels - 0.5))
    ax.set(xlabel="time (s)", ylabel="mel band")
    if title is not None:
        ax.set_title(title)
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label=colorbar_label)
    return image


def magnitude_response_db(ir: ArrayLike, n_fft: int = 8192, sample_rate: int = SAMPLE_RATE,
                          reference: MagnitudeReference = "unit") -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz, 0 to sample_rate / 2) and magnitude response 20 log10 |H(f)| (dB) of an impulse response.

    The response is zero-padded to `n_fft` samples (to the next power of two above its length if it is longer, so it is
    never cut). `reference` sets 0 dB: "unit" = gain 1, "peak" = the maximum, (low, high) = the median over that band in Hz.
    """
    h = _as_array(ir).reshape(-1)
    if h.size == 0:
        raise ValueError("magnitude_response_db needs a non-empty impulse response.")
    size = max(int(n_fft), 1 << (h.size - 1).bit_length())
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    db = 20.0 * np.log10(np.maximum(np.abs(np.fft.rfft(h, size)), MAGNITUDE_FLOOR))
    if isinstance(reference, str):
        if reference not in ("unit", "peak"):
            raise ValueError(f"reference must be 'unit', 'peak' or a band (low_hz, high_hz); got {reference!r}.")
        return freqs, (db - db.max()) if reference == "peak" else db
    low, high = reference
    band = (freqs >= low) & (freqs <= high)
    if not band.any():
        raise ValueError(f"no frequency of the {size}-point response lies in the reference band {low}-{high} Hz.")
    return freqs, db - np.median(db[band])


def _magnitude_label(reference: MagnitudeReference) -> str:
    if isinstance(reference, str):
        return "magnitude (dB)" if reference == "unit" else "magnitude (dB re. peak)"
    return f"magnitude (dB re. {reference[0]:g}-{reference[1]:g} Hz)"


def plot_magnitude_response(ax: Axes, ir: ArrayLike, title: str | None = None, *, n_fft: int = 8192, sample_rate: int = SAMPLE_RATE,
                            reference: MagnitudeReference = "unit", xlim: tuple[float, float] | None = None,
                            ylim: tuple[float, float] | None = None, **line_kwargs: Any) -> Line2D:
    """Draw the magnitude response of an impulse response in dB over a log frequency axis (20 Hz to Nyquist by default).

    See `magnitude_response_db` for `n_fft` and `reference`; `line_kwargs` go to the line (colour, lw, alpha, label, ...).
    """
    freqs, db = magnitude_response_db(ir, n_fft, sample_rate, reference)
    (line,) = ax.semilogx(freqs[1:], db[1:], **line_kwargs)  # 0 Hz has no place on a log axis
    ax.set(xlabel="frequency (Hz)", ylabel=_magnitude_label(reference), xlim=xlim or (20, sample_rate / 2))
    if ylim is not None:
        ax.set_ylim(ylim)
    if title is not None:
        ax.set_title(title)
    return line


def plot_history(history: Sequence[dict] | pd.DataFrame, title: str | None = None) -> Figure:
    """Training loss, training accuracy (%) and learning rate per epoch, side by side."""
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
    """A grid of row-normalised confusion matrices, one per device (a..s6 order; 'all' is skipped), with one shared colour bar."""
    names = [d for d in DEVICES if d in confusions] + [d for d in confusions if d not in DEVICES and d != "all"]
    nrows = math.ceil(len(names) / ncols)
    # About 11-12 inches wide, so a notebook shows it near full size and the 9 pt class names stay readable; the rows share
    # the class order, so only the first column shows the true-class names. Constrained layout places the colour bar.
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 2.2, 4.3 * nrows + 0.6), squeeze=False, layout="constrained")
    group_of = {d: g for g, members in DEVICE_GROUPS.items() for d in members}
    for k, (ax, name) in enumerate(zip(axes.flat, names)):
        counts = confusions[name]
        acc = 100 * counts.values.trace() / max(1, counts.values.sum())
        plot_confusion(counts, ax=ax, annotate=None, cbar=False,
                       title=f"device {name} ({group_of.get(name, 'other')}):\n{acc:.1f} % of {counts.values.sum()} clips")
        ax.tick_params(labelsize=9)
        ax.title.set_fontsize(10)
        if k % ncols:
            ax.tick_params(axis="y", labelleft=False)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    used = list(axes.flat)[: len(names)]
    colours = ScalarMappable(norm=Normalize(vmin=0, vmax=100), cmap="Blues")  # the scale plot_confusion draws with
    fig.colorbar(colours, ax=used, label="% of true class", shrink=0.6, aspect=30)
    fig.suptitle(("Confusion matrices per device, row-normalised (% of true class)" + (f" - {title}" if title else "")))
    return fig


def plot_device_accuracy(per_device: Mapping[str, Mapping[str, float | None]] | pd.DataFrame, ax: Axes | None = None,
                         title: str | None = None) -> Figure:
    """Grouped bars of accuracy (%) per device, one colour per series ({series: {device: fraction}} or a device x series table)."""
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
