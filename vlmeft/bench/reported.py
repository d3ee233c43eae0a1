"""The papers' numbers beside ours: one small adapter over the knowledge base.

The knowledge base normalises each record's reported results to controlled ids and
answers ``vlmeft.kb.results.reported(kb, method_id, dataset, protocol, metric, backbone,
shots=None)``. Tables call a :data:`Lookup` instead, so they do not depend on that
module: :func:`from_kb` wraps it (and finds nothing while it does not exist),
:func:`from_table` is the test double.

Vocabulary: datasets are CoOp's config names (``oxford_pets``) or ``average`` (the
papers' mean over a protocol's datasets: ``avg-11`` for few-shot and base-to-novel,
``avg-10`` for cross-dataset, ``avg-4`` for domain generalisation); protocols and metrics
(``accuracy``, ``base``, ``novel``, ``hm``) are the knowledge base's own ids; backbones are
open_clip names, mapped by :func:`vlmeft.kb.results.backbone_id`. A backbone or dataset the
vocabulary lacks (the embedded synthclip, a test config) has no reported number. Values are
percentages, as papers print them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

# The knowledge base's id for "the papers' average over the datasets" of each protocol.
AVERAGES = {"few-shot": "avg-11", "base-to-novel": "avg-11", "cross-dataset": "avg-10",
            "domain-generalisation": "avg-4"}

# (method, dataset, protocol, metric, backbone, shots) -> the reported percentage, or None
Lookup = Callable[[str, str, str, str, str, "int | None"], "float | None"]


def _number(value: Any) -> float | None:
    """A reported value as a float: a number, or an object / mapping with a ``value``."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        value = value.get("value")
    elif not isinstance(value, (int, float)):
        value = getattr(value, "value", None)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def nothing(method: str, dataset: str, protocol: str, metric: str, backbone: str, shots: int | None = None) -> None:
    """The lookup while the knowledge base reports nothing."""
    return None


def from_kb(kb: Any = None) -> Lookup:
    """The knowledge base's reported numbers, through :func:`vlmeft.kb.results.reported`."""
    from vlmeft.kb.results import backbone_id, dataset_id, reported

    if kb is None:
        from vlmeft.kb.load import load_kb

        kb = load_kb()

    def lookup(method: str, dataset: str, protocol: str, metric: str, backbone: str,
               shots: int | None = None) -> float | None:
        if kb.vocab is None or method not in kb.methods:
            return None
        data = AVERAGES.get(protocol) if dataset == "average" else dataset_id(kb, dataset)
        model = backbone_id(kb, backbone)
        if data is None or model is None:
            return None
        hits = reported(kb, method, data, protocol, metric, model, shots=shots)
        plain = [r for r in hits if not r.setting]  # the method's own setting before its variants
        return _number((plain or hits)[0]) if hits else None

    return lookup


def from_table(values: Mapping[tuple, float]) -> Lookup:
    """A lookup over ``{(method, dataset, protocol, metric, shots): percent}`` (tests, examples);
    the backbone is ignored."""

    def lookup(method: str, dataset: str, protocol: str, metric: str, backbone: str,
               shots: int | None = None) -> float | None:
        return _number(values.get((method, dataset, protocol, metric, shots)))

    return lookup
