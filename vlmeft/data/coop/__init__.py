"""The CoOp/CoCoOp dataset suite: 11 classification datasets and 4 ImageNet variants.

``--task coop:<id>`` reads a dataset laid out as CoOp's ``DATASETS.md`` describes under
the data root (``--data-root DIR`` or ``$VLMEFT_DATA``). The ids are CoOp's config
names. One reader per module of this package (each defines ``READER``, found by
scanning the package, so adding a dataset is adding a module); :mod:`._reader` holds
what they share.

The protocols over the suite (:data:`SUITE` lists the datasets in the papers' order):

- few-shot (1, 2, 4, 8, 16 shots) and base-to-novel (16 shots) on the 11 datasets;
- cross-dataset: trained on ImageNet at 16 shots, tested on the other 10;
- domain generalisation: trained on ImageNet at 16 shots, tested on ImageNet-V2,
  -Sketch, -A and -R (A and R: their 200-class subsets).

The two transfer protocols' targets are data of the ImageNet task (``task.targets``),
derived here from the readers: every dataset that is not test-only, and every test-only
one whose source is ImageNet.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from functools import lru_cache
from pathlib import Path

from vlmeft.data.coop._reader import CoopDataset
from vlmeft.data.types import ClassificationTask
from vlmeft.errors import VlmeftError

ENV = "VLMEFT_DATA"
PREFIX = "coop:"
FEW_SHOTS = (1, 2, 4, 8, 16)
TRANSFER_SHOTS = 16  # cross-dataset and domain generalisation train on ImageNet at 16 shots
BASE_TO_NOVEL_SHOTS = 16


@lru_cache(maxsize=1)
def readers() -> dict[str, CoopDataset]:
    """Every reader of this package, in the papers' order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            reader = getattr(module, "READER", None)
            if not isinstance(reader, CoopDataset):
                raise TypeError(f"{module.__name__} defines no READER (a CoopDataset)")
            found.append(reader)
    return {r.id: r for r in sorted(found, key=lambda r: (r.order, r.id))}


def dataset_ids() -> list[str]:
    return list(readers())


def reader(dataset: str) -> CoopDataset:
    known = readers()
    if dataset not in known:
        import difflib

        close = difflib.get_close_matches(dataset, list(known), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise VlmeftError(f"unknown CoOp dataset '{dataset}'{hint}; datasets: {', '.join(known)}", where="--task")
    return known[dataset]


def data_root(explicit: str | Path | None = None) -> Path:
    """The data root: ``explicit``, else ``$VLMEFT_DATA``; it must exist."""
    value = explicit if explicit is not None else os.environ.get(ENV)
    if not value:
        raise VlmeftError(f"no data root for the CoOp datasets: pass --data-root DIR or set {ENV}", where="--data-root")
    root = Path(value).expanduser().resolve()
    if not root.is_dir():
        raise VlmeftError("data root does not exist", where=str(root))
    return root


def source_of(name: str) -> str:
    """The task a test-only dataset is trained on (``coop:imagenet_a`` -> ``coop:imagenet``), else ''."""
    r = reader(name.removeprefix(PREFIX))
    return f"{PREFIX}{r.source}" if r.source else ""


def targets(dataset: str) -> dict[str, tuple[str, ...]]:
    """The transfer targets of a source dataset (CoOp: only ImageNet has them)."""
    if dataset != "imagenet":
        return {}
    others = [r for r in readers().values() if r.id != dataset]
    return {"cross-dataset": tuple(r.task_name for r in others if not r.source),
            "domain-generalisation": tuple(r.task_name for r in others if r.source == dataset)}


def suite() -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """The papers' plan: protocol -> (datasets, shot counts)."""
    main = tuple(r.id for r in readers().values() if not r.source)  # the 11 datasets, ImageNet first
    sources = tuple(d for d in main if targets(d))
    return {"few-shot": (main, FEW_SHOTS), "base-to-novel": (main, (BASE_TO_NOVEL_SHOTS,)),
            "cross-dataset": (sources, (TRANSFER_SHOTS,)), "domain-generalisation": (sources, (TRANSFER_SHOTS,))}


def load_task(name: str, root: str | Path | None = None) -> ClassificationTask:
    """``coop:<id>`` under ``root`` (default: :func:`data_root`). Cached per (id, root):
    treat the result as read-only."""
    dataset = name.removeprefix(PREFIX)
    reader(dataset)  # unknown ids raise first
    return _load(dataset, str(data_root(root)))


@lru_cache(maxsize=32)
def _load(dataset: str, root: str) -> ClassificationTask:
    from dataclasses import replace

    task = readers()[dataset].load(Path(root))
    extra = targets(dataset)
    return replace(task, targets=extra) if extra else task
