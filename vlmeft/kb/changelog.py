"""The knowledge base's changelog, held to the records by a digest lock.

``taxonomy/changelog.yaml`` lists releases, newest first, each with the records it changed.
``taxonomy/record-digests.json`` holds, per record, a digest of its category and facts as of
the last time the changelog was reconciled (``vlmeft changelog lock``). ``vlmeft validate``
then refuses a record whose category or facts differ from its locked digest unless the
newest release names it: a change is never silent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from vlmeft.errors import VlmeftError
from vlmeft.kb.schema import MethodRecord

LOCK_FILE = "record-digests.json"
# What a reader relies on: where the method is filed and the facts about the paper and its results.
FACT_FIELDS = ("category", "secondary_categories", "title", "authors", "venue", "venue_type", "year", "arxiv",
               "doi", "url", "code", "variant_of", "results")


def facts_digest(rec: MethodRecord) -> str:
    """A short, stable digest of ``rec``'s category and facts (FACT_FIELDS)."""
    data = rec.model_dump(mode="json", include=set(FACT_FIELDS))
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def read_lock(root: Path) -> dict[str, Any] | None:
    """``{"version": ..., "digests": {id: digest}}`` or None when the KB has no lock."""
    path = root / LOCK_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VlmeftError(f"cannot read the digest lock: {err}", where=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("digests"), dict):
        raise VlmeftError("expected an object with a 'digests' mapping", where=str(path))
    return data


def write_lock(root: Path, version: str, records: dict[str, MethodRecord]) -> Path:
    """Record every record's current digest as reconciled with ``version``'s changelog."""
    path = root / LOCK_FILE
    data = {"version": version, "digests": {rid: facts_digest(rec) for rid, rec in sorted(records.items())}}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def unlogged(records: dict[str, MethodRecord], lock: dict[str, Any], logged: set[str]) -> list[str]:
    """Ids whose digest differs from the lock (or that the lock lacks) and that the newest
    release does not name."""
    digests = lock["digests"]
    return sorted(rid for rid, rec in records.items()
                  if digests.get(rid) != facts_digest(rec) and rid not in logged)
