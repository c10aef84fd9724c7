"""The speed layer: exact rewrites of the readable front end and network that compute the same numbers faster on a CPU.

Everything in `asc_utils.features` and `asc_utils.models` is the readable reference, taught by the notebooks. This package
holds the fast forms of the same functions, applied only by explicit calls from the places that want them:

    for_inference(model)      eval-only copy: BatchNorm folded, linear chains merged, channels-last, chunks per thread
    for_training(model)       the same parameters in a faster training layout (in place; undo with plain_layout)
    plain_layout(model)       back to the readable modules and memory layout (in place)
    fast_frontend(frontend)   the log-mel front end with a faster CPU mel spectrogram (same numbers up to float rounding)
    tune_allocator()          keep freed tensor memory in the process (glibc only)
    prefetch(fn, items)       fn(item) in order, the next items computed ahead in background threads (file decoding)

`fit`, `evaluate`, the inference API and the `asc` commands use it by default and take `fast=False` (`--plain` on the
command line) for the readable path; notebook 07 derives every rewrite from the readable model and measures it.
"""

from __future__ import annotations

from asc_utils.speed.allocator import allocator_tuned, tune_allocator
from asc_utils.speed.frontend import FastLogMelFrontend, FastMelSpectrogram, fast_frontend
from asc_utils.speed.inference import FastSNTL, for_inference
from asc_utils.speed.prefetch import prefetch
from asc_utils.speed.threads import map_chunks
from asc_utils.speed.training import for_training, plain_layout

__all__ = [
    "FastLogMelFrontend", "FastMelSpectrogram", "FastSNTL", "allocator_tuned", "fast_frontend", "for_inference",
    "for_training", "map_chunks", "plain_layout", "prefetch", "tune_allocator",
]
