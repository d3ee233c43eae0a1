"""Selecting records: the filters behind ``vlmeft list`` and the scopes behind ``vlmeft cite``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from vlmeft.errors import VlmeftError
from vlmeft.kb.load import KnowledgeBase, suggest, is_under
from vlmeft.kb.schema import MAX_YEAR, MIN_YEAR, MethodRecord

_YEAR_RX = re.compile(r"^\s*(\d{4})?\s*(-|:|\.\.)?\s*(\d{4})?\s*$")


def parse_years(spec: str) -> tuple[int, int]:
    """``2022`` -> (2022, 2022); ``2021-2023``, ``2021:2023``, ``2022-`` and ``-2021`` are ranges."""
    m = _YEAR_RX.match(spec)
    if not m or not (m.group(1) or m.group(3)) or (m.group(2) is None and m.group(3)):
        raise VlmeftError(f"bad year '{spec}': give YYYY or a range such as 2021-2023", where="--year")
    lo = int(m.group(1)) if m.group(1) else MIN_YEAR
    hi = int(m.group(3)) if m.group(3) else (MAX_YEAR if m.group(2) else lo)
    if lo > hi:
        raise VlmeftError(f"bad year range '{spec}': start after end", where="--year")
    return lo, hi


def filter_records(
    kb: KnowledgeBase,
    *,
    category: str | None = None,
    venue_type: str | None = None,
    task: str | None = None,
    year: str | None = None,
    modality: str | None = None,
    paradigm: str | None = None,
) -> list[MethodRecord]:
    """Records matching every given filter, sorted by id.

    ``category`` matches the node and everything below it (``prompt.visual`` gives all
    three visual leaves); ``uncategorised`` selects the baselines. ``modality`` is
    ``text``, ``image`` or ``both``.
    """
    records = list(kb.methods.values())
    if category:
        if category == "uncategorised":
            records = [r for r in records if not r.category]
        else:
            kb.categories.node(category)  # unknown: an error with suggestions
            records = [r for r in records if is_under(r.category, category)]
    if venue_type:
        records = [r for r in records if r.venue_type == venue_type]
    if task:
        if task not in kb.tasks:
            raise VlmeftError(f"unknown task '{task}'{suggest(task, kb.tasks)}", where="--task")
        records = [r for r in records if task in r.tasks]
    if paradigm:
        if paradigm not in kb.paradigms:
            raise VlmeftError(f"unknown paradigm '{paradigm}'{suggest(paradigm, kb.paradigms)}", where="--paradigm")
        records = [r for r in records if r.paradigm == paradigm]
    if year:
        lo, hi = parse_years(year)
        records = [r for r in records if lo <= r.year <= hi]
    if modality:
        wanted = {"text"} if modality == "text" else {"image"} if modality == "image" else {"text", "image"}
        records = [r for r in records if wanted <= set(r.modalities)]
    return records


def cite_scope(
    kb: KnowledgeBase, ids: Iterable[str] = (), *, category: str | None = None, everything: bool = False,
    with_entry: bool = False,
) -> list[Any]:
    """What ``vlmeft cite`` cites: named records (ids or aliases), taxonomy nodes (a node id
    cites the node's knowledge-base entry followed by the survey it comes from), a category's
    members, or the whole knowledge base with the survey first. ``with_entry`` adds, after each
    record, the knowledge base's own entry for it."""
    from vlmeft.kb import cite

    ids = list(ids)
    if sum(bool(x) for x in (ids, category, everything)) != 1:
        raise VlmeftError("cite takes record or category ids, or --category, or --all (exactly one of them)")
    if everything:
        records: list[Any] = list(kb.methods.values())
        head: list[Any] = [kb.survey] + ([cite.kb_entry(kb)] if with_entry else [])
        return head + _with_entries(kb, records, with_entry)
    if category:
        members = kb.members(category)
        if not members:
            raise VlmeftError(f"category '{category}' has no records")
        return _with_entries(kb, list(members), with_entry)
    out: list[Any] = []
    for name in ids:
        if name == kb.survey.id:
            item: Any = kb.survey
        elif name in kb.categories and kb.resolve(name) is None:
            for item in (cite.node_entry(kb, name), kb.survey):
                if item not in out:
                    out.append(item)
            continue
        else:
            item = kb.get(name)
        if item not in out:
            out.append(item)
    return _with_entries(kb, out, with_entry)


def _with_entries(kb: KnowledgeBase, items: list[Any], with_entry: bool) -> list[Any]:
    if not with_entry:
        return items
    from vlmeft.kb import cite

    out: list[Any] = []
    for item in items:
        out.append(item)
        if isinstance(item, MethodRecord):
            out.append(cite.record_entry(kb, item))
    return out
