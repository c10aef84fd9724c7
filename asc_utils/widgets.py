"""Interactive explorers for the notebooks (ipywidgets), with a static fallback where no widget front end runs.

    from asc_utils.widgets import clip_explorer, dir_explorer, confusion_explorer, compare_confusion_explorer

Each explorer is a function that returns an `Explorer` (an ipywidgets VBox: controls, a caption, the figure as an Image
widget and audio players where there is sound). Changing a control redraws the figure in the kernel, so the explorers work
with the core widgets of ipywidgets 8 and need no extension of their own.

Nobody can move a control in a headless run (papermill, `jupyter nbconvert --execute`) or in an HTML export, so there the
same function returns a `StaticView`: the figure for the first selection plus a one-line note. `static=None` (default)
decides with `widgets_live()`; pass `static=True`/`False`, or set ASC_WIDGETS=static/live, to choose yourself.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd
import soundfile as sf
import torch
from matplotlib.figure import Figure

from asc_utils.audio import SAMPLE_RATE
from asc_utils.labels import CLASSES, DEVICE_GROUPS, DEVICES
from asc_utils.plots import plot_confusion, plot_logmel, plot_magnitude_response, shared_color_limits

WIDGETS_ENV = "ASC_WIDGETS"  # "live" or "static" overrides the detection in widgets_live()
DPI = 90


def widgets_live() -> bool:
    """True when live widgets can be shown: $ASC_WIDGETS=live, or an IPython kernel started by a Jupyter server (or Colab).

    A kernel cannot ask its front end whether it renders widgets, so this looks at who started the kernel: a Jupyter
    server (JupyterLab, Notebook 7, Voila) sets JPY_SESSION_NAME for its kernels; papermill and nbconvert do not, and
    their outputs are read as files. Other front ends that render widgets (VS Code, ...) need ASC_WIDGETS=live.
    """
    setting = os.environ.get(WIDGETS_ENV, "").strip().lower()
    if setting in ("live", "static"):
        return setting == "live"
    if setting:
        raise ValueError(f"{WIDGETS_ENV} must be 'live' or 'static' (or unset to detect); found {setting!r}.")
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:  # plain Python, a terminal IPython, a test run
        return False
    return "JPY_SESSION_NAME" in os.environ or "google.colab" in sys.modules


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def wav_bytes(wave: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A mono waveform as the bytes of a 16-bit wav file (clipped to [-1, 1], level kept so devices can be compared)."""
    samples = np.clip(np.asarray(torch.as_tensor(wave, dtype=torch.float32).reshape(-1)), -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@dataclass
class Frame:
    """What an explorer shows for one selection: a caption, the figure (PNG) and named sounds (wav bytes)."""

    caption: str
    png: bytes
    sounds: dict[str, bytes] = field(default_factory=dict)


class StaticView:
    """The static stand-in for an explorer: a one-line note, the figure and audio players, as plain notebook outputs."""

    def __init__(self, frame: Frame, note: str) -> None:
        self.frame = frame
        self.note = note

    def outputs(self) -> list[dict[str, str]]:
        """The outputs as MIME bundles: the note (markdown), the figure (PNG), one HTML audio player per sound."""
        from IPython.display import Audio

        bundles = [{"text/markdown": f"*{self.note}*", "text/plain": self.note},
                   {"image/png": base64.b64encode(self.frame.png).decode("ascii"), "text/plain": self.frame.caption}]
        for name, data in self.frame.sounds.items():
            bundles.append({"text/html": f"<b>{html.escape(name)}</b> {Audio(data=data)._repr_html_()}", "text/plain": f"[audio: {name}]"})
        return bundles

    def _ipython_display_(self) -> None:
        from IPython.display import display

        for bundle in self.outputs():
            display(bundle, raw=True)

    def __repr__(self) -> str:
        return self.note


class Explorer(widgets.VBox):
    """Controls above a caption, the figure (`image`) and audio players (`players`); any control change redraws them."""

    def __init__(self, controls: Mapping[str, widgets.ValueWidget], render: Callable[[], Frame], name: str, kind: str,
                 trigger: Sequence[str] | None = None) -> None:
        self.controls = dict(controls)
        self.name = name
        self._render = render
        first = render()
        self.caption = widgets.HTML(_caption_html(first.caption))
        self.image = widgets.Image(value=first.png, format="png", layout=widgets.Layout(max_width="100%", align_self="flex-start"))
        self.players = {key: widgets.Audio(value=data, format="wav", autoplay=False, loop=False) for key, data in first.sounds.items()}
        sound_row = [widgets.VBox([widgets.Label(key), player]) for key, player in self.players.items()]
        super().__init__([widgets.HBox(list(self.controls.values())), self.caption, *([widgets.HBox(sound_row)] if sound_row else []), self.image])
        self.add_class("asc-explorer")
        self.add_class(f"asc-{kind}-explorer")  # e.g. the browser test finds .asc-confusion-explorer
        for key in trigger if trigger is not None else self.controls:
            self.controls[key].observe(self._redraw, names="value")

    def _redraw(self, change: dict | None = None) -> None:
        try:
            frame = self._render()
        except Exception as exc:  # a callback's traceback goes to the kernel log, where nobody sees it: show it here
            self.caption.value = f"<b>Could not draw this selection</b> ({html.escape(type(exc).__name__)}: {html.escape(str(exc))})"
            return
        self.caption.value = _caption_html(frame.caption)
        self.image.value = frame.png
        for key, data in frame.sounds.items():
            self.players[key].value = data

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The widget view, with the current figure as a PNG for viewers without a widget manager (an HTML export)."""
        bundle = super()._repr_mimebundle_(**kwargs)
        return {**bundle, "image/png": base64.b64encode(self.image.value).decode("ascii")}

    def __repr__(self) -> str:
        return f"{self.name} (interactive: run this notebook in JupyterLab to use the controls)"


def _caption_html(text: str) -> str:
    return f"<span style='font-size:110%'>{html.escape(text)}</span>"


def _show(controls: Mapping[str, widgets.ValueWidget], render: Callable[[], Frame], name: str, kind: str, static: bool | None,
          hint: str, trigger: Sequence[str] | None = None) -> Explorer | StaticView:
    """An Explorer when widgets are live, else a StaticView of the first selection with a one-line note."""
    if static is None:
        static = not widgets_live()
    if not static:
        return Explorer(controls, render, name, kind, trigger)
    frame = render()
    return StaticView(frame, f"{name}, static view ({frame.caption}): {hint} (no widget front end here; open the notebook in JupyterLab).")


def _dropdown(description: str, options: Sequence) -> widgets.Dropdown:
    return widgets.Dropdown(description=description, options=list(options), style={"description_width": "initial"},
                            layout=widgets.Layout(width="auto"))


# ----------------------------------------------------------------------------------------------------------- clips (01)

def _logmel(wave: np.ndarray) -> np.ndarray:
    """Log-mel [256, 33] of one clip with the project's front end (eval mode: no masking)."""
    with torch.no_grad():
        return _frontend()(torch.as_tensor(wave, dtype=torch.float32).reshape(1, -1))[0, 0].numpy()


@functools.cache
def _frontend() -> torch.nn.Module:
    """The front end in eval mode, built once (its mel filter bank is reused for every redraw)."""
    from asc_utils.features import FrontendConfig, LogMelFrontend

    return LogMelFrontend(FrontendConfig()).eval()


def clip_frame(path: str | Path, title: str) -> Frame:
    """Waveform and log-mel of one clip, and the clip to listen to."""
    from asc_utils.data import load_clip

    wave = load_clip(path)
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax_wave, ax_mel = fig.subplots(1, 2)
    ax_wave.plot(np.arange(wave.size) / SAMPLE_RATE, wave, lw=0.4)
    ax_wave.set(xlabel="time (s)", ylabel="amplitude (full scale)", title="waveform")
    plot_logmel(ax_mel, _logmel(wave), "log-mel spectrogram (256 bands)")
    fig.suptitle(title)
    return Frame(title, figure_png(fig), {"clip": wav_bytes(wave)})


def clip_explorer(data_dir: str | Path | None = None, meta: pd.DataFrame | None = None, max_clips: int = 50,
                  static: bool | None = None) -> Explorer | StaticView:
    """Pick a scene, a device and a clip; hear it and see its waveform and log-mel (notebook 01)."""
    from asc_utils.data import load_meta
    from asc_utils.paths import default_data_dir

    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    meta = load_meta(data_dir) if meta is None else meta
    scenes = [c for c in CLASSES if c in set(meta["scene_label"])]
    devices = [d for d in DEVICES if d in set(meta["device"])] + sorted(set(meta["device"]) - set(DEVICES))

    def clip_options(scene: str, device: str) -> list[tuple[str, str]]:
        rows = meta[(meta["scene_label"] == scene) & (meta["device"] == device)].head(max_clips)
        return [(Path(f).stem.split("-", 1)[1].rsplit("-", 1)[0], f) for f in rows["filename"]]

    scene = _dropdown("scene", scenes)
    device = _dropdown("device", devices)
    clip = _dropdown("clip (city-location-segment-sub)", clip_options(scene.value, device.value))

    def update_clips(change: dict) -> None:
        clip.options = clip_options(scene.value, device.value)  # selects the first clip, which redraws

    scene.observe(update_clips, names="value")
    device.observe(update_clips, names="value")

    def render() -> Frame:
        if clip.value is None:
            fig = Figure(figsize=(11, 1), layout="constrained")
            fig.text(0.5, 0.5, f"no clip of scene '{scene.value}' recorded by device '{device.value}'", ha="center")
            return Frame(f"{scene.value} · device {device.value}: no clip", figure_png(fig), {"clip": wav_bytes(np.zeros(1))})
        return clip_frame(data_dir / clip.value, f"{scene.value} · device {device.value} · {Path(clip.value).name}")

    return _show({"scene": scene, "device": device, "clip": clip}, render, "Clip explorer", "clip", static,
                 "pick another scene, device or clip", trigger=["clip"])


# ------------------------------------------------------------------------------------------------------------ DIRs (02)

def dir_frame(name: str, ir: torch.Tensor, clip: np.ndarray) -> Frame:
    """One DIR (time and magnitude response) and a clip before/after convolution with it, as DIRAugment does it."""
    from asc_utils.augment import DIRAugment

    before = torch.as_tensor(clip, dtype=torch.float32).reshape(1, 1, -1)
    after = DIRAugment([ir], p=1.0).train()(before, ["a"])[0, 0].numpy()
    ir = np.asarray(torch.as_tensor(ir, dtype=torch.float32).reshape(-1))
    fig = Figure(figsize=(11, 6.4), layout="constrained")
    (ax_ir, ax_mag), (ax_before, ax_after) = fig.subplots(2, 2)
    ax_ir.plot(1000 * np.arange(ir.size) / SAMPLE_RATE, ir, lw=0.7)
    span_ms = min(20.0, 1000 * ir.size / SAMPLE_RATE)
    # a margin left of t = 0: the first tap, often the largest, would otherwise be drawn on top of the axis line
    ax_ir.set(xlabel="time (ms)", ylabel="amplitude", title=f"impulse response {name}", xlim=(-0.03 * span_ms, span_ms))
    plot_magnitude_response(ax_mag, ir, "magnitude response", sample_rate=SAMPLE_RATE, reference="peak", ylim=(-60, 3))
    mel_before, mel_after = _logmel(before[0, 0].numpy()), _logmel(after)
    vmin, vmax = shared_color_limits(mel_before, mel_after)  # one colour scale, so the colouring by the DIR shows
    plot_logmel(ax_before, mel_before, "log-mel: device-a clip", vmin=vmin, vmax=vmax)
    plot_logmel(ax_after, mel_after, f"log-mel: after convolution with {name}", vmin=vmin, vmax=vmax)
    return Frame(f"DIR {name}: {ir.size} taps ({1000 * ir.size / SAMPLE_RATE:.1f} ms)", figure_png(fig),
                 {"before": wav_bytes(before), "after": wav_bytes(after)})


def dir_explorer(clip: np.ndarray | torch.Tensor, dirs: Mapping[str, torch.Tensor] | None = None,
                 static: bool | None = None) -> Explorer | StaticView:
    """Pick a device impulse response; hear and see a device-a clip before and after DIR augmentation (notebook 02)."""
    if dirs is None:
        from asc_utils.dirs import named_dirs

        dirs, _ = named_dirs()
    if not dirs:
        raise ValueError("dir_explorer needs at least one impulse response; got none. Use asc_utils.dirs.named_dirs().")
    choice = _dropdown("impulse response", list(dirs))
    return _show({"dir": choice}, lambda: dir_frame(choice.value, dirs[choice.value], clip), "DIR explorer", "dir", static,
                 "pick another impulse response")


# ------------------------------------------------------------------------------------------------ confusion (05 and 06)

def _device_options(runs: Mapping[str, Mapping[str, pd.DataFrame]]) -> list[str]:
    present = [d for confusions in runs.values() for d in confusions]
    if not present:
        raise ValueError("no confusion matrices given: pass {device: counts DataFrame}, e.g. evaluation.confusion('fp16').")
    ordered = [d for d in DEVICES if d in present] + [d for d in dict.fromkeys(present) if d not in DEVICES and d != "all"]
    return ordered + (["all"] if "all" in present else [])


def _accuracy(counts: pd.DataFrame) -> float:
    return 100.0 * float(np.trace(counts.values)) / max(1, int(counts.values.sum()))


def confusion_frame(runs: Mapping[str, Mapping[str, pd.DataFrame]], device: str, annotate: str = "counts") -> Frame:
    """The confusion matrix of one device for each run, side by side (row-normalised colours, counts or % written in)."""
    group = next((g for g, members in DEVICE_GROUPS.items() if device in members), "all devices" if device == "all" else "other")
    names = [name for name, confusions in runs.items() if device in confusions]
    fig = Figure(figsize=(7.4 * len(names), 6.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    parts = []
    for ax, name in zip(axes, names):
        counts = runs[name][device]
        acc = _accuracy(counts)
        label = f"{name}: " if name else ""
        plot_confusion(counts, ax=ax, annotate=annotate, title=f"{label}device {device} ({group}): {acc:.1f} % of {counts.values.sum()} clips")
        parts.append(f"{label}{acc:.1f} %")
    return Frame(f"device {device} ({group}): " + ", ".join(parts) + f" of {int(runs[names[0]][device].values.sum())} clips", figure_png(fig))


def compare_confusion_explorer(runs: Mapping[str, Mapping[str, pd.DataFrame]], static: bool | None = None) -> Explorer | StaticView:
    """Pick a device; see its confusion matrix under each run side by side, e.g. general vs device-specific (notebook 06)."""
    device = _dropdown("device", _device_options(runs))
    numbers = _dropdown("numbers in the cells", [("clip counts", "counts"), ("% of true class", "percent")])
    return _show({"device": device, "numbers": numbers}, lambda: confusion_frame(runs, device.value, numbers.value),
                 "Confusion-matrix explorer", "confusion", static, "pick another device")


def confusion_explorer(confusions: Mapping[str, pd.DataFrame], static: bool | None = None) -> Explorer | StaticView:
    """Pick a device; see its confusion matrix in detail, e.g. for `evaluation.confusion("fp16")` (notebook 05)."""
    return compare_confusion_explorer({"": confusions}, static=static)
