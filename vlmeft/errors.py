"""One error type for every user-facing failure.

The CLI turns a :class:`VlmeftError` into a single line on stderr and exit code 2,
never a traceback. Raise it with a message that names the file, line or field.
"""

from __future__ import annotations

import re

# Characters that would break the one-line promise or act on the terminal when printed:
# C0/C1 controls (newlines, ESC sequences), Unicode line separators and bidirectional
# controls. Messages often quote user input (a key name, a value), so they are escaped.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """``text`` with every control, line-break and bidi character shown as an escape."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class VlmeftError(Exception):
    """A user-facing error: bad input, a missing file, an unknown id."""

    exit_code: int = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = one_line(where) if where is not None else None
        message = one_line(str(message))
        super().__init__(f"{self.where}: {message}" if self.where else message)


class DatasetMissing(VlmeftError):
    """A dataset's folder or marker files are not where they were looked for (``where``):
    the benchmark skips that dataset and goes on with the rest."""
