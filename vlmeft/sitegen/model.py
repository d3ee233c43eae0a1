"""What the site needs from the knowledge base, read through one narrow adapter.

The generator only touches the KB through this module, so a change in the KB's object
model is a change here. Category nodes are read tolerantly (``name``/``title``,
``definition``/``description``) because the site shows whatever text the tree holds.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmeft import registry

LEVELS = ("family", "type", "subtype")


def first_attr(obj: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` that ``obj`` has with a non-empty value (attribute or key)."""
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value not in (None, "", [], {}):
            return value
    return default


@dataclass
class Node:
    """One taxonomy node (family, type or subtype) as the site shows it."""

    id: str
    name: str
    level: str
    parent: str | None
    children: list[str] = field(default_factory=list)
    definition: str = ""
    provenance: Any = None  # a kb Provenance (survey, reconstruction, supported_by, ...) or text
    signature_text: str = ""
    signature: Any = None  # a kb Signature: the behavioural signature conformance checks

    @property
    def is_leaf(self) -> bool:
        return not self.children


@dataclass
class Implementation:
    """A registry entry's source, read as text (never imported)."""

    id: str
    module: str  # dotted path under vlmeft.methods
    class_name: str
    path: Path
    source: str | None  # None: the module does not exist yet
    docstring: str = ""

    @property
    def exists(self) -> bool:
        return self.source is not None

    @property
    def repo_path(self) -> str:
        return "methods/" + self.module.replace(".", "/") + ".py"


def _walk(raw: Any, parent: str | None, depth: int, out: dict[str, Node]) -> None:
    """Flatten a node object (and its children) into ``out``."""
    node_id = str(first_attr(raw, "id"))
    kids = first_attr(raw, "children", "types", "subtypes", default=[])
    if isinstance(kids, dict):
        kids = list(kids.values())
    level = first_attr(raw, "level", "kind", default=LEVELS[min(depth, 2)])
    node = Node(
        id=node_id,
        name=str(first_attr(raw, "name", "title", "label", default=node_id)),
        level=str(level),
        parent=parent,
        definition=str(first_attr(raw, "definition", "description", "summary", default="")),
        provenance=first_attr(raw, "provenance", default=None),
        signature_text=str(first_attr(raw, "signature_text", default="")),
        signature=first_attr(raw, "signature", default=None),
    )
    out[node_id] = node
    for kid in kids:
        node.children.append(str(first_attr(kid, "id")))
        _walk(kid, node_id, depth + 1, out)


def taxonomy_nodes(kb: Any) -> dict[str, Node]:
    """All category nodes in tree order (families, then their types and subtypes)."""
    cats = kb.categories
    families = first_attr(cats, "families", "roots", "tree", default=None)
    if families is None:
        families = cats if isinstance(cats, list) else []
    if isinstance(families, dict):
        families = list(families.values())
    out: dict[str, Node] = {}
    for fam in families:
        _walk(fam, None, 0, out)
    return out


def leaves_under(nodes: dict[str, Node], node_id: str) -> list[str]:
    """Leaf ids at or below ``node_id``, in tree order."""
    node = nodes[node_id]
    if node.is_leaf:
        return [node_id]
    return [leaf for kid in node.children for leaf in leaves_under(nodes, kid)]


def members(kb: Any, nodes: dict[str, Node], node_id: str) -> list[Any]:
    """Records placed in ``node_id`` or a leaf below it, as primary or secondary category."""
    leaves = set(leaves_under(nodes, node_id))
    return [rec for _, rec in sorted(kb.methods.items())
            if rec.category in leaves or leaves.intersection(rec.secondary_categories or [])]


def references(kb: Any) -> dict[str, Any]:
    """The works the taxonomy's provenance cites, by id."""
    refs = first_attr(kb.categories, "references", default=None) or first_attr(kb, "references", default=[])
    if isinstance(refs, dict):
        return {str(k): v for k, v in refs.items()}
    return {str(first_attr(r, "id")): r for r in refs or []}


def signature_keys(kb: Any) -> dict[str, Any]:
    """What each behavioural-signature key means (categories.yaml ``signature_keys``)."""
    cats = kb.categories
    return first_attr(cats, "signature_keys", default=None) or first_attr(
        getattr(cats, "data", {}), "signature_keys", default={}) or {}


def topics(kb: Any) -> dict[str, Any]:
    """Topic pages of the KB (stability and ethics, future directions, ...), by id."""
    raw = first_attr(kb, "topics", default=None)
    return dict(named_items(raw)) if raw is not None else {}


def methods_root() -> Path:
    """The folder that holds the method modules (the vlmeft.methods package)."""
    import importlib.util

    import vlmeft

    spec = importlib.util.find_spec("vlmeft.methods")  # imports only vlmeft.methods' docstring __init__
    if spec is not None and spec.origin:
        return Path(spec.origin).resolve().parent
    return Path(vlmeft.__file__).resolve().parents[1] / "methods"  # a source checkout


def implementation(impl_id: str, root: Path | None = None) -> Implementation | None:
    """The registry entry ``impl_id`` with its source text, or None if not registered."""
    found = registry.location(impl_id)
    if found is None:
        return None
    module, class_name = found
    path = (root or methods_root()) / (module.replace(".", "/") + ".py")
    source = path.read_text(encoding="utf-8") if path.is_file() else None
    doc = _class_docstring(source, class_name) if source else ""
    return Implementation(impl_id, module, class_name, path, source, doc)


def _class_docstring(source: str, class_name: str) -> str:
    """The docstring of ``class_name`` in ``source``, parsed without importing it."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return ast.get_docstring(node) or ""
    return ""


def category_reference(leaf_id: str) -> str | None:
    """The registry id of a leaf's reference implementation."""
    return registry.CATEGORY_REFERENCE.get(leaf_id)


def display_name(rec: Any) -> str:
    """The short name a reader knows a method by: its first alias, else its id."""
    aliases = first_attr(rec, "aliases", default=[]) or []
    return str(aliases[0]) if aliases else str(rec.id)


def named_items(coll: Any) -> list[tuple[str, Any]]:
    """(id, item) pairs from a dict, a list of objects with ``id``, or an object with ``items``."""
    if coll is None:
        return []
    if hasattr(coll, "items") and callable(coll.items):
        return [(str(k), v) for k, v in coll.items()]
    inner = first_attr(coll, "tasks", "paradigms", "items", default=None)
    if inner is not None and inner is not coll:
        return named_items(inner)
    return [(str(first_attr(item, "id")), item) for item in coll]
