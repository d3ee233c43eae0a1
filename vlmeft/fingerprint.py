"""Fingerprints of the code and data a committed result was made from.

A committed result file (``results/conformance.json``, ``results/robustness.json``)
stores the fingerprint of what produced it; a test recomputes it from the current tree,
so a result made by older code fails loudly instead of being shown as current.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def files(root: Path, label: str, patterns: Iterable[str] = ("**/*.py",)) -> list[tuple[str, Path]]:
    """``(label/relative path, path)`` of every file under ``root`` matching ``patterns``
    (caches excluded), so a fingerprint does not depend on where the tree lives."""
    found = {p for pattern in patterns for p in root.glob(pattern) if p.is_file() and "__pycache__" not in p.parts}
    return [(f"{label}/{p.relative_to(root).as_posix()}", p) for p in sorted(found)]


def fingerprint(sources: Iterable[tuple[str, Path]], data: Any = None) -> str:
    """A short hash of the named files' bytes (a missing file counts as missing) and of
    ``data`` (anything JSON can write, keys sorted)."""
    digest = hashlib.sha256()
    for label, path in sorted(sources):
        digest.update(label.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
        digest.update(b"\0")
    if data is not None:
        digest.update(json.dumps(data, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]
