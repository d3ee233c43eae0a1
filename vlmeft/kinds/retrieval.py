"""Image-text retrieval on a scene task: every caption is a class (template ``"{}"``).

Image-to-text and text-to-image recall@1/5 come from the method's own image-caption
logits, so any classification method that takes new class names can retrieve. There is
no caption training set, so only methods that use no training data are measured, once
(shots 0). Methods are never probed as retrieval methods: they are classifiers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlmeft.kinds import Column, Protocol, TaskKind

KEYS = ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5")


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


class Retrieval(TaskKind):
    name = "retrieval"
    order = 10
    data = "scenes"
    example = "vlmeft run {id} --task scenes --protocol retrieval"
    protocols = (Protocol("retrieval", False, "image-text recall@1/5 both ways on scene captions"),)
    metrics = (*KEYS, "r1", "r5")
    classifier = True
    observe = None

    def task_fits(self, load: Callable[[], Any], protocol: str) -> bool:
        return True  # every scene task has captions

    def method_fits(self, caps: Any, method: str, protocol: str) -> bool:
        return caps.builds and caps.classification and caps.new_classes and not caps.uses_data

    def measure(self, runner: Any, cell: Any) -> tuple[dict[str, Any], Any, Any]:
        import numpy as np

        from vlmeft.data.tasks import TASKS_VERSION, retrieval_metrics
        from vlmeft.data.types import Split
        from vlmeft.engine import predict

        scene = runner._task(cell.task)
        n = len(scene.captions)
        split = Split(images=scene.images, labels=np.arange(n, dtype=np.int64),
                      key=f"{cell.task}/retrieval-images/{TASKS_VERSION}")
        method = runner._build(cell.method, list(scene.captions), ["{}"], cell.seed)
        sim = predict(method, split, cache=runner.cache).numpy()  # [images, captions]
        m = retrieval_metrics(sim, ks=(1, 5))  # percentages
        out = {k: m[f"{d}_R@{r}"] / 100.0 for d in ("i2t", "t2i") for r in (1, 5) for k in [f"{d}_r{r}"]}
        out["r1"] = (out["i2t_r1"] + out["t2i_r1"]) / 2
        out["r5"] = (out["i2t_r5"] + out["t2i_r5"]) / 2
        return out, method, None

    def run_summary(self, runner: Any, cell: Any, metrics: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        m = metrics
        return [f"image->text R@1 {_pct(m['i2t_r1'])}  R@5 {_pct(m['i2t_r5'])}",
                f"text->image R@1 {_pct(m['t2i_r1'])}  R@5 {_pct(m['t2i_r5'])}"], dict(metrics)

    def report_sections(self, g: Any) -> list[str]:
        return [part for task in g.tasks("retrieval") for part in (f"## Retrieval: {task}\n\n", table(g, task), "\n")]

    def headline_columns(self, g: Any) -> list[Column]:
        return [Column(f"{task} R@1 (both ways)", task, "retrieval", 0, "r1") for task in g.tasks("retrieval")]


def table(g: Any, task: str) -> str:
    from vlmeft.bench import report

    p = "retrieval"
    methods = report._by_score(g.methods(task, p), lambda m: report._first(g.stat(m, task, p, 0, "r1")))
    body = [[m, *(report.pct(g.stat(m, task, p, 0, key)) for key in KEYS)] for m in methods]
    return report._table(["method", "image→text R@1", "image→text R@5", "text→image R@1", "text→image R@5"], body)


KIND = Retrieval()
