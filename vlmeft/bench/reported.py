"""The papers' numbers beside ours: one small adapter over the knowledge base.

The knowledge base normalises each record's reported results to controlled ids and
answers ``vlmeft.kb.results.reported(kb, method_id, dataset, protocol, metric, backbone,
shots=None)``. Tables call a :data:`Lookup` instead, so they do not depend on that
module: :func:`from_kb` wraps it (and finds nothing while it does not exist),
:func:`from_table` is the test double.

Vocabulary handed over: datasets are CoOp's config names (``oxford_pets``) or
``average`` (the papers' mean over the suite's datasets); protocols are ours
(``few-shot``, ``base-to-novel``, ``cross-dataset``, ``domain-generalisation``); metrics
``accuracy``, ``base``, ``novel``, ``hm``; backbones as the papers write them
(``ViT-B/16``). Where the knowledge base spells one differently, map it in the
dictionaries below, nowhere else. Values are percentages, as papers print them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

# our name -> the knowledge base's (identity where absent)
DATASETS: dict[str, str] = {}
PROTOCOLS: dict[str, str] = {}
METRICS: dict[str, str] = {}
BACKBONES = {"ViT-B-16": "ViT-B/16", "ViT-B-32": "ViT-B/32", "ViT-L-14": "ViT-L/14", "RN50": "ResNet-50",
             "RN101": "ResNet-101"}

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
    """The knowledge base's reported numbers (no numbers until ``vlmeft.kb.results`` exists)."""
    try:
        from vlmeft.kb.results import reported  # type: ignore[import-not-found]
    except ImportError:
        return nothing
    if kb is None:
        from vlmeft.kb.load import load_kb

        kb = load_kb()

    def lookup(method: str, dataset: str, protocol: str, metric: str, backbone: str,
               shots: int | None = None) -> float | None:
        return _number(reported(kb, method, DATASETS.get(dataset, dataset), PROTOCOLS.get(protocol, protocol),
                                METRICS.get(metric, metric), BACKBONES.get(backbone, backbone), shots=shots))

    return lookup


def from_table(values: Mapping[tuple, float]) -> Lookup:
    """A lookup over ``{(method, dataset, protocol, metric, shots): percent}`` (tests, examples);
    the backbone is ignored."""

    def lookup(method: str, dataset: str, protocol: str, metric: str, backbone: str,
               shots: int | None = None) -> float | None:
        return _number(values.get((method, dataset, protocol, metric, shots)))

    return lookup
