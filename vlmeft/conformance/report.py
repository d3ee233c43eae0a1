"""Render matrix cells as JSON (for the site and tools) or Markdown / plain tables.

JSON shape (``results/conformance.json``)::

    {"backbone": "<first backbone>", "backbones": {"<name>": "<weights note>", ...},
     "checks": [...], "shared": [{"method": "<record>", "uses": "<implementation>"}, ...],
     "variants": {"<id>:<variant>": {"method": "<id>", "settings": {...}}, ...},
     "summary": {"pass": n, "fail": n, "na": n},
     "fingerprint": "<hash of the code and data that made it>",
     "selection": {"backbones": [...], "methods": null | [...]},
     "cells": [{"method", "check", "backbone", "status", "reason"}, ...]}

Several backbones go in one file: every cell names its ``backbone``; a variant row's
``method`` is ``<id>:<variant>``. :func:`fingerprint` hashes what the cells depend on
(the conformance code, the method modules and the code they share, the backbones and
their weights, the taxonomy's signatures and the records' rows), so a test can tell a
committed file made by other code.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlmeft.conformance.matrix import CHECKS, Cell
from vlmeft.errors import VlmeftError

SYMBOL = {"pass": "✓", "fail": "✗", "na": "n/a"}


# What the cells depend on, besides the method modules: package-relative paths and globs.
_CODE = ("conformance/*.py", "method.py", "registry.py", "prompting.py", "adapters_common.py", "errors.py",
         "engine/checkpoint.py", "data/loading.py", "data/types.py", "kb/schema.py",
         "backbone/**/*.py", "backbone/**/*.json", "backbone/**/*.safetensors")


def fingerprint(kb: Any, backbones: Sequence[str], methods: Sequence[str] | None = None) -> str:
    """The hash of the code and data behind a matrix run (see the module docstring)."""
    import vlmeft
    from vlmeft import registry
    from vlmeft.fingerprint import files
    from vlmeft.fingerprint import fingerprint as digest

    sources = files(Path(vlmeft.__file__).resolve().parent, "vlmeft", _CODE) + files(registry.methods_root(), "methods")
    rows = {r.id: {"category": r.category, "implementation": r.implementation.model_dump() if r.implementation else None,
                   "parameters": r.parameters.model_dump() if r.parameters else None, "tasks": list(r.tasks)}
            for r in kb.methods.values()}
    leaves = {leaf: kb.categories.leaf(leaf).signature.model_dump() for leaf in kb.categories.leaf_ids}
    selection = {"backbones": list(backbones), "methods": list(methods) if methods is not None else None}
    return digest(sources, {"records": rows, "signatures": leaves, "selection": selection})


def to_json(cells: Sequence[Cell], backbones: dict[str, str], shared: Sequence[tuple[str, str]],
            variants: dict[str, dict[str, Any]] | None = None, *, fingerprint: str | None = None,
            selection: dict[str, Any] | None = None) -> dict:
    names = list(backbones) or sorted({c.backbone for c in cells})
    return {
        "backbone": names[0] if names else None,
        "backbones": dict(backbones),
        "checks": list(CHECKS),
        "shared": [{"method": m, "uses": impl} for m, impl in shared],
        "variants": dict(variants or {}),
        "summary": {s: sum(c.status == s for c in cells) for s in ("pass", "fail", "na")},
        "fingerprint": fingerprint,
        "selection": selection,
        "cells": [c.to_dict() for c in cells],
    }


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(cells: Sequence[Cell], backbones: dict[str, str], shared: Sequence[tuple[str, str]]) -> str:
    """One table per backbone (methods × checks), then the reason behind every ✗ and n/a."""
    lines = ["# Conformance matrix", "",
             "Each implemented method is run on real (tiny) models and checked against its "
             "taxonomy leaf's behavioural signature and the generic checks. "
             "✓ pass · ✗ fail · n/a not applicable (reasons below each table).", ""]
    by_backbone: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        by_backbone[c.backbone].append(c)
    for name, group in by_backbone.items():
        checks = [k for k in CHECKS if any(c.check == k for c in group)]
        methods = list(dict.fromkeys(c.method for c in group))
        grid = {(c.method, c.check): c for c in group}
        lines += [f"## {name}", "", f"Weights: {_esc(backbones.get(name, 'unknown'))}.", ""]
        header = ["method"] + [f"`{k.replace('signature.', 'sig: ')}`" for k in checks]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for m in methods:
            row = [f"`{m}`"] + [SYMBOL[grid[(m, k)].status] if (m, k) in grid else "" for k in checks]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        notes = [c for c in group if c.status != "pass"]
        if notes:
            lines += ["Reasons:", ""]
            for c in notes:
                lines.append(f"- `{c.method}` · `{c.check}` ({SYMBOL[c.status]}): {_esc(c.reason)}")
            lines.append("")
    if shared:
        lines += ["## Records that share a reference implementation", "",
                  "These records have no code of their own (fidelity `category-reference`); "
                  "they share the cells of their leaf's reference implementation.", ""]
        for m, impl in shared:
            lines.append(f"- `{m}` → `{impl}`")
        lines.append("")
    return "\n".join(lines)


def to_table(cells: Sequence[Cell]) -> str:
    """Plain text for the terminal: counts per method and backbone, then every failure."""
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for c in cells:
        counts[(c.method, c.backbone)][c.status] += 1
    width = max([len(m) for m, _ in counts] + [6])
    bwidth = max([len(b) for _, b in counts] + [8])
    out = [f"{'method':<{width}}  {'backbone':<{bwidth}}  pass  fail    na"]
    for (m, b), n in counts.items():
        out.append(f"{m:<{width}}  {b:<{bwidth}}  {n['pass']:>4}  {n['fail']:>4}  {n['na']:>4}")
    fails = [c for c in cells if c.status == "fail"]
    total = Counter(c.status for c in cells)
    out.append("")
    out.append(f"{len(cells)} cells: {total['pass']} pass, {total['fail']} fail, {total['na']} n/a")
    for c in fails:
        out.append(f"FAIL {c.method} [{c.backbone}] {c.check}: {c.reason}")
    return "\n".join(out)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are published results
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write(directory: str | Path, cells: Sequence[Cell], backbones: dict[str, str],
          shared: Sequence[tuple[str, str]], doc: dict | None = None) -> list[Path]:
    """Write ``conformance.json`` (``doc``, default :func:`to_json` of the cells) and
    ``conformance.md`` into ``directory`` atomically."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise VlmeftError("not a directory", where=str(directory))
    paths = [directory / "conformance.json", directory / "conformance.md"]
    doc = doc if doc is not None else to_json(cells, backbones, shared)
    _atomic_write(paths[0], json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    _atomic_write(paths[1], to_markdown(cells, backbones, shared))
    return paths
