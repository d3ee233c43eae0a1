"""Reported results, by controlled id: what papers and official repositories report.

Every record's ``results`` use ids from ``taxonomy/vocab.yaml`` for metric, dataset, protocol
and backbone, so numbers from different papers can be compared (the literature leaderboard)
and set beside numbers measured here (the bench suite). Reported and measured numbers are
never mixed: this module only reads records.

    >>> from vlmeft.kb.load import load_kb
    >>> from vlmeft.kb.results import reported
    >>> kb = load_kb()
    >>> [r.value for r in reported(kb, "coop", "avg-11", "base-to-novel", "hm", "vit-b-16")]
    [71.66]

Dataset ids of the CoOp benchmark equal CoOp's config names and the ``--task coop:NAME``
task names; averages have ids of their own (``avg-11``, ``avg-10``, ``avg-4``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vlmeft.errors import VlmeftError


@dataclass(frozen=True)
class Reported:
    """One reported number and where it was read."""

    method: str  # record id
    index: int  # position in the record's results (its address: results[index])
    metric: str
    value: float
    dataset: str
    protocol: str
    shots: int | None
    backbone: str
    setting: str | None
    source: str
    locator: str | None
    note: str | None
    discrepancy: str | None


def _check_id(kb: Any, kind: str, value: str) -> None:
    vocab = kb.vocab
    if vocab is None:
        raise VlmeftError("this knowledge base has no vocab.yaml, so its results have no controlled ids", where=str(kb.root))
    table = getattr(vocab, kind)
    if value not in table:
        from vlmeft.kb.load import suggest

        raise VlmeftError(f"unknown {kind[:-1]} '{value}'{suggest(value, table)}; the ids are in vocab.yaml")


def all_reported(kb: Any) -> Iterator[Reported]:
    """Every reported result of every record, in record order."""
    for rid, rec in kb.methods.items():
        for i, r in enumerate(rec.results):
            yield Reported(rid, i, r.metric, r.value, r.dataset, r.protocol or "", r.shots, r.backbone or "",
                           r.setting, r.source, r.locator, r.note, r.discrepancy)


def reported(kb: Any, method_id: str, dataset: str, protocol: str, metric: str, backbone: str,
             shots: int | None = None) -> list[Reported]:
    """The numbers record ``method_id`` reports for (dataset, protocol, metric, backbone).

    ``shots`` narrows to one shot count; None accepts any (a few-shot caller should pass it).
    Several entries come back when a source reports several settings of the method (their
    ``setting`` tells them apart) or several sources report the same setting. Unknown ids
    raise ``VlmeftError``, so a typo never reads as "not reported".
    """
    record = kb.get(method_id)
    for kind, value in (("datasets", dataset), ("protocols", protocol), ("metrics", metric), ("backbones", backbone)):
        _check_id(kb, kind, value)
    return [r for r in all_reported(kb)
            if r.method == record.id and r.dataset == dataset and r.protocol == protocol and r.metric == metric
            and r.backbone == backbone and (shots is None or r.shots == shots)]


def boards(kb: Any) -> dict[tuple[str, str, str, int | None], list[Reported]]:
    """Reported results grouped into leaderboards: (protocol, dataset, backbone, shots).

    Shots belong to the key only for few-shot boards (one board per shot count); the other
    protocols fix their shots by convention (16 for base-to-novel, cross-dataset and domain
    generalisation), and each row shows its own.
    """
    out: dict[tuple[str, str, str, int | None], list[Reported]] = defaultdict(list)
    for r in all_reported(kb):
        shots = r.shots if r.protocol == "few-shot" else None
        out[(r.protocol, r.dataset, r.backbone, shots)].append(r)
    return dict(out)


def backbone_id(kb: Any, name: str) -> str | None:
    """The vocabulary backbone id for a measured row's backbone name (an open_clip model name
    such as ``ViT-B-16``), or None if the vocabulary has none (e.g. the embedded synthclip)."""
    if kb.vocab is None:
        return None
    if name in kb.vocab.backbones:
        return name
    return kb.vocab.backbone_for_open_clip(name)


def dataset_id(kb: Any, task: str) -> str | None:
    """The vocabulary dataset id of a bench task name (``coop:oxford_pets`` -> ``oxford_pets``)."""
    if kb.vocab is None:
        return None
    name = task.split(":", 1)[1] if task.startswith("coop:") else task
    return name if name in kb.vocab.datasets else None
