"""Measuring one cell: build the method, train it under the protocol, evaluate, one row out.

The mechanics belong to other modules and are only called here: few-shot sampling,
base/novel splits and the harmonic mean (:mod:`vlmeft.data.protocol`), training and
evaluation (:mod:`vlmeft.engine`), retrieval recall and box crops
(:mod:`vlmeft.data.tasks`), red-circle grounding (its method module).

Per protocol:

- ``few-shot``: ``shots`` per class from train, ``min(shots, 4)`` from val (selection
  only), accuracy on the full test split.
- ``base-to-novel``: train on the base half of the classes, accuracy on base test
  images; then switch the label set to the novel half (``set_classnames``, trained
  tensors untouched) and test on novel images; HM of the two.
- ``cross-domain``: train on the source domain, accuracy on its test split and on each
  shifted test domain (``domains``).
- ``retrieval``: every caption is a class (template ``"{}"``); image-to-text and
  text-to-image recall@1/5 from the method's own image-caption logits.
- ``grounding``: a grounding method picks one box per referring expression; zero-shot
  CLIP's baseline crops each box and compares the crops with the expression.

All metrics are fractions in [0, 1]. ``zero_shot_accuracy`` (and ``zero_shot_base`` /
``zero_shot_novel`` / ``zero_shot_domains``) is zero-shot CLIP on the same test images,
so every row carries its own reference point.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vlmeft import __version__
from vlmeft.bench.plan import GROUNDING_BASELINES, Cell
from vlmeft.bench.store import SCHEMA
from vlmeft.errors import VlmeftError


# Shared code every method's result depends on, besides its own module.
_SHARED_CODE = ("method.py", "prompting.py", "adapters_common.py", "engine/train.py", "engine/schedule.py",
                "data/protocol.py", "data/augment.py", "recipes.py")


@lru_cache(maxsize=None)
def code_fingerprint(method: str) -> str:
    """A hash of the method's module and the shared training code: a finished cell whose
    fingerprint differs was measured with other code, and is measured again."""
    from vlmeft import registry

    root = Path(__file__).resolve().parents[1]  # the vlmeft package
    try:
        files = [Path(inspect.getsourcefile(registry.get(method)) or "")]
    except (VlmeftError, ImportError, AttributeError, TypeError):
        return ""  # no longer registered or importable: never counts as current
    files += [root / name for name in _SHARED_CODE]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()[:12]


class CellRunner:
    """Runs cells on one backbone, sharing the task data and the frozen-feature cache.

    The benchmark turns each cell into a row (:meth:`run`); ``vlmeft run`` measures one
    cell (:meth:`measure`) with the task it loaded itself (``task_loader``), progress bars
    and a checkpoint written once training ends (``on_trained``).
    """

    def __init__(self, backbone: Any, overrides_for: Any, *, profile: str = "", config_hash: str = "",
                 code: dict[str, str] | None = None, task_loader: Callable[[str], Any] | None = None,
                 progress: bool = False, on_trained: Callable[[Any], None] | None = None,
                 recipe: str | None = None) -> None:
        from vlmeft.engine import FeatureCache
        from vlmeft.recipes import check_recipe, default_recipe

        self.backbone = backbone
        self.recipe = check_recipe(recipe) if recipe else default_recipe(backbone)  # paper / embedded
        self.overrides_for = overrides_for  # method id -> {field: value}
        self.profile = profile
        self.config_hash = config_hash
        self.code = dict(code or {})  # method -> code fingerprint taken when the run started
        self.task_loader = task_loader  # task name -> task; default: the named tasks
        self.progress = progress
        # Called with the trained method before any evaluation switches its label set.
        self.on_trained = on_trained
        # Big enough for every sampled split of a full run: features are small ([N, E]).
        self.cache = FeatureCache(max_items=4096)
        self._zero_shot: dict[tuple, Any] = {}

    # ------------------------------------------------------------------ helpers
    def _task(self, name: str) -> Any:
        if self.task_loader is not None:
            return self.task_loader(name)
        from vlmeft.bench.plan import _task

        return _task(name)

    def _build(self, name: str, classnames: list[str], templates: list[str], seed: int) -> Any:
        from vlmeft import registry

        return registry.build(name, self.backbone, classnames, templates, self.overrides_for(name), seed=seed,
                              recipe=self.recipe)

    def _evaluate(self, method: Any, split: Any) -> float:
        from vlmeft.engine import evaluate

        return evaluate(method, split, cache=self.cache)

    def _zs_accuracy(self, task: Any, split: Any) -> float:
        """Zero-shot CLIP on ``split`` with ``task``'s classes (memoised per split)."""
        key = (tuple(task.classnames), split.key, len(split))
        if key not in self._zero_shot:
            zs = self._build("zsclip", task.classnames, task.templates, seed=0)
            self._zero_shot[key] = self._evaluate(zs, split)
        return self._zero_shot[key]

    def _fit(self, method: Any, task: Any, cell: Cell) -> Any:
        """Train on ``cell.shots`` per class (nothing for zero-shot cells)."""
        from vlmeft.data import protocol
        from vlmeft.engine import fit

        if cell.shots == 0:
            return None
        train, val = protocol.few_shot_splits(task, cell.shots, cell.seed)
        report = fit(method, train, val, seed=cell.seed, progress=self.progress, cache=self.cache)
        if self.on_trained is not None:
            self.on_trained(method)
        return report

    # --------------------------------------------------------------------- run
    def measure(self, cell: Cell) -> tuple[dict[str, Any], Any, Any]:
        """Train and evaluate ``cell`` under its protocol: ``(metrics, method, report)``,
        where ``report`` is the engine's training report (``None`` when nothing trained)."""
        measure = getattr(self, "_" + cell.protocol.replace("-", "_"), None)
        if measure is None:
            raise VlmeftError(f"unknown protocol '{cell.protocol}'", where="--protocols")
        return measure(cell)

    def run(self, cell: Cell) -> dict[str, Any]:
        """Measure ``cell``; returns its row."""
        self._task(cell.task)  # build the task data outside the timed part (cached afterwards)
        start, cpu_start = time.perf_counter(), time.process_time()
        metrics, method, report = self.measure(cell)
        row: dict[str, Any] = {"schema": SCHEMA, **cell.to_dict()}
        row.update(metrics)
        row["train_seconds"] = round(report.train_seconds, 4) if report is not None else 0.0
        row["trainable_params"] = int(method.num_trainable()) if method is not None else 0
        if report is not None:
            row["epochs"] = report.epochs
            row["best_epoch"] = report.best_epoch
            if report.selected:
                row["selected"] = {k: float(v) for k, v in report.selected.items()}
        row["recipe"] = self.recipe
        row["overrides"] = dict(self.overrides_for(cell.method))
        row["code"] = self.code.get(cell.method) or code_fingerprint(cell.method)
        row["cell_seconds"] = round(time.perf_counter() - start, 4)  # wall time: train + evaluate
        row["cell_cpu_seconds"] = round(time.process_time() - cpu_start, 4)  # all threads' CPU time
        row["profile"] = self.profile
        row["config_hash"] = self.config_hash
        row["vlmeft_version"] = __version__
        return row

    def _few_shot(self, cell: Cell) -> tuple[dict, Any, Any]:
        task = self._task(cell.task)
        method = self._build(cell.method, task.classnames, task.templates, cell.seed)
        report = self._fit(method, task, cell)
        return ({"accuracy": self._evaluate(method, task.test),
                 "zero_shot_accuracy": self._zs_accuracy(task, task.test)}, method, report)

    def _cross_domain(self, cell: Cell) -> tuple[dict, Any, Any]:
        task = self._task(cell.task)
        method = self._build(cell.method, task.classnames, task.templates, cell.seed)
        report = self._fit(method, task, cell)
        names = sorted(task.shifted)
        domains = {d: self._evaluate(method, task.shifted[d]) for d in names}
        return ({"accuracy": self._evaluate(method, task.test),
                 "domains": domains,
                 "shifted_mean": float(np.mean([domains[d] for d in names])),
                 "zero_shot_accuracy": self._zs_accuracy(task, task.test),
                 "zero_shot_domains": {d: self._zs_accuracy(task, task.shifted[d]) for d in names}},
                method, report)

    def _base_to_novel(self, cell: Cell) -> tuple[dict, Any, Any]:
        from vlmeft.data import protocol

        base_task, novel_task = protocol.base_novel(self._task(cell.task))
        method = self._build(cell.method, base_task.classnames, base_task.templates, cell.seed)
        report = self._fit(method, base_task, cell)
        base = self._evaluate(method, base_task.test)
        method.set_classnames(novel_task.classnames, novel_task.templates)
        novel = self._evaluate(method, novel_task.test)
        zs_base = self._zs_accuracy(base_task, base_task.test)
        zs_novel = self._zs_accuracy(novel_task, novel_task.test)
        return ({"base": base, "novel": novel, "hm": protocol.harmonic_mean(base, novel),
                 "zero_shot_base": zs_base, "zero_shot_novel": zs_novel,
                 "zero_shot_hm": protocol.harmonic_mean(zs_base, zs_novel)}, method, report)

    def _retrieval(self, cell: Cell) -> tuple[dict, Any, Any]:
        from vlmeft.data.tasks import TASKS_VERSION, retrieval_metrics
        from vlmeft.data.types import Split
        from vlmeft.engine import predict

        scene = self._task(cell.task)
        n = len(scene.captions)
        split = Split(images=scene.images, labels=np.arange(n, dtype=np.int64),
                      key=f"{cell.task}/retrieval-images/{TASKS_VERSION}")
        method = self._build(cell.method, list(scene.captions), ["{}"], cell.seed)
        sim = predict(method, split, cache=self.cache).numpy()  # [images, captions]
        m = retrieval_metrics(sim, ks=(1, 5))  # percentages
        out = {k: m[f"{d}_R@{r}"] / 100.0 for d in ("i2t", "t2i") for r in (1, 5) for k in [f"{d}_r{r}"]}
        out["r1"] = (out["i2t_r1"] + out["t2i_r1"]) / 2
        out["r5"] = (out["i2t_r5"] + out["t2i_r5"]) / 2
        return out, method, None

    def _grounding(self, cell: Cell) -> tuple[dict, Any, Any]:
        from vlmeft import registry

        scene = self._task(cell.task)
        samples = scene.grounding
        chance = float(np.mean([1.0 / len(s.boxes) for s in samples]))
        if "grounding" in registry.get(cell.method).tasks:
            method = self._build(cell.method, [], ["{}"], cell.seed)
            evaluator = getattr(sys.modules[type(method).__module__], "grounding_accuracy", None)
            if evaluator is None:
                raise VlmeftError(f"method '{cell.method}' declares grounding but its module has no "
                                  "grounding_accuracy(method, samples)")
            return {"accuracy": float(evaluator(method, samples)), "chance": chance}, method, None
        if GROUNDING_BASELINES.get(cell.method) == "crop-and-compare":
            return self._crop_and_compare(cell, samples, chance)
        raise VlmeftError(f"method '{cell.method}' does not do grounding")

    def _crop_and_compare(self, cell: Cell, samples: list, chance: float) -> tuple[dict, Any, Any]:
        """Crop each candidate box, classify the crops against the sample's expression."""
        from vlmeft.data.tasks import TASKS_VERSION, crop_boxes
        from vlmeft.data.types import Split
        from vlmeft.engine import predict

        expressions = sorted({s.expression for s in samples})
        index = {e: i for i, e in enumerate(expressions)}
        crops = [crop_boxes(s.image, s.boxes) for s in samples]
        split = Split(images=np.concatenate(crops), labels=np.zeros(sum(len(c) for c in crops), dtype=np.int64),
                      key=f"{cell.task}/grounding-crops/{TASKS_VERSION}")
        method = self._build(cell.method, expressions, ["{}"], cell.seed)
        logits = predict(method, split, cache=self.cache).numpy()  # [all crops, expressions]
        hits, start = 0, 0
        for s, c in zip(samples, crops):
            scores = logits[start : start + len(c), index[s.expression]]
            hits += int(int(scores.argmax()) == s.target)
            start += len(c)
        return ({"accuracy": hits / len(samples), "chance": chance, "variant": GROUNDING_BASELINES[cell.method]},
                method, None)
