"""`asc_utils.speed.allocator`: the glibc allocator setting, applied by explicit call (never on import), and its off switch."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
PROBE = "from asc_utils.speed import allocator_tuned, tune_allocator; tune_allocator(); print(allocator_tuned())"


def _tuned_in_fresh_python(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "ASC_DEFAULT_ALLOCATOR"} | env
    done = subprocess.run([sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="the allocator setting exists only for glibc (Linux)")
def test_tune_allocator_raises_the_glibc_thresholds():
    assert _tuned_in_fresh_python() == "True"


@pytest.mark.parametrize("value", ["1", "yes"])
def test_asc_default_allocator_keeps_glibc_defaults(value):
    assert _tuned_in_fresh_python(ASC_DEFAULT_ALLOCATOR=value) == "False"


def test_tune_allocator_is_a_no_op_when_switched_off(monkeypatch):
    from asc_utils.speed import tune_allocator

    monkeypatch.setenv("ASC_DEFAULT_ALLOCATOR", "1")
    assert tune_allocator() is False
