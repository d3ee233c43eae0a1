"""The results file of one benchmark version: finished cells, written one at a time.

A run appends each finished cell to ``<out>/<version>.json`` as soon as the cell ends,
by rewriting the whole file through a temp file and ``os.replace``: a reader (or a
rerun after SIGKILL) sees either the file before the cell or the file after it, never
a torn one. Two ``fcntl`` locks, both dropped by the kernel when their process dies,
however it dies (so a killed run never leaves a stale lock):

- the *driver lock* (:class:`DriverLock`, ``<out>/.bench-driver.lock``): one driver per
  results folder, whichever executor it uses. A second driver gets a one-line error
  naming the first (pid, host, executor) at once, instead of running the same cells
  again and merging them silently;
- the *write lock* (per results file): serialises the rewrites, so a tool that writes
  rows outside a driver cannot lose the driver's.

File layout (the site reads ``rows``; everything else is provenance)::

    {"schema": 1, "profile": "full", "config_hash": "...", "config": {...},
     "rows": [ {one row per finished cell}, ... ],
     "failures": [ {"cell": {...}, "error": "..."}, ... ]}

A failed cell is recorded under ``failures`` (never as a row) and retried on a rerun.
Rows and failures carry ``ran_on``: which executor, node, process and attempt ran the
cell (:data:`RUN_FIELDS` lists what may differ between executors: timing and ``ran_on``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmeft.errors import VlmeftError

SCHEMA = 1
_TMP_PREFIX = ".bench-"
_TMP_SUFFIX = ".tmp"


# Fields of a row that say how its cell ran, not what it measured: they differ between
# executors and runs; every other field is the same whichever executor ran the cell.
RUN_FIELDS = ("train_seconds", "cell_seconds", "cell_cpu_seconds", "ran_on")


def measured(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` without :data:`RUN_FIELDS`: what any executor must reproduce."""
    return {k: v for k, v in row.items() if k not in RUN_FIELDS}


def cell_key(row: dict[str, Any]) -> tuple:
    """What identifies a cell: the fields that decide its result."""
    return (row["method"], row["task"], row["protocol"], int(row["shots"]), int(row["seed"]),
            row["backbone"], row.get("backbone_weights", ""))


class ResultStore:
    """One versioned results file and its lock."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.header = dict(header)  # schema, profile, config_hash, config, ...
        self._lock_path = self.path.with_name(f".{self.path.name}.lock")

    # ------------------------------------------------------------------ reading
    def read(self) -> dict[str, Any]:
        """The file's content (an empty document when the file does not exist yet)."""
        return read_results(self.path) if self.path.is_file() else {**self.header, "rows": [], "failures": []}

    def finished(self) -> set[tuple]:
        return {cell_key(r) for r in self.read()["rows"]}

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def clean_stale_temps(self) -> int:
        """Remove temp files left by a writer killed mid-write (only ours, under the lock)."""
        removed = 0
        if not self.path.parent.is_dir():
            return 0
        with self._locked():
            for tmp in self.path.parent.glob(f"{_TMP_PREFIX}{self.path.stem}*{_TMP_SUFFIX}"):
                with contextlib.suppress(OSError):
                    tmp.unlink()
                    removed += 1
        return removed

    def add_row(self, row: dict[str, Any]) -> None:
        """Record a finished cell (replacing an earlier row or failure of the same cell)."""
        key = cell_key(row)
        with self._locked():
            doc = self.read()
            doc["rows"] = [r for r in doc["rows"] if cell_key(r) != key] + [row]
            doc["failures"] = [f for f in doc.get("failures", []) if cell_key(f["cell"]) != key]
            self._write(doc)

    def add_failure(self, cell: dict[str, Any], error: str, ran_on: dict[str, Any] | None = None) -> None:
        key = cell_key(cell)
        failure: dict[str, Any] = {"cell": cell, "error": error}
        if ran_on:
            failure["ran_on"] = ran_on
        with self._locked():
            doc = self.read()
            doc["failures"] = [f for f in doc.get("failures", []) if cell_key(f["cell"]) != key]
            doc["failures"].append(failure)
            self._write(doc)

    def _write(self, doc: dict[str, Any]) -> None:
        doc = {**doc, **self.header}  # the header of this version always wins
        doc["rows"] = sorted(doc["rows"], key=_row_order)
        ordered = {k: doc[k] for k in ("schema", "profile", "config_hash", "vlmeft_version") if k in doc}
        ordered.update({k: v for k, v in doc.items() if k not in ordered and k not in ("rows", "failures")})
        ordered["rows"] = doc["rows"]
        ordered["failures"] = doc.get("failures", [])
        text = json.dumps(ordered, indent=1, sort_keys=False, allow_nan=False) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f"{_TMP_PREFIX}{self.path.stem}", suffix=_TMP_SUFFIX)
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; results are meant to be shared
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class DriverLock:
    """One benchmark driver per results folder, held for the whole run.

    A non-blocking ``flock`` on ``<folder>/.bench-driver.lock``: a second driver on the
    same folder (of either executor) fails at once with a :class:`VlmeftError` naming the
    holder, which the lock file describes (pid, host, executor, start time). The kernel
    releases the lock when the holder exits or is killed. ``flock`` is honoured on local
    filesystems and across NFSv4 clients (Linux maps it onto NFS byte-range locks).
    """

    NAME = ".bench-driver.lock"

    def __init__(self, folder: Path, executor: str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self.executor = executor
        self._fh: Any = None

    def __enter__(self) -> DriverLock:
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until __exit__)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = _holder(fh.read())
            fh.close()
            raise VlmeftError(f"another vlmeft bench {holder} is writing this results folder; wait for it to "
                              "end, or use another --out", where=str(self.folder)) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "executor": self.executor,
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()  # closing drops the flock
            self._fh = None


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"(pid {info['pid']} on {info['host']}, executor {info['executor']}, since {info['started']})"
    except (ValueError, KeyError, TypeError):
        return "(holder unknown)"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _row_order(row: dict[str, Any]) -> tuple:
    return (row["protocol"], row["task"], row["method"], row["shots"], row["seed"], row["backbone"])


def read_results(path: Path) -> dict[str, Any]:
    """A results file written by :class:`ResultStore`; a malformed one is an error naming it."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VlmeftError(f"cannot read benchmark results: {err}", where=str(path)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise VlmeftError("expected an object with a 'rows' list", where=str(path))
    if doc.get("schema") != SCHEMA:
        raise VlmeftError(f"results schema {doc.get('schema')!r} is not {SCHEMA}", where=str(path))
    for i, row in enumerate(doc["rows"]):
        try:
            cell_key(row)
        except (KeyError, TypeError, ValueError):
            raise VlmeftError("row lacks a cell field (method, task, protocol, shots, seed, backbone)",
                              where=f"{path} rows[{i}]") from None
    doc.setdefault("failures", [])
    return doc


def results_files(folder: Path) -> list[Path]:
    """The benchmark results files directly inside ``folder`` (the site reads the same glob)."""
    folder = Path(folder)
    return sorted(p for p in folder.glob("*.json") if p.is_file()) if folder.is_dir() else []
