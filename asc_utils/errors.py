"""The one base class of every error a user can fix; the `asc` command prints its message instead of a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or files; the message says what was expected, what was found and what to do."""
