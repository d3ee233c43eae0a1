"""The inputs every page renderer shares, and the generated-page paths and links."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmeft.sitegen import markup as md
from vlmeft.sitegen.model import Node, display_name, taxonomy_nodes
from vlmeft.sitegen.results import Bench, Conformance

GEN = "generated"  # folder under docs_dir that holds every generated file


def method_path(method_id: str) -> str:
    return f"{GEN}/methods/{method_id}.md"


def node_path(node_id: str) -> str:
    return f"{GEN}/taxonomy/{node_id}.md"


PATHS = {
    "taxonomy": f"{GEN}/taxonomy/index.md",
    "methods": f"{GEN}/methods/index.md",
    "bibliography": f"{GEN}/bibliography.md",
    "conformance": f"{GEN}/conformance.md",
    "benchmark": f"{GEN}/benchmark.md",
    "leaderboard": f"{GEN}/leaderboard/index.md",
    "paradigms": f"{GEN}/paradigms.md",
    "tasks": f"{GEN}/tasks.md",
    "schema": f"{GEN}/schema.md",
    "tags": f"{GEN}/tags.md",
    "robustness": f"{GEN}/robustness.md",
    "bib": f"{GEN}/vlmeft.bib",
    "csl": f"{GEN}/vlmeft.csl.json",
}

NOT_MEASURED = "Not measured yet."


def rel(src: str, dst: str) -> str:
    """A relative Markdown link target from page ``src`` to file ``dst`` (docs_dir paths)."""
    return posixpath.relpath(dst, posixpath.dirname(src) or ".")


@dataclass
class Context:
    """The KB plus measured results, and helpers to link between generated pages."""

    kb: Any
    cite: Any  # the vlmeft.kb.cite module (bibtex, csl_json, text)
    conformance: Conformance
    bench: Bench
    methods_root: Path | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    schema: dict[str, Any] | None = None
    robustness: dict[str, Any] | None = None  # results/robustness.json (None: not measured)
    suite_rows: list[dict[str, Any]] = field(default_factory=list)  # results/coop/*.json (the CoOp suite)

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes = taxonomy_nodes(self.kb)

    @property
    def methods(self) -> list[Any]:
        return [self.kb.methods[k] for k in sorted(self.kb.methods)]

    def method_link(self, src: str, rec: Any, label: str | None = None) -> str:
        shown = md.text(label if label is not None else display_name(rec))
        return f"[{shown}]({rel(src, method_path(rec.id))})"

    def method_id_link(self, src: str, method_id: str) -> str:
        rec = self.kb.methods.get(method_id)
        return self.method_link(src, rec) if rec is not None else md.code(method_id)

    def node_link(self, src: str, node_id: str | None) -> str:
        if not node_id:
            return "baseline (no category)"
        node = self.nodes.get(node_id)
        if node is None:
            return md.code(node_id)
        return f"[{md.text(node.name)}]({rel(src, node_path(node_id))}) ({md.code(node_id)})"

    def page_link(self, src: str, key: str, label: str, anchor: str = "") -> str:
        target = rel(src, PATHS[key]) + (f"#{anchor}" if anchor else "")
        return f"[{md.text(label)}]({target})"
