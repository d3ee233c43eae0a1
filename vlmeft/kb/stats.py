"""Coverage of the knowledge base: records per leaf and year, per venue, with or without their
own implementation, and how much of it is checked. ``vlmeft stats`` prints it; the site's
coverage page plots it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

OWN = ("faithful", "simplified")  # implementation fidelities that mean "its own code"


@dataclass
class Coverage:
    years: list[int]
    leaves: list[str]  # leaf ids in tree order, then "baseline" if any record has no category
    per_leaf_year: dict[tuple[str, int], int]
    per_venue: list[tuple[str, int]]  # (venue short name, records), most first
    own: dict[str, int]  # leaf -> records with their own implementation
    reference: dict[str, int]  # leaf -> records that link to the category's reference
    unverified: Counter = field(default_factory=Counter)  # field name -> records listing it
    records: int = 0
    with_results: int = 0

    def leaf_total(self, leaf: str) -> int:
        return sum(n for (lf, _), n in self.per_leaf_year.items() if lf == leaf)

    def year_total(self, year: int) -> int:
        return sum(n for (_, y), n in self.per_leaf_year.items() if y == year)


def _leaf(rec: Any) -> str:
    return rec.category or "baseline"


def coverage(kb: Any) -> Coverage:
    records = list(kb.methods.values())
    years = sorted({r.year for r in records})
    leaves = list(kb.categories.leaf_ids) + (["baseline"] if any(not r.category for r in records) else [])
    per = Counter((_leaf(r), r.year) for r in records)
    venues = Counter(r.venue_short or r.venue for r in records)
    own: Counter = Counter()
    ref: Counter = Counter()
    for r in records:
        impl = r.implementation
        if impl is not None and impl.fidelity in OWN:
            own[_leaf(r)] += 1
        else:
            ref[_leaf(r)] += 1
    unverified: Counter = Counter()
    for r in records:
        for name in set(r.unverified_fields):
            unverified[name.split("[")[0].split(".")[0]] += 1
    return Coverage(years=years, leaves=leaves, per_leaf_year=dict(per),
                    per_venue=sorted(venues.items(), key=lambda kv: (-kv[1], kv[0])),
                    own=dict(own), reference=dict(ref), unverified=unverified, records=len(records),
                    with_results=sum(bool(r.results) for r in records))


def text_report(kb: Any) -> str:
    """Plain-text tables (stable: tests and pipes read them)."""
    c = coverage(kb)
    lines = [f"{c.records} records, {c.with_results} with reported results", "", "records per leaf and year"]
    head = ["leaf", *map(str, c.years), "total", "own code", "reference"]
    rows = [head]
    for leaf in c.leaves:
        rows.append([leaf, *(str(c.per_leaf_year.get((leaf, y), 0) or "-") for y in c.years),
                     str(c.leaf_total(leaf)), str(c.own.get(leaf, 0)), str(c.reference.get(leaf, 0))])
    rows.append(["total", *(str(c.year_total(y)) for y in c.years), str(c.records),
                 str(sum(c.own.values())), str(sum(c.reference.values()))])
    lines += _columns(rows)
    lines += ["", "records per venue"]
    lines += _columns([["venue", "records"], *([v, str(n)] for v, n in c.per_venue)])
    lines += ["", "facts not checked against a primary source (records listing the field in 'unverified')"]
    if c.unverified:
        lines += _columns([["field", "records"], *([f, str(n)] for f, n in sorted(c.unverified.items(), key=lambda kv: (-kv[1], kv[0])))])
    else:
        lines.append("none")
    return "\n".join(lines) + "\n"


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
