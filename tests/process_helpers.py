"""Finding this test's own worker processes (Linux /proc), to kill one by its pid.

Only descendants of the test process are considered, so a test on a shared machine can
never signal another user's Ray or Python workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])  # the field after the state, past "(comm)"


def cmdline(pid: int) -> str:
    """The process's command line (Ray workers rename theirs to ``ray::<task name>``)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def descendants(root: int | None = None) -> dict[int, str]:
    """pid -> command line of every live descendant of ``root`` (default: this process)."""
    root = root or os.getpid()
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = _parent(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    found: dict[int, str] = {}
    frontier = {root}
    while frontier:
        children = {p for p, parent in parents.items() if parent in frontier and p not in found}
        found.update({p: cmdline(p) for p in children})
        frontier = children
    return found


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
