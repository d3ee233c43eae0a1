"""Task kinds: what a benchmark cell measures, declared once per kind.

A task kind (classification, retrieval, grounding, ...) is one object, ``KIND``, in one
module of this package. It declares everything the rest of the code used to spell out
per kind:

- its **protocols** (few-shot, base-to-novel, ... for classification; ``retrieval``;
  ``grounding``), each saying whether its cells train on k shots per class and which
  metric summarises its seed variance;
- its **metric names** (the fields its rows carry);
- which **tasks** and **methods** fit each protocol (``task_fits``, ``method_fits``);
- its **evaluator** (``measure(runner, cell)``: the cell's metrics, the method, the
  training report);
- what ``vlmeft run`` prints and returns (``run_summary``), and the benchmark report's
  tables and headline columns (``report_sections``, ``headline_columns``);
- for conformance: the **logits shape** a method of this kind outputs on the probe data
  (``probe_output_shape``), how to get those outputs (``probe_outputs``) and its
  **observers** (``observe``, one observation per signature key); ``classifier`` says
  whether its methods read class names and output class logits.

The kinds are found by scanning this package (every module not starting with ``_``
must define ``KIND``), so adding a kind is adding one module (and its tests); the bench
planner, the report, ``vlmeft run`` and the conformance matrix iterate these objects
and name no kind themselves. Importing a kind module never imports torch (the CLI's
start-up stays torch-free): heavy imports live inside the functions.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from vlmeft.errors import VlmeftError


@dataclass(frozen=True)
class Protocol:
    """One way of measuring a kind: ``trains`` cells train on k shots per class (a
    method that uses no training data runs once, at shots 0); the others never train."""

    name: str
    trains: bool
    help: str
    stability_metric: str | None = None  # whose std over seeds summarises a trained setting


@dataclass(frozen=True)
class Column:
    """One column of the report's headline table: ``metric`` of ``(task, protocol)`` at ``shots``."""

    header: str
    task: str
    protocol: str
    shots: int
    metric: str


def ref(target: str) -> Callable[..., Any]:
    """A callable that imports ``"module:attr"`` when first called (kinds name functions
    that live elsewhere, such as conformance observers, without importing torch)."""
    module, _, attr = target.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)

    call.__qualname__ = call.__name__ = target
    return call


