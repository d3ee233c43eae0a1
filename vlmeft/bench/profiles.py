"""Benchmark profiles: which cells a run holds and the budget settings they train with.

A profile names, per protocol, the tasks and shot counts to measure, the seeds, and
per-method config overrides. The overrides are a **budget choice**, not tuning: the
papers' schedules (CoOp's 200 epochs, CoCoOp's per-image text pass, ...) do not fit
the time limits below on a 2-core CPU, so some methods train for fewer epochs than
their paper says. Every override is listed here and stored in each results file's
``config``, so a reader can see exactly what was run.

Budgets (2 CPU cores, two single-thread workers: ``--jobs 2``, ``--threads 1``; shipped
synthclip-tiny backbone):

- ``test``: a handful of cells in seconds; for the test suite.
- ``quick``: at most 3 minutes; CI's smoke test.
- ``full``: about 80 minutes (the committed cells of all 42 methods add up to about 157
  minutes of CPU; the 16 first methods' 43 minutes were half CoCoOp's 1,000-step floor); its
  results are committed under ``results/bench/``. The 30 minutes it once fitted held for 16
  methods; the budgets below keep the added methods' cells near CoOp's cost.

The configuration that decides a cell's result (overrides, protocol settings, schema,
and the recipe when it is not ``embedded``) is hashed into the results file's name;
which methods, tasks, shots and seeds are selected is not, so a partial run and a later
complete run fill the same file. The embedded recipe adds nothing to the hash: every
file written before the recipes existed was measured with it, and keeps its name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from vlmeft import kinds
from vlmeft.errors import VlmeftError
from vlmeft.kinds._generative import FULL as FULL_DATA

PROTOCOLS = kinds.protocols()  # every task kind's protocols (vlmeft.kinds)
# Protocols that train on k shots per class; the others evaluate without training (shots = 0).
SHOT_PROTOCOLS = kinds.shot_protocols()
# Bump when the way a cell is measured changes (vlmeft/bench/cells.py): it is hashed into
# the version, so old cells are not mixed with new ones.
MEASUREMENT_VERSION = 1


@dataclass(frozen=True)
class ProtocolPlan:
    """One protocol of a profile: its tasks and shot counts (empty for zero-shot protocols)."""

    protocol: str
    tasks: tuple[str, ...]
    shots: tuple[int, ...] = ()


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    plans: tuple[ProtocolPlan, ...]
    seeds: tuple[int, ...]
    methods: tuple[str, ...] | None = None  # None: every registered method that applies
    # Per-method config overrides (strings, as ``--set`` takes them); "*" applies to all.
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    budget_seconds: int = 0  # the wall-time target on 2 cores (documentation; measured, not enforced)
    recipe: str | None = None  # "paper" / "embedded" (vlmeft.recipes); None: the backbone's default
    backbone: str | None = None  # the backbone it runs on by default (None: synthclip-tiny)

    def overrides_for(self, method: str) -> dict[str, str]:
        return {**self.overrides.get("*", {}), **self.overrides.get(method, {})}

    def config(self) -> dict[str, Any]:
        """What decides a cell's result, as JSON-able data (hashed into the version)."""
        out: dict[str, Any] = {
            "profile": self.name,
            "measurement": MEASUREMENT_VERSION,
            "overrides": {m: dict(sorted(o.items())) for m, o in sorted(self.overrides.items())},
        }
        if self.recipe not in (None, "embedded"):
            out["recipe"] = self.recipe
        return out

    def config_hash(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# Budget epoch overrides (paper defaults in brackets). Measured on digits, 16 shots,
# one thread: CoOp [200] costs 24 s of CPU per cell, VP [1000] 344 s, CLIP-LoRA [50]
# 20 s; the full grid holds about 500 cells. CoCoOp's own floor of 1,000 steps
# (``min_steps``) still applies (about 30 s a cell). Methods not listed run their
# paper's schedule.
_FULL_EPOCHS = {"coop": "50", "cocoop": "5", "vp": "20", "clip-lora": "20"}
# The same for the costliest of the methods added later (embedded recipe in brackets; CPU
# per digits 4-shot cell at the embedded recipe): DPT [200 epochs, guidance 100] 49 s, ProDA
# [200] 28 s, PLOT [200] 23 s, UPT [200] 18 s, DePT [50] 17 s; TPT [64 views] tunes once
# per test image, 46 s a cell (its val sweep: 16 views 0.658, as 64).
_FULL_OVERRIDES = {
    **{m: {"epochs": e} for m, e in _FULL_EPOCHS.items()},
    "dpt": {"epochs": "50", "guidance_epochs": "25"},
    "proda": {"epochs": "50"},
    "plot": {"epochs": "50"},
    "upt": {"epochs": "50"},
    "dept": {"epochs": "20"},
    "tpt": {"n_views": "16"},
}
# The quick profile cuts further (CoCoOp's step floor too): it only has to show that
# everything runs.
_QUICK = {"coop": {"epochs": "10"}, "cocoop": {"epochs": "2", "min_steps": "100"}, "kgcoop": {"epochs": "20"},
          "clip-adapter": {"epochs": "50"}, "tip-adapter-f": {"epochs": "10"}}

# The generative profile ("vl"): examples per question type / image group, and the full split
# (kinds._generative.FULL), each method under its embedded recipe as calibrated on val
# (benchmarks/generative_calibration.py; a cell costs seconds, so nothing is cut).
_VL_METHODS = ("lora", "prefix-tuning", "vl-adapter", "lst", "vl-pet", "llama-adapter", "llama-adapter-v2", "magma",
               "uniadapter", "clipcap")

PROFILES: dict[str, Profile] = {
    "test": Profile(
        name="test",
        description="seconds: zero-shot CLIP, a linear probe and CoOp (2 epochs) on digits, 1-2 shots, "
                    "2 seeds (for tests)",
        plans=(ProtocolPlan("few-shot", ("digits",), (1, 2)),),
        seeds=(1, 2),
        methods=("zsclip", "linear-probe", "coop"),
        overrides={"coop": {"epochs": "2", "n_ctx": "4"}},
        budget_seconds=30,
    ),
    "quick": Profile(
        name="quick",
        description="CI smoke test (<= 3 min on 2 cores): fast methods, few-shot digits, "
                    "base-to-novel on colors, grounding; reduced epochs",
        plans=(
            ProtocolPlan("few-shot", ("digits",), (1, 4, 16)),
            ProtocolPlan("base-to-novel", ("colors",), (16,)),
            ProtocolPlan("grounding", ("scenes",)),
        ),
        seeds=(1, 2),
        methods=("zsclip", "linear-probe", "coop", "cocoop", "kgcoop", "clip-adapter", "tip-adapter",
                 "tip-adapter-f", "red-circle"),
        overrides=_QUICK,
        budget_seconds=180,
    ),
    "full": Profile(
        name="full",
        description="the committed benchmark (about 80 min on 2 cores): all methods, few-shot curves on digits "
                    "and shapes, base-to-novel on color-shape, cross-domain on colors, retrieval and "
                    "grounding on scenes, seeds 1-3; some epochs reduced",
        plans=(
            ProtocolPlan("few-shot", ("digits", "shapes"), (1, 2, 4, 8, 16)),
            ProtocolPlan("base-to-novel", ("color-shape",), (16,)),
            ProtocolPlan("cross-domain", ("colors",), (16,)),
            ProtocolPlan("retrieval", ("scenes",)),
            ProtocolPlan("grounding", ("scenes",)),
        ),
        seeds=(1, 2, 3),
        overrides=_FULL_OVERRIDES,
        budget_seconds=1800,
    ),
    "vl": Profile(
        name="vl",
        description="the generative tasks on the embedded captioner synthcoca-tiny: every VQA and captioning "
                    "method on world-vqa and world-captions, 1-64 examples per question type / image group and "
                    "the full training split, seeds 1-3",
        plans=(
            ProtocolPlan("vqa", ("world-vqa",), (1, 4, 16, 64, FULL_DATA)),
            ProtocolPlan("captioning", ("world-captions",), (1, 4, 16, 64, FULL_DATA)),
        ),
        seeds=(1, 2, 3),
        methods=("coca", *_VL_METHODS),
        budget_seconds=3600,
        backbone="synthcoca-tiny",
    ),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise VlmeftError(f"unknown profile '{name}'; profiles: {', '.join(PROFILES)}", where="--profile")
    return PROFILES[name]
