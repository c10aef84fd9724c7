"""asc_utils: helpers for the low-complexity acoustic scene classification tutorial (SNTL-NTU, DCASE2025 Task 1)."""

from asc_utils.cpu import tune_allocator

__version__ = "0.1.0"

tune_allocator()  # freed tensor memory is reused instead of page-faulted in again (see asc_utils.cpu)
