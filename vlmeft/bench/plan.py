"""From a profile and the command line's selection to the list of cells to run.

A cell is one measurement: ``(method, task, protocol, shots, seed, backbone)``. Which
method runs under which protocol is decided by probing the method once, not by a
hand-kept table; each protocol's task kind (:mod:`vlmeft.kinds`) reads the probe
(``method_fits``) and says which tasks fit (``task_fits``):

- the method's declared ``tasks`` (``classification``, ``grounding``, ...);
- it must build on the backbone (methods needing vision tokens refuse a ResNet tower);
- *uses training data*: it trains, or overrides ``fit_cache`` / ``select_on_val``.
  A method that uses none (zero-shot CLIP, training-free CALIP) gives the same result
  for every shot count and seed, so it runs once per task at ``shots = 0`` with the
  first seed, instead of repeating identical evaluations;
- *handles new classes*: ``set_classnames`` to an unseen label set works (a linear
  probe has no text side and refuses), needed for base-to-novel and for retrieval,
  which treats each caption as a class.

For example, retrieval ranks captions with the method's own image-text scores, so it
is measured for methods that use no training data (there is no caption training set);
grounding runs the grounding methods plus zero-shot CLIP as a crop-and-compare baseline.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from vlmeft import kinds
from vlmeft.bench.profiles import PROTOCOLS, SHOT_PROTOCOLS, Profile, ProtocolPlan
from vlmeft.bench.store import cell_key
from vlmeft.errors import VlmeftError


@dataclass(frozen=True)
class Cell:
    method: str
    task: str
    protocol: str
    shots: int
    seed: int
    backbone: str
    backbone_weights: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> tuple:
        return cell_key(self.to_dict())

    @property
    def label(self) -> str:
        shots = f"{self.shots}-shot" if self.shots else "zero-shot"
        return f"{self.method} {self.task} {self.protocol} {shots} seed {self.seed}"


@dataclass(frozen=True)
class Capabilities:
    """What a method can do on a given backbone (found by probing it)."""

    tasks: tuple[str, ...]  # the task kinds the method declares
    builds: bool
    uses_data: bool
    new_classes: bool
    reason: str = ""  # why it does not build, if it does not

    @property
    def classification(self) -> bool:
        return "classification" in self.tasks

    @property
    def grounding(self) -> bool:
        return "grounding" in self.tasks


def _overrides_hook(method: Any, hook: str) -> bool:
    from vlmeft.method import Method

    return getattr(type(method), hook) is not getattr(Method, hook)


def probe(name: str, backbone: Any, overrides: dict[str, str], *, from_profile: bool = True) -> Capabilities:
    """Build ``name`` on ``backbone`` with two dummy classes and read what it can do. An
    invalid override is an error: a profile's (``from_profile``), or else the user's own
    ``--set``, whose message already names the setting."""
    from vlmeft import registry

    cls = registry.get(name)
    tasks = tuple(cls.tasks)
    try:
        method = registry.build(name, backbone, ["red", "blue"], ["a {}."], overrides, seed=0)
    except VlmeftError as err:
        if "--set" in str(err) or getattr(err, "where", None) == "--set":
            if not from_profile:
                raise
            raise VlmeftError(f"profile override for '{name}' is invalid: {err}", where="--profile") from None
        return Capabilities(tasks, False, False, False, reason=str(err))
    uses_data = (not getattr(method, "training_free", False)) or _overrides_hook(method, "fit_cache") \
        or _overrides_hook(method, "select_on_val")
    new_classes = True
    known = {k.name: k for k in kinds.all_kinds()}
    if any(known[t].classifier for t in tasks if t in known):  # it reads class names: can they change?
        try:
            method.set_classnames(["green", "yellow", "white"])
        except VlmeftError:
            new_classes = False
    return Capabilities(tasks, True, bool(uses_data), new_classes)


def _task(name: str) -> Any:
    from vlmeft.data.tasks import get_task

    return get_task(name)  # cached there


def task_fits(name: str, protocol: str) -> bool:
    from vlmeft.data.tasks import task_kind

    kind = kinds.for_protocol(protocol)
    return task_kind(name) == kind.data and kind.task_fits(lambda: _task(name), protocol)


def method_fits(caps: Capabilities, name: str, protocol: str) -> bool:
    return kinds.for_protocol(protocol).method_fits(caps, name, protocol)


@dataclass
class Selection:
    """The command line's narrowing of a profile (None = the profile's own choice)."""

    methods: Sequence[str] | None = None
    tasks: Sequence[str] | None = None
    protocols: Sequence[str] | None = None
    shots: Sequence[int] | None = None
    seeds: Sequence[int] | None = None


def _check_names(selection: Selection, profile: Profile) -> None:
    from vlmeft import registry
    from vlmeft.data.tasks import is_task_name, task_names

    for name in selection.methods or ():
        if not registry.is_registered(name):
            raise VlmeftError(f"unknown method '{name}'{registry.suggest(name)}; known: {', '.join(registry.names())}",
                              where="--methods")
    known_tasks = task_names()
    for name in selection.tasks or ():
        if name not in known_tasks and not is_task_name(name):
            import difflib

            close = difflib.get_close_matches(name, known_tasks, n=3, cutoff=0.4)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise VlmeftError(f"unknown task '{name}'{hint}; tasks: {', '.join(known_tasks)}", where="--tasks")
    in_profile = [p.protocol for p in profile.plans]
    for name in selection.protocols or ():
        if name not in PROTOCOLS:
            raise VlmeftError(f"unknown protocol '{name}'; protocols: {', '.join(PROTOCOLS)}", where="--protocols")
        if name not in in_profile:
            raise VlmeftError(f"profile '{profile.name}' has no '{name}' protocol; it has {', '.join(in_profile)}",
                              where="--protocols")
    for value in selection.shots or ():
        if value <= 0:
            raise VlmeftError(f"shots must be positive, got {value}", where="--shots")
    for value in selection.seeds or ():
        if value < 0:
            raise VlmeftError(f"seeds must be non-negative, got {value}", where="--seeds")


def selected_plans(profile: Profile, selection: Selection) -> list[ProtocolPlan]:
    """The profile's protocol plans narrowed by the selection."""
    _check_names(selection, profile)
    plans = []
    for plan in profile.plans:
        if selection.protocols and plan.protocol not in selection.protocols:
            continue
        tasks = tuple(selection.tasks) if selection.tasks else plan.tasks
        tasks = tuple(t for t in tasks if task_fits(t, plan.protocol))
        shots = tuple(selection.shots) if (selection.shots and plan.protocol in SHOT_PROTOCOLS) else plan.shots
        if tasks:
            plans.append(replace(plan, tasks=tasks, shots=shots))
    for name in selection.tasks or ():
        if not any(name in p.tasks for p in plans):
            fits = [p for p in PROTOCOLS if task_fits(name, p)]
            raise VlmeftError(f"task '{name}' fits none of the selected protocols "
                              f"({', '.join(p.protocol for p in profile.plans)}); it fits {', '.join(fits)}",
                              where="--tasks")
    return plans


