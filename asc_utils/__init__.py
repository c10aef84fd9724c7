"""asc_utils: helpers for the low-complexity acoustic scene classification tutorial (SNTL-NTU, DCASE2025 Task 1).

Importing the package loads nothing else and changes no process setting; import the modules you need.
"""

__version__ = "0.1.0"
