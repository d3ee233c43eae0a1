"""Benchmark suites on real datasets: a profile built from what the data root holds.

``vlmeft bench --suite coop --data-root DIR`` runs the papers' plan over CoOp's datasets
(:func:`vlmeft.data.coop.suite`): few-shot at 1, 2, 4, 8 and 16 shots and base-to-novel
at 16 shots on the 11 datasets, cross-dataset and domain generalisation from ImageNet at
16 shots, seeds 1, 2 and 3, every registered method that applies. No budget overrides:
methods train with their recipes as they stand (the papers'). A dataset that is not
under the root is skipped with one line saying where it was looked for; a transfer
target that is missing is skipped inside its cell and listed in the row.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from vlmeft.bench.profiles import Profile, ProtocolPlan
from vlmeft.errors import DatasetMissing, VlmeftError

SEEDS = (1, 2, 3)


def coop(root: Path, log: TextIO | None = None) -> Profile:
    """The CoOp/CoCoOp suite over the datasets found under ``root``."""
    from vlmeft.data import coop as datasets

    log = log or sys.stderr
    present = []
    for dataset in datasets.dataset_ids():
        try:
            datasets.reader(dataset).locate(root)
            present.append(dataset)
        except DatasetMissing as err:
            print(f"skip coop:{dataset}: not found at {err.where}", file=log)
    plans = []
    for protocol, (ids, shots) in datasets.suite().items():
        tasks = tuple(f"coop:{d}" for d in ids if d in present)
        if tasks:
            plans.append(ProtocolPlan(protocol, tasks, shots))
    if not plans:
        raise VlmeftError("none of the CoOp datasets is under the data root (see the layout: "
                          "vlmeft docs page 'CoOp datasets')", where=str(root))
    return Profile(
        name="coop",
        description="the CoOp/CoCoOp suite: few-shot (1-16 shots) and base-to-novel (16 shots) on 11 datasets, "
                    "cross-dataset and domain generalisation from ImageNet (16 shots), seeds 1-3",
        plans=tuple(plans), seeds=SEEDS, methods=None, overrides={}, budget_seconds=0)


SUITES: dict[str, Any] = {"coop": coop}


def get_suite(name: str, root: Path, log: TextIO | None = None) -> Profile:
    if name not in SUITES:
        raise VlmeftError(f"unknown suite '{name}'; suites: {', '.join(SUITES)}", where="--suite")
    return SUITES[name](root, log)