def build_cells(profile: Profile, selection: Selection, backbone: Any, *, warn: bool = True) -> list[Cell]:
    """Every cell of the selection, in run order (protocol, task, method, shots, seed)."""
    from vlmeft import registry

    plans = selected_plans(profile, selection)
    methods = list(selection.methods or profile.methods or registry.names())
    seeds = list(selection.seeds or profile.seeds)
    caps = {m: probe(m, backbone, profile.overrides_for(m)) for m in methods}
    weights = backbone.weights_id
    cells: list[Cell] = []
    for plan in plans:
        for task in plan.tasks:
            for method in methods:
                if not method_fits(caps[method], method, plan.protocol):
                    continue
                if plan.protocol in SHOT_PROTOCOLS and caps[method].uses_data:
                    grid = [(k, s) for k in plan.shots for s in seeds]
                else:  # zero-shot: one deterministic evaluation
                    grid = [(0, seeds[0])]
                cells += [Cell(method, task, plan.protocol, k, s, backbone.name, weights) for k, s in grid]
    if warn:
        for method in methods:
            if not any(c.method == method for c in cells):
                why = caps[method].reason or "it applies to none of the selected protocols and tasks"
                print(f"note: no cells for '{method}': {why}", file=sys.stderr)
    if not cells:
        raise VlmeftError("the selection holds no cells: no selected method applies to the selected "
                          "protocols and tasks", where="--methods/--tasks")
    return cells
