"""The benchmark's progress line, the same for every executor: cells finished (of all,
counting those a previous run finished), running, failed, elapsed time and an ETA.

    bench quick: 12/40 cells |#####       | [00:35<01:20, running 2, failed 1]

The ETA is tqdm's: the cells still to run at the recent rate of finishing ones (cells
finished by an earlier run do not count towards the rate).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Progress:
    def __init__(self, label: str, total: int, finished: int, *, enabled: bool = True,
                 file: TextIO | None = None) -> None:
        from tqdm.auto import tqdm

        self.running = 0
        self.failed = 0
        self._file = file or sys.stderr
        self._bar: Any = tqdm(total=total, initial=finished, desc=label, disable=not enabled, file=self._file, dynamic_ncols=True,
                              bar_format="{desc}: {n_fmt}/{total_fmt} cells |{bar}| [{elapsed}<{remaining}{postfix}]")
        self._show()

    def _show(self) -> None:
        self._bar.set_postfix_str(f"running {self.running}, failed {self.failed}", refresh=True)

    def set_running(self, n: int) -> None:
        if n != self.running:
            self.running = n
            self._show()

    def finished(self, label: str, error: str | None = None) -> None:
        """One cell ended: with a row, or with ``error`` (printed above the bar)."""
        if error is not None:
            self.failed += 1
            self._bar.write(f"failed: {label}: {error}", file=self._file)
        self._bar.update(1)
        self._show()

    def close(self) -> None:
        self._bar.close()
