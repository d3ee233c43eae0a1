"""Measured results the site reports: the conformance matrix and benchmark rows.

Both are optional: a missing file means "not measured yet", not an error. A file that
exists but is malformed is an error naming the file, so a broken result never
silently disappears from the site.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmeft.errors import VlmeftError

CONFORMANCE_STATUSES = ("pass", "fail", "na")
# Metric fields a benchmark row may carry (see vlmeft.bench.protocols), in display order:
# classification / source accuracy (grounding: pointing accuracy), base-to-novel, cross-domain
# (per-domain values live in the row's ``domains`` object), retrieval, grounding's chance level.
METRICS = ("accuracy", "base", "novel", "hm", "shifted_mean",
           "r1", "r5", "i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5", "chance")


@dataclass
class Conformance:
    """The matrix: one cell per (method, check, backbone).

    ``backbone`` is the file's default backbone (a cell without its own ``backbone`` field
    belongs to it); ``backbone_notes`` says what each backbone is (its weights)."""

    backbone: str | None = None
    cells: list[dict[str, Any]] = field(default_factory=list)
    source: Path | None = None
    backbone_notes: dict[str, str] = field(default_factory=dict)
    check_order: list[str] = field(default_factory=list)  # the file's ``checks`` list, when it has one

    @property
    def measured(self) -> bool:
        return self.source is not None

    def for_method(self, method_id: str, backbone: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.cells if c["method"] == method_id and (backbone is None or c["backbone"] == backbone)]

    @property
    def checks(self) -> list[str]:
        """Checks in the file's order, then any it does not list, sorted."""
        present = {c["check"] for c in self.cells}
        return [c for c in dict.fromkeys(self.check_order) if c in present] + sorted(present - set(self.check_order))

    @property
    def methods(self) -> list[str]:
        return sorted({c["method"] for c in self.cells})

    @property
    def backbones(self) -> list[str]:
        """Backbones in the file's order (its ``backbones`` object first, then first use)."""
        return list(dict.fromkeys([b for b in self.backbone_notes if any(c["backbone"] == b for c in self.cells)]
                                  + [c["backbone"] for c in self.cells]))

    def index(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """Cells by (method, check, backbone): the key that keeps backbones apart."""
        return {(c["method"], c["check"], c["backbone"]): c for c in self.cells}

    def counts(self, backbone: str | None = None) -> dict[str, int]:
        """Cells per status (every status present, zeros included), for one backbone or all."""
        cells = self.cells if backbone is None else [c for c in self.cells if c["backbone"] == backbone]
        return {s: sum(c["status"] == s for c in cells) for s in CONFORMANCE_STATUSES}


@dataclass
class Bench:
    rows: list[dict[str, Any]] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return bool(self.rows)

    def for_method(self, method_id: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["method"] == method_id]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VlmeftError(f"cannot read results JSON: {err}", where=str(path)) from None


def load_conformance(results_dir: Path | None) -> Conformance:
    """``results_dir/conformance.json``, or an empty (unmeasured) matrix."""
    if results_dir is None or not (results_dir / "conformance.json").is_file():
        return Conformance()
    path = results_dir / "conformance.json"
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise VlmeftError("expected an object with a 'cells' list", where=str(path))
    default = data.get("backbone")
    default = str(default) if default is not None else ""
    cells = []
    for i, cell in enumerate(data["cells"]):
        where = f"{path} cells[{i}]"
        if not isinstance(cell, dict) or not all(isinstance(cell.get(k), str) for k in ("method", "check")):
            raise VlmeftError("a cell needs string fields 'method' and 'check'", where=where)
        if cell.get("status") not in CONFORMANCE_STATUSES:
            raise VlmeftError(f"status must be one of {', '.join(CONFORMANCE_STATUSES)}", where=where)
        if cell.get("backbone") is not None and not isinstance(cell["backbone"], str):
            raise VlmeftError("a cell's 'backbone' must be a string", where=where)
        cells.append({"method": cell["method"], "check": cell["check"], "status": cell["status"],
                      "reason": str(cell.get("reason") or ""), "backbone": cell.get("backbone") or default})
    notes = data.get("backbones")
    notes = {str(k): str(v) for k, v in notes.items()} if isinstance(notes, dict) else {}
    order = data.get("checks")
    order = [str(c) for c in order] if isinstance(order, list) else []
    return Conformance(backbone=default or None, cells=cells, source=path, backbone_notes=notes, check_order=order)


def load_robustness(results_dir: Path | None) -> dict[str, Any] | None:
    """``results_dir/robustness.json`` (written by ``python -m vlmeft.robustness``), or None."""
    path = results_dir / "robustness.json" if results_dir is not None else None
    if path is None or not path.is_file():
        return None
    data = _read_json(path)
    counts = ("inputs_tried", "refused", "accepted", "failures")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), int) for k in counts) \
            or not isinstance(data.get("by_kind"), dict):
        raise VlmeftError(f"expected an object with integer {', '.join(counts)} and a 'by_kind' object", where=str(path))
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def load_bench(results_dir: Path | None) -> Bench:
    """All rows of ``results_dir/bench/*.json`` (each file a list of rows or {"rows": [...]})."""
    bench = Bench()
    folder = results_dir / "bench" if results_dir is not None else None
    if folder is None or not folder.is_dir():
        return bench
    for path in sorted(folder.glob("*.json")):
        data = _read_json(path)
        rows = data.get("rows") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise VlmeftError("expected a list of rows (or an object with 'rows')", where=str(path))
        for i, row in enumerate(rows):
            where = f"{path} [{i}]"
            if not isinstance(row, dict) or not isinstance(row.get("method"), str):
                raise VlmeftError("a row needs a string field 'method'", where=where)
            clean = dict(row)
            for key in (*METRICS, "train_seconds", "trainable_params", "seed"):
                if key in clean:
                    clean[key] = _number(clean[key])
            if isinstance(clean.get("domains"), dict):
                clean["domains"] = {str(d): x for d, v in clean["domains"].items() if (x := _number(v)) is not None}
            else:
                clean.pop("domains", None)
            shots = _number(clean.get("shots"))
            if shots is None or shots < 0 or shots != int(shots):
                raise VlmeftError("a row needs a non-negative integer 'shots' (0 = zero-shot)", where=where)
            clean["shots"] = int(shots)
            clean.setdefault("task", "")
            clean.setdefault("protocol", "")
            bench.rows.append(clean)
        bench.sources.append(path)
    return bench
