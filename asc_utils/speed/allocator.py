"""Process settings for fast CPU work: keep freed tensor memory in the process instead of handing it back to the system.

glibc's malloc serves every buffer above its mmap threshold (128 kB, raised dynamically up to 32 MB) with a fresh `mmap`
and returns it with `munmap` when the tensor is freed, so the next batch page-faults its activations in again, one 4 kB page
at a time. The SNTL network's activations are 1-200 MB per batch, so the kernel's page-fault handling can take a large
share of the CPU time (benchmarks/RESULTS.md has the measurement). Raising the mmap and trim thresholds lets glibc reuse
the memory; the numbers computed do not change, only where their buffers come from. The cost: up to `trim_threshold`
bytes of freed memory stay with the process (its resident size stays near its peak).

Nothing is changed on import: the `asc` command, the benchmarks and notebook 07 call `tune_allocator()` explicitly. The
environment variable ASC_DEFAULT_ALLOCATOR=1 makes that call a no-op (to measure what the setting is worth). Other C
libraries (macOS, Windows, musl) are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_state = {"tuned": False}


def tune_allocator(mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds (bytes) so freed tensor buffers are reused; True when applied."""
    if os.environ.get("ASC_DEFAULT_ALLOCATOR", "") not in ("", "0") or platform.system() != "Linux":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # older glibc versions refuse thresholds above 32 MB: fall back to the largest they accept
    applied = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) or bool(mallopt(M_MMAP_THRESHOLD, min(mmap_threshold, 32 << 20)))
    applied = bool(mallopt(M_TRIM_THRESHOLD, trim_threshold)) and applied
    _state["tuned"] = applied
    return applied


def allocator_tuned() -> bool:
    """Whether `tune_allocator` changed glibc's settings in this process."""
    return _state["tuned"]
