"""asc_utils: helpers for the low-complexity acoustic scene classification tutorial (SNTL-NTU, DCASE2025 Task 1)."""

__version__ = "0.1.0"
