"""Counts the README and the site state about the knowledge base, computed from the data.

One function per fact, used by both (``vlmeft.readme`` and the site generator), so a new
record or method changes both and they can never disagree. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Counts:
    records: int  # method records in the knowledge base
    own_code: int  # records that run their own implementation (faithful or simplified)
    category_reference: int  # records that run their category's reference implementation
    implementations: int  # methods registered under methods/ (installed third-party ones excluded)
    families: dict[str, tuple[int, int]]  # family id -> (types, leaf categories)


def counts(kb: Any) -> Counts:
    from vlmeft import registry

    impls = [r.implementation for r in kb.methods.values() if r.implementation is not None]
    reference = sum(i.fidelity == "category-reference" for i in impls)
    tree = kb.categories
    families = {f.id: (len([t for t in tree.types if t.id.startswith(f.id + ".")]), len(tree.leaves_under(f.id)))
                for f in tree.families}
    builtin = [n for n in registry.names() if registry.entry(n).origin == registry.BUILTIN]
    return Counts(len(kb.methods), len(impls) - reference, reference, len(builtin), families)


def taxonomy_phrase(c: Counts) -> str:
    """E.g. "3 prompt types with 7 subtypes, 2 adapter types"."""
    parts = []
    for family, (types, leaves) in c.families.items():
        parts.append(f"{types} {family} types" + (f" with {leaves} subtypes" if leaves != types else ""))
    return ", ".join(parts)


def records_phrase(c: Counts) -> str:
    """E.g. "57 method records"."""
    return f"{c.records} method records"


def code_phrase(c: Counts) -> str:
    """E.g. "16 registered implementations; 16 of the 57 records run their own code, 41
    their category's reference implementation"."""
    return (f"{c.implementations} registered implementations; {c.own_code} of the {c.records} records run their own "
            f"code, {c.category_reference} their category's reference implementation")
