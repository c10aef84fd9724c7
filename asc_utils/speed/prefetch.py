"""Work ahead in the background: `prefetch(fn, items)` yields fn(item) in order while the next items are already computed.

Reading and decoding the wav files of the next batch (soundfile and torch release the GIL while they work) then overlaps
with the network's computation on the current one. At most `depth` results wait in memory; an exception raised by fn for
an item is raised when that item's turn comes, so errors name the same file as without prefetching.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch(fn: Callable[[T], R], items: Iterable[T], depth: int = 2, workers: int = 1) -> Iterator[R]:
    """fn(item) for every item, in order, computed up to `depth` items ahead by `workers` background threads."""
    if depth < 1 or workers < 1:
        raise ValueError(f"prefetch needs depth >= 1 and workers >= 1; got depth={depth}, workers={workers}.")
    pending: deque[Future] = deque()
    source = iter(items)
    with ThreadPoolExecutor(workers, thread_name_prefix="prefetch") as pool:
        try:
            for item in source:
                pending.append(pool.submit(fn, item))
                if len(pending) > depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # a consumer that stops early (or an error) cancels what has not started
            for future in pending:
                future.cancel()
