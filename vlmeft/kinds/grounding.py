"""Referring-expression grounding on a scene task: pick the box an expression names.

A grounding method (``tasks = ("grounding",)``) implements
``ground(images, boxes, expressions) -> list[Tensor]`` (one score per candidate box) and
may define ``prepare_grounding(samples)``, called once with the whole evaluated set
before scoring (red circle fixes its prior's negatives there). The evaluator is
:func:`accuracy`: the share of samples whose best-scoring box is the target.

Classification methods listed in :data:`BASELINES` also run, as the zero-shot
reference: zero-shot CLIP crops each candidate box and classifies the crops against
the sample's expression ("crop and compare"). Nothing trains (shots 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vlmeft.errors import VlmeftError
from vlmeft.kinds import Column, Protocol, TaskKind, ref

# Classification methods that also run a grounding baseline, and how.
BASELINES = {"zsclip": "crop-and-compare"}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def accuracy(method: Any, samples: Sequence[Any], *, chunk: int = 64) -> float:
    """Fraction of ``samples`` whose best-scoring box (``method.ground``) is the target."""
    if not samples:
        raise VlmeftError("no grounding samples to evaluate")
    prepare = getattr(method, "prepare_grounding", None)
    if prepare is not None:
        prepare(samples)
    hits = 0
    for i in range(0, len(samples), chunk):
        part = samples[i : i + chunk]
        scores = method.ground([s.image for s in part], [s.boxes for s in part], [s.expression for s in part])
        hits += sum(int(sc.argmax().item() == s.target) for sc, s in zip(scores, part))
    return hits / len(samples)


class Grounding(TaskKind):
    name = "grounding"
    order = 20
    data = "scenes"
    example = "vlmeft run {id} --task scenes"
    protocols = (Protocol("grounding", False, "pick the box a referring expression names (no training)"),)
    metrics = ("accuracy", "chance", "zero_shot_accuracy", "variant")
    classifier = False
    observe = staticmethod(ref("vlmeft.conformance.signatures:_observe_grounding"))

    def task_fits(self, load: Callable[[], Any], protocol: str) -> bool:
        return True  # every scene task has referring expressions

    def method_fits(self, caps: Any, method: str, protocol: str) -> bool:
        return caps.builds and ("grounding" in caps.tasks or method in BASELINES)

    def measure(self, runner: Any, cell: Any) -> tuple[dict[str, Any], Any, Any]:
        import numpy as np

        from vlmeft import registry

        samples = runner._task(cell.task).grounding
        chance = float(np.mean([1.0 / len(s.boxes) for s in samples]))
        if "grounding" in registry.get(cell.method).tasks:
            method = runner._build(cell.method, [], ["{}"], cell.seed)
            return {"accuracy": float(accuracy(method, samples)), "chance": chance}, method, None
        if BASELINES.get(cell.method) == "crop-and-compare":
            return _crop_and_compare(runner, cell, samples, chance)
        raise VlmeftError(f"method '{cell.method}' does not do grounding")

    def run_summary(self, runner: Any, cell: Any, metrics: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        from dataclasses import replace

        n = len(runner._task(cell.task).grounding)
        fields = dict(metrics)
        lines = [f"grounding accuracy: {_pct(metrics['accuracy'])} of {n} referring expressions "
                 f"(a random box: {_pct(metrics['chance'])})"]
        for baseline in BASELINES:  # the zero-shot reference
            if cell.method != baseline:
                zs, _, _ = runner.measure(replace(cell, method=baseline))
                fields["zero_shot_accuracy"] = zs["accuracy"]
                lines.append(f"zero-shot CLIP, crop and compare: {_pct(zs['accuracy'])}")
        return lines, fields

    def report_sections(self, g: Any) -> list[str]:
        return [part for task in g.tasks("grounding") for part in (f"## Grounding: {task}\n\n", table(g, task), "\n")]

    def headline_columns(self, g: Any) -> list[Column]:
        return [Column(f"{task} grounding", task, "grounding", 0, "accuracy") for task in g.tasks("grounding")]

    # --------------------------------------------------------------- conformance
    def probe_outputs(self, subject: Any, method: Any, *, batch: int | None, raw: Any,
                      expressions: Sequence[str]) -> Any:
        import torch

        with torch.no_grad():
            raw = subject.data.raw if raw is None else raw
            step = batch or len(raw)
            scores: list[Any] = []
            for i in range(0, len(raw), step):
                scores += method.ground(raw[i : i + step], subject.data.boxes[i : i + step],
                                        list(expressions[i : i + step]))
            return torch.cat([s.reshape(-1) for s in scores])

    def probe_output_shape(self, subject: Any) -> tuple[tuple[int, ...], str]:
        return (sum(len(b) for b in subject.data.boxes),), "box scores"


def _crop_and_compare(runner: Any, cell: Any, samples: list, chance: float) -> tuple[dict, Any, Any]:
    """Crop each candidate box, classify the crops against the sample's expression."""
    import numpy as np

    from vlmeft.data.tasks import TASKS_VERSION, crop_boxes
    from vlmeft.data.types import Split
    from vlmeft.engine import predict

    expressions = sorted({s.expression for s in samples})
    index = {e: i for i, e in enumerate(expressions)}
    crops = [crop_boxes(s.image, s.boxes) for s in samples]
    split = Split(images=np.concatenate(crops), labels=np.zeros(sum(len(c) for c in crops), dtype=np.int64),
                  key=f"{cell.task}/grounding-crops/{TASKS_VERSION}")
    method = runner._build(cell.method, expressions, ["{}"], cell.seed)
    logits = predict(method, split, cache=runner.cache).numpy()  # [all crops, expressions]
    hits, start = 0, 0
    for s, c in zip(samples, crops):
        scores = logits[start : start + len(c), index[s.expression]]
        hits += int(int(scores.argmax()) == s.target)
        start += len(c)
    return ({"accuracy": hits / len(samples), "chance": chance, "variant": BASELINES[cell.method]}, method, None)


def table(g: Any, task: str) -> str:
    from vlmeft.bench import report

    p = "grounding"
    methods = report._by_score(g.methods(task, p), lambda m: report._first(g.stat(m, task, p, 0, "accuracy")))
    body = []
    for m in methods:
        rows = g.rows(m, task, p, 0)
        variant = str(rows[0].get("variant") or "") if rows else ""
        body.append([m, variant or "–", report.pct(g.stat(m, task, p, 0, "accuracy")),
                     report.pct(g.stat(m, task, p, 0, "chance"))])
    return report._table(["method", "variant", "accuracy", "chance"], body)


KIND = Grounding()
