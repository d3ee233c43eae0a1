"""Image classification: a method maps images to logits over class names.

Protocols (all train on k shots per class; few-shot sampling, base/novel splits and the
harmonic mean are :mod:`vlmeft.data.protocol`'s):

- ``few-shot``: ``shots`` per class from train, ``min(shots, 4)`` from val (selection
  only), accuracy on the full test split.
- ``base-to-novel``: train on the base half of the classes, accuracy on base test
  images; then switch the label set to the novel half (``set_classnames``, trained
  tensors untouched) and test on novel images; HM of the two. The novel class *names*
  (never their images) are offered before training through ``set_virtual_classnames``,
  which only a method that learns from names alone uses (LASP-V's virtual classes).
- ``cross-domain``: train on the source domain, accuracy on its test split and on each
  shifted test domain of the same task (``domains``).
- ``cross-dataset`` and ``domain-generalisation``: train on the source task (CoOp:
  ImageNet, 16 shots), then evaluate on whole other tasks, each with its own class
  names and templates (``targets``): the other ten datasets, or ImageNet-V2, -Sketch,
  -A and -R. A target whose data is missing is skipped and listed under
  ``missing_targets``.

Every row carries zero-shot CLIP on the same test images (``zero_shot_*``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from vlmeft.errors import DatasetMissing, VlmeftError
from vlmeft.kinds import Column, Protocol, TaskKind, ref

TRANSFER = ("cross-dataset", "domain-generalisation")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


class Classification(TaskKind):
    name = "classification"
    label = "image classification"
    order = 0
    data = "classification"
    example = "vlmeft run {id} --task digits --shots 4 --seed 1"
    protocols = (
        Protocol("few-shot", True, "k shots per class, accuracy on the test split", "accuracy"),
        Protocol("base-to-novel", True, "train on the base half of the classes, test on base and novel; HM", "hm"),
        Protocol("cross-domain", True, "train on the source domain, test on its shifted test domains",
                 "shifted_mean"),
        Protocol("cross-dataset", True, "train on the source task, test on other datasets (CoOp: ImageNet -> 10)",
                 "target_mean"),
        Protocol("domain-generalisation", True, "train on the source task, test on its variants "
                 "(CoOp: ImageNet -> V2, Sketch, A, R)", "target_mean"),
    )
    metrics = ("accuracy", "zero_shot_accuracy", "base", "novel", "hm", "zero_shot_base", "zero_shot_novel",
               "zero_shot_hm", "domains", "zero_shot_domains", "shifted_mean", "targets", "zero_shot_targets",
               "target_mean", "missing_targets")
    classifier = True
    observe = staticmethod(ref("vlmeft.conformance.signatures:_observe_classification"))
    curves = (("few-shot", "accuracy", "accuracy"),)

    # ------------------------------------------------------------------ planning
    def task_fits(self, load: Callable[[], Any], protocol: str) -> bool:
        task = load()
        if protocol in TRANSFER:
            return bool(getattr(task, "targets", {}).get(protocol))
        if getattr(task, "source", ""):  # a test-only task (trained on its source)
            return False
        if protocol == "cross-domain":
            return bool(task.shifted)
        if protocol == "base-to-novel":
            return len(task.classnames) >= 2
        return True

    def unfit_reason(self, task: Any, protocol: str) -> str:
        if protocol in TRANSFER:
            return f"has no {protocol} targets (CoOp's are ImageNet's: coop:imagenet)"
        if getattr(task, "source", ""):
            return f"is test-only (trained on {task.source})"
        if protocol == "cross-domain":
            return "has no shifted test domains for cross-domain evaluation"
        if protocol == "base-to-novel":
            return f"has {len(task.classnames)} class(es); base-to-novel needs at least 2"
        return super().unfit_reason(task, protocol)

    def method_fits(self, caps: Any, method: str, protocol: str) -> bool:
        if not (caps.builds and caps.classification):
            return False
        if protocol == "base-to-novel" or protocol in TRANSFER:
            return caps.new_classes  # evaluated on label sets it was not trained on
        return True

    # ----------------------------------------------------------------- measuring
    def measure(self, runner: Any, cell: Any) -> tuple[dict[str, Any], Any, Any]:
        if cell.protocol == "few-shot":
            return _few_shot(runner, cell)
        if cell.protocol == "base-to-novel":
            return _base_to_novel(runner, cell)
        if cell.protocol == "cross-domain":
            return _cross_domain(runner, cell)
        return _transfer(runner, cell)

    def run_summary(self, runner: Any, cell: Any, metrics: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        m = metrics
        if cell.protocol == "base-to-novel":
            fields = dict(accuracy=m["hm"], zero_shot_accuracy=m["zero_shot_hm"], base_accuracy=m["base"],
                          novel_accuracy=m["novel"], hm=m["hm"], zero_shot_base_accuracy=m["zero_shot_base"],
                          zero_shot_novel_accuracy=m["zero_shot_novel"], zero_shot_hm=m["zero_shot_hm"])
            lines = [f"zero-shot: base {_pct(m['zero_shot_base'])}  novel {_pct(m['zero_shot_novel'])}  "
                     f"HM {_pct(m['zero_shot_hm'])}",
                     f"adapted:   base {_pct(m['base'])}  novel {_pct(m['novel'])}  HM {_pct(m['hm'])}"]
            return lines, fields
        fields = dict(accuracy=m["accuracy"], zero_shot_accuracy=m["zero_shot_accuracy"])
        lines = [f"zero-shot accuracy: {_pct(m['zero_shot_accuracy'])}", f"adapted accuracy:   {_pct(m['accuracy'])}"]
        if cell.protocol == "cross-domain":
            domains, zs_domains = m["domains"], m["zero_shot_domains"]
            for dom in sorted(domains):
                lines.append(f"  {dom}: zero-shot {_pct(zs_domains[dom])}  adapted {_pct(domains[dom])}")
            fields.update(domain_accuracy=domains, zero_shot_domain_accuracy=zs_domains,
                          shifted_mean=m["shifted_mean"])
        elif cell.protocol in TRANSFER:
            lines[0] = f"source zero-shot accuracy: {_pct(m['zero_shot_accuracy'])}"
            lines[1] = f"source adapted accuracy:   {_pct(m['accuracy'])}"
            for name, acc in m["targets"].items():
                lines.append(f"  {name}: zero-shot {_pct(m['zero_shot_targets'][name])}  adapted {_pct(acc)}")
            n = len(m["targets"])
            lines.append(f"  mean over {n} target{'s' if n > 1 else ''}: adapted {_pct(m['target_mean'])}")
            for name, where in m.get("missing_targets", {}).items():
                lines.append(f"  {name}: skipped, not found at {where}")
            fields.update(targets=m["targets"], zero_shot_targets=m["zero_shot_targets"],
                          target_mean=m["target_mean"], missing_targets=m.get("missing_targets", {}))
        return lines, fields

    # ----------------------------------------------------------------- reporting
    def report_sections(self, g: Any) -> list[str]:
        from vlmeft.bench import report

        out: list[str] = []
        for task in g.tasks("few-shot"):
            out += [f"## Few-shot accuracy: {task}\n\n", report.few_shot_table(g, task), "\n"]
        for task in g.tasks("base-to-novel"):
            out += [f"## Base-to-novel: {task}\n\n",
                    "HM = harmonic mean of the mean base and mean novel accuracies; ± = std of per-seed HMs.\n\n",
                    report.base_to_novel_table(g, task), "\n"]
        for task in g.tasks("cross-domain"):
            out += [f"## Cross-domain: {task}\n\n", "Trained on the source domain, tested on each shifted one.\n\n",
                    report.cross_domain_table(g, task), "\n"]
        for protocol in TRANSFER:
            for task in g.tasks(protocol):
                out += [f"## {protocol.capitalize().replace('-', ' ')}: {task}\n\n",
                        "Trained on the source task, tested on each target task with its own class names.\n\n",
                        report.transfer_table(g, task, protocol), "\n"]
        return out

    def headline_columns(self, g: Any) -> list[Column]:
        cols: list[Column] = []
        for task in g.tasks("few-shot"):
            top = (g.shots(task, "few-shot") or [0])[-1]
            cols.append(Column(f"{task} {top}-shot", task, "few-shot", top, "accuracy"))
        for task in g.tasks("base-to-novel"):
            top = (g.shots(task, "base-to-novel") or [0])[-1]
            cols += [Column(f"{task} {label}", task, "base-to-novel", top, metric)
                     for label, metric in (("base", "base"), ("novel", "novel"), ("HM", "hm"))]
        for task in g.tasks("cross-domain"):
            top = (g.shots(task, "cross-domain") or [0])[-1]
            cols += [Column(f"{task} source", task, "cross-domain", top, "accuracy"),
                     Column(f"{task} shifted", task, "cross-domain", top, "shifted_mean")]
        for protocol in TRANSFER:
            for task in g.tasks(protocol):
                top = (g.shots(task, protocol) or [0])[-1]
                cols.append(Column(f"{task} {protocol} targets", task, protocol, top, "target_mean"))
        return cols

    # --------------------------------------------------------------- conformance
    def probe_outputs(self, subject: Any, method: Any, *, batch: int | None, raw: Any,
                      expressions: Sequence[str]) -> Any:
        import torch

        with torch.no_grad():
            images = subject.data.images.to(subject.backbone.device)
            method.start_test_stream()  # one pass over the probe images, as the engine's predict
            step = batch or len(images)
            return torch.cat([method(images[i : i + step]) for i in range(0, len(images), step)])

    def probe_output_shape(self, subject: Any) -> tuple[tuple[int, ...], str]:
        from vlmeft.conformance.subject import BASE_CLASSES, BATCH

        return (BATCH, len(BASE_CLASSES)), "logits"


KIND = Classification()


# --------------------------------------------------------------------- evaluators
def _few_shot(runner: Any, cell: Any) -> tuple[dict, Any, Any]:
    task = runner._task(cell.task)
    method = runner._build(cell.method, task.classnames, task.templates, cell.seed)
    report = runner._fit(method, task, cell)
    return ({"accuracy": runner._evaluate(method, task.test),
             "zero_shot_accuracy": runner._zs_accuracy(task, task.test)}, method, report)


def _cross_domain(runner: Any, cell: Any) -> tuple[dict, Any, Any]:
    import numpy as np

    task = runner._task(cell.task)
    method = runner._build(cell.method, task.classnames, task.templates, cell.seed)
    report = runner._fit(method, task, cell)
    names = sorted(task.shifted)
    domains = {d: runner._evaluate(method, task.shifted[d]) for d in names}
    return ({"accuracy": runner._evaluate(method, task.test),
             "domains": domains,
             "shifted_mean": float(np.mean([domains[d] for d in names])),
             "zero_shot_accuracy": runner._zs_accuracy(task, task.test),
             "zero_shot_domains": {d: runner._zs_accuracy(task, task.shifted[d]) for d in names}},
            method, report)


def _base_to_novel(runner: Any, cell: Any) -> tuple[dict, Any, Any]:
    from vlmeft.data import protocol

    base_task, novel_task = protocol.base_novel(runner._task(cell.task))
    method = runner._build(cell.method, base_task.classnames, base_task.templates, cell.seed)
    method.set_virtual_classnames(novel_task.classnames)  # names without images (LASP-V); ignored by others
    report = runner._fit(method, base_task, cell)
    base = runner._evaluate(method, base_task.test)
    method.set_classnames(novel_task.classnames, novel_task.templates)
    novel = runner._evaluate(method, novel_task.test)
    zs_base = runner._zs_accuracy(base_task, base_task.test)
    zs_novel = runner._zs_accuracy(novel_task, novel_task.test)
    return ({"base": base, "novel": novel, "hm": protocol.harmonic_mean(base, novel),
             "zero_shot_base": zs_base, "zero_shot_novel": zs_novel,
             "zero_shot_hm": protocol.harmonic_mean(zs_base, zs_novel)}, method, report)


def _transfer(runner: Any, cell: Any) -> tuple[dict, Any, Any]:
    """Train on the source task, then evaluate on each target task (its own class names
    and templates; the trained tensors are untouched by ``set_classnames``)."""
    import numpy as np

    task = runner._task(cell.task)
    targets = tuple(getattr(task, "targets", {}).get(cell.protocol, ()))
    if not targets:
        raise VlmeftError(f"task '{cell.task}' has no {cell.protocol} targets", where="--task")
    method = runner._build(cell.method, task.classnames, task.templates, cell.seed)
    report = runner._fit(method, task, cell)
    out: dict[str, Any] = {"accuracy": runner._evaluate(method, task.test),
                           "zero_shot_accuracy": runner._zs_accuracy(task, task.test)}
    found: dict[str, float] = {}
    zero_shot: dict[str, float] = {}
    missing: dict[str, str] = {}
    for name in targets:
        try:
            target = runner._task(name)
        except DatasetMissing as err:
            missing[name] = err.where or str(err)
            print(f"note: {cell.protocol} target {name} skipped: {err}", file=sys.stderr)
            continue
        method.set_classnames(target.classnames, target.templates)
        found[name] = runner._evaluate(method, target.test)
        zero_shot[name] = runner._zs_accuracy(target, target.test)
    method.set_classnames(task.classnames, task.templates)
    if not found:
        raise VlmeftError(f"none of the {cell.protocol} targets of '{cell.task}' was found "
                          f"({', '.join(f'{n} at {w}' for n, w in missing.items())})", where="--data-root")
    out.update(targets=found, zero_shot_targets=zero_shot, target_mean=float(np.mean(list(found.values()))),
               missing_targets=missing)
    return out, method, report