class TaskKind:
    """The interface (and defaults) of a task kind; see the module docstring."""

    name: str = ""
    label: str = ""  # how messages name it ("image classification"); default: the name
    order: int = 100  # position in listings, help texts and reports
    data: str = ""  # the task data it reads (vlmeft.data.tasks.task_kind): "classification" or "scenes"
    protocols: tuple[Protocol, ...] = ()
    metrics: tuple[str, ...] = ()
    classifier: bool = True  # its methods read class names and output class logits [B, C]
    observe: Callable[[Any], dict] | None = None  # conformance observers; None: no method is probed as this kind
    backbone: str = ""  # the backbone `vlmeft run` uses by default ("": the embedded CLIP, synthclip-tiny)
    curves: tuple[tuple[str, str, str], ...] = ()  # (protocol, metric, label) the site plots against shots
    conformance_backbones: tuple[str, ...] = ()  # where its methods are probed (empty: the matrix's default)
    example: str = ""  # the documented first command of a method of this kind ("{id}": the method id)

    # ------------------------------------------------------------------ planning
    def task_fits(self, load: Callable[[], Any], protocol: str) -> bool:
        """Whether the task (``load()`` builds it; kinds avoid it when they can) fits ``protocol``."""
        return True

    def unfit_reason(self, task: Any, protocol: str) -> str:
        """Why ``task`` does not fit ``protocol``, completing "task 'NAME' ..."."""
        return f"does not fit protocol {protocol}"

    def method_fits(self, caps: Any, method: str, protocol: str) -> bool:
        """Whether a method with capabilities ``caps`` (:class:`vlmeft.bench.plan.Capabilities`) runs."""
        return caps.builds and self.name in caps.tasks

    # ----------------------------------------------------------------- measuring
    def measure(self, runner: Any, cell: Any) -> tuple[dict[str, Any], Any, Any]:
        """``(metrics, method, training report or None)`` for ``cell`` on ``runner``
        (:class:`vlmeft.bench.cells.CellRunner`)."""
        raise NotImplementedError

    def run_summary(self, runner: Any, cell: Any, metrics: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        """What ``vlmeft run`` prints (lines) and adds to its JSON result."""
        return [f"{k}: {v}" for k, v in sorted(metrics.items())], dict(metrics)

    # ----------------------------------------------------------------- reporting
    def report_sections(self, groups: Any) -> list[str]:
        """Markdown sections of the benchmark report (one per protocol and task measured)."""
        return []

    def headline_columns(self, groups: Any) -> list[Column]:
        return []

    # --------------------------------------------------------------- conformance
    def probe_outputs(self, subject: Any, method: Any, *, batch: int | None, raw: Any,
                      expressions: Sequence[str]) -> Any:
        """What a method of this kind predicts on the probe data, as one tensor."""
        raise NotImplementedError

    def probe_output_shape(self, subject: Any) -> tuple[tuple[int, ...], str]:
        """The shape :meth:`probe_outputs` must have, and what to call it in messages."""
        raise NotImplementedError

    def protocol(self, name: str) -> Protocol:
        return next(p for p in self.protocols if p.name == name)

    @property
    def title(self) -> str:
        return self.label or self.name


@lru_cache(maxsize=1)
def all_kinds() -> tuple[TaskKind, ...]:
    """Every kind of this package, in ``order``."""
    found: list[TaskKind] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        kind = getattr(module, "KIND", None)
        if not isinstance(kind, TaskKind):
            raise TypeError(f"{module.__name__} defines no KIND (a vlmeft.kinds.TaskKind)")
        found.append(kind)
    names = [k.name for k in found]
    protocols = [p.name for k in found for p in k.protocols]
    if len(set(names)) != len(names) or len(set(protocols)) != len(protocols):
        raise TypeError(f"task kinds and protocols must be unique: {names}, {protocols}")
    return tuple(sorted(found, key=lambda k: (k.order, k.name)))


def generative_kinds() -> tuple[TaskKind, ...]:
    """The kinds whose methods write text (VQA, captioning: :mod:`vlmeft.kinds._generative`), in ``order``."""
    from vlmeft.kinds._generative import GenerativeKind

    return tuple(k for k in all_kinds() if isinstance(k, GenerativeKind))


def generates(method_cls: Any) -> bool:
    """Whether a method class writes text: it declares a generative kind among its ``tasks``."""
    return any(k.name in method_cls.tasks for k in generative_kinds())


def get(name: str) -> TaskKind:
    for kind in all_kinds():
        if kind.name == name:
            return kind
    raise VlmeftError(f"unknown task kind '{name}'; kinds: {', '.join(k.name for k in all_kinds())}")


def protocols() -> tuple[str, ...]:
    """Every protocol name, kinds in order."""
    return tuple(p.name for k in all_kinds() for p in k.protocols)


def shot_protocols() -> tuple[str, ...]:
    """The protocols whose cells train on k shots per class."""
    return tuple(p.name for k in all_kinds() for p in k.protocols if p.trains)


def stability_metrics() -> dict[str, str]:
    """Protocol -> the metric whose seed variance summarises it."""
    return {p.name: p.stability_metric for k in all_kinds() for p in k.protocols if p.stability_metric}


def for_protocol(protocol: str) -> TaskKind:
    for kind in all_kinds():
        if any(p.name == protocol for p in kind.protocols):
            return kind
    raise VlmeftError(f"unknown protocol '{protocol}'; protocols: {', '.join(protocols())}", where="--protocols")


def of_method(method_cls: Any) -> TaskKind:
    """The kind a method class is probed as: the first of its declared ``tasks`` that
    has conformance observers."""
    for task in method_cls.tasks:
        for kind in all_kinds():
            if kind.name == task and kind.observe is not None:
                return kind
    raise VlmeftError(f"method '{method_cls.name}' declares tasks {', '.join(method_cls.tasks)}; none is a task "
                      f"kind with conformance observers ({', '.join(k.name for k in all_kinds() if k.observe)})")
