"""The results file of one benchmark version: finished cells, written one at a time.

A run appends each finished cell to ``<out>/<version>.json`` as soon as the cell ends,
by rewriting the whole file through a temp file and ``os.replace``: a reader (or a
rerun after SIGKILL) sees either the file before the cell or the file after it, never
a torn one. An advisory ``fcntl`` lock serialises writers, so two runs sharing an
output folder merge their cells instead of overwriting each other; the kernel drops
the lock when a process dies, however it dies.

File layout (the site reads ``rows``; everything else is provenance)::

    {"schema": 1, "profile": "full", "config_hash": "...", "config": {...},
     "rows": [ {one row per finished cell}, ... ],
     "failures": [ {"cell": {...}, "error": "..."}, ... ]}

A failed cell is recorded under ``failures`` (never as a row) and retried on a rerun.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmeft.errors import VlmeftError

SCHEMA = 1
_TMP_PREFIX = ".bench-"
_TMP_SUFFIX = ".tmp"


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

    def add_failure(self, cell: dict[str, Any], error: str) -> None:
        key = cell_key(cell)
        with self._locked():
            doc = self.read()
            doc["failures"] = [f for f in doc.get("failures", []) if cell_key(f["cell"]) != key]
            doc["failures"].append({"cell": cell, "error": error})
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
