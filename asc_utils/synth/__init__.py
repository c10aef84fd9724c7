"""The embedded-data generator: a synthetic stand-in for TAU Urban Acoustic Scenes 2022 Mobile, with exactly its layout.

    from asc_utils.synth import synthesize, PRESETS
    synthesize("data/tutorial", preset="tutorial", seed=0)

Modules: `sources` (procedural sound sources), `scenes` (scene recipes and the recording renderer), `devices` (the
recording devices, drawn from `asc_utils.responses`), `writer` (presets, plan, files and data card). numpy only: generating
data does not import torch. The TAU22 data layer that reads what this writes is `asc_utils.data`.
"""

from __future__ import annotations

from asc_utils.synth.writer import (
    GENERATOR_VERSION,
    PRESETS,
    DataSetExistsError,
    Preset,
    UnknownPresetError,
    clip_name,
    plan,
    synthesize,
)

__all__ = ["GENERATOR_VERSION", "PRESETS", "DataSetExistsError", "Preset", "UnknownPresetError", "clip_name", "plan", "synthesize"]
