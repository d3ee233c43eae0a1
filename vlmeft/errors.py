"""One error type for every user-facing failure.

The CLI turns a :class:`VlmeftError` into a single line on stderr and exit code 2,
never a traceback. Raise it with a message that names the file, line or field.
"""

from __future__ import annotations


class VlmeftError(Exception):
    """A user-facing error: bad input, a missing file, an unknown id."""

    exit_code: int = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
