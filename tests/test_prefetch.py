"""`asc_utils.speed.prefetch`: the same results in the same order as a plain loop, bounded look-ahead, errors in turn."""

from __future__ import annotations

import threading
import time

import pytest

from asc_utils.speed.prefetch import prefetch


def test_results_in_order_even_when_later_items_finish_first() -> None:
    def slow_first(i: int) -> int:
        time.sleep(0.02 if i == 0 else 0.0)
        return i * i

    assert list(prefetch(slow_first, range(7), depth=3, workers=3)) == [i * i for i in range(7)]


def test_look_ahead_is_bounded_by_depth() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def record(i: int) -> int:
        with lock:
            started.append(i)
        return i

    iterator = prefetch(record, range(100), depth=2)
    assert next(iterator) == 0
    time.sleep(0.05)
    assert max(started) <= 3, f"prefetch ran ahead to item {max(started)} with depth 2"
    iterator.close()


def test_an_error_is_raised_at_its_items_turn_after_the_earlier_results() -> None:
    def fail_on_three(i: int) -> int:
        if i == 3:
            raise FileNotFoundError(f"clip {i} is missing")
        return i

    got = []
    with pytest.raises(FileNotFoundError, match="clip 3 is missing"):
        for value in prefetch(fail_on_three, range(6), depth=2):
            got.append(value)
    assert got == [0, 1, 2]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="depth >= 1"):
        list(prefetch(abs, [1], depth=0))
