"""Knowledge-base coverage and release commands: stats, changelog (and changelog lock)."""

from __future__ import annotations

import argparse
import json
import sys

from vlmeft.errors import VlmeftError
from vlmeft.kb.load import load_kb


def _cmd_stats(args: argparse.Namespace) -> int:
    from vlmeft.kb.stats import coverage, text_report

    kb = load_kb(args.taxonomy)
    if args.format == "json":
        c = coverage(kb)
        data = {
            "records": c.records, "with_results": c.with_results, "years": c.years,
            "per_leaf_year": [{"leaf": lf, "year": y, "records": n} for (lf, y), n in sorted(c.per_leaf_year.items())],
            "per_venue": [{"venue": v, "records": n} for v, n in c.per_venue],
            "own_implementation": c.own, "category_reference": c.reference, "unverified": dict(c.unverified),
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(text_report(kb))
    return 0


def _cmd_changelog(args: argparse.Namespace) -> int:
    kb = load_kb(args.taxonomy)
    if kb.changelog is None or kb.meta is None:
        raise VlmeftError("this knowledge base has no changelog.yaml or kb.yaml", where=str(kb.root))
    if args.action == "lock":
        from vlmeft.kb.changelog import write_lock

        path = write_lock(kb.root, kb.meta.version, kb.methods)
        print(f"wrote {path} ({len(kb.methods)} records, release {kb.meta.version})")
        return 0
    for release in kb.changelog.releases[: args.releases]:
        print(f"{release.version} ({release.date}): {release.summary}")
        for change in release.changes:
            print(f"  {change.record} [{', '.join(change.fields)}]: {change.what}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from vlmeft.cli.kb_commands import _add_taxonomy

    p = sub.add_parser("stats", help="coverage: records per leaf and year, per venue, with or without their own code")
    p.add_argument("--format", choices=["text", "json"], default="text")
    _add_taxonomy(p)
    p.set_defaults(func=_cmd_stats)

    p = sub.add_parser("changelog", help="what changed in the knowledge base, per release (or: changelog lock)")
    p.add_argument("action", nargs="?", choices=["show", "lock"], default="show",
                   help="show (default), or lock: record every record's current facts digest as logged")
    p.add_argument("--releases", type=int, default=1, metavar="N", help="show the newest N releases (default 1)")
    _add_taxonomy(p)
    p.set_defaults(func=_cmd_changelog)
