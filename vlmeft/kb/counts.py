"""How many records a taxonomy node holds, counted one way everywhere.

A record sits under one node as its primary ``category`` and may appear under others through
``secondary_categories``. ``vlmeft tree``, the site's taxonomy pages and the README all count
with :func:`member_count` and print :meth:`MemberCount.label`, so the terminal and the site
never disagree about what a number means ("4 + 1 secondary", not a bare 5 here and 4 there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmeft.kb.load import is_under


@dataclass(frozen=True)
class MemberCount:
    primary: int  # records whose primary category is the node or a leaf below it
    secondary: int  # further records placed there only through secondary_categories

    @property
    def total(self) -> int:
        return self.primary + self.secondary

    @property
    def label(self) -> str:
        """``"4"``, or ``"4 + 1 secondary"`` when secondary placements add records."""
        return f"{self.primary} + {self.secondary} secondary" if self.secondary else str(self.primary)


def secondary_members(kb: Any, node_id: str) -> list[Any]:
    """Records placed under ``node_id`` only through ``secondary_categories`` (sorted by id)."""
    kb.categories.node(node_id)  # an unknown id is an error, as in kb.members
    return [r for _, r in sorted(kb.methods.items())
            if not is_under(r.category, node_id)
            and any(is_under(c, node_id) for c in r.secondary_categories or [])]


def member_count(kb: Any, node_id: str) -> MemberCount:
    """Primary and secondary-only members of ``node_id`` (a family, type or leaf)."""
    return MemberCount(len(kb.members(node_id)), len(secondary_members(kb, node_id)))
