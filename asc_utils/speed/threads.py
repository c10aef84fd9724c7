"""Whole chunks of a batch per thread: `map_chunks`, the parallel loop of the fast front end and the folded network."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch


def map_chunks(fn: Callable[[torch.Tensor], torch.Tensor], chunks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """[fn(c) for c in chunks], on CPU spread over torch.get_num_threads() threads that each run one chunk single-threaded.

    Many small operators parallelised inside each operator (PyTorch's default) wait for every thread at every operator;
    when another program holds one of the cores, every operator waits for it (benchmarks/RESULTS.md). Whole chunks
    per thread have no such barriers. The result is the same as the sequential loop.
    """
    threads = torch.get_num_threads()
    if threads <= 1 or len(chunks) <= 1 or chunks[0].device.type != "cpu":
        return [fn(c) for c in chunks]
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def run(chunk: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):  # both are per thread
            return fn(chunk)

    torch.set_num_threads(1)  # read by each new worker thread on its first operator
    try:
        with ThreadPoolExecutor(min(threads, len(chunks))) as pool:
            return list(pool.map(run, chunks))
    finally:
        torch.set_num_threads(threads)
