"""Measuring one cell: build the method, train it under the protocol, evaluate, one row out.

The mechanics belong to other modules and are only called here: few-shot sampling,
base/novel splits and the harmonic mean (:mod:`vlmeft.data.protocol`), training and
evaluation (:mod:`vlmeft.engine`), and each protocol's evaluator, which its task kind
declares (:mod:`vlmeft.kinds`: classification, retrieval, grounding, ...).

All metrics are fractions in [0, 1]. ``zero_shot_accuracy`` (and ``zero_shot_base`` /
``zero_shot_novel`` / ``zero_shot_domains``) is zero-shot CLIP on the same test images,
so every row carries its own reference point.

Unreadable images: with ``on_bad_image="error"`` (the default) the first one ends the
cell with an error naming its file. With ``"skip"``, the cell is measured again without
it (and without every bad image found before in this runner); the row lists the skipped
paths under ``skipped_images``.
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

from vlmeft import __version__
from vlmeft.bench.plan import Cell
from vlmeft.bench.store import SCHEMA
from vlmeft.errors import VlmeftError


BAD_IMAGE_POLICIES = ("error", "skip")
# Shared code every method's result depends on, besides its own module.
_SHARED_CODE = ("method.py", "prompting.py", "adapters_common.py", "engine/train.py", "engine/schedule.py",
                "data/protocol.py", "data/augment.py", "recipes.py")
# ... and, for the generative (VQA, captioning) methods, the generative stack.
_GENERATIVE_CODE = ("generative.py", "decoder_adapters.py", "engine/generative.py", "backbone/captioner.py",
                    "kinds/_generative.py", "data/vl.py")


def code_files(method: str) -> list[Path]:
    """The files a method's results depend on: its own module, the modules of the method
    classes it builds on (CuPL on DCLIP, FGVP on the red circle, PromptSRC on IVLP: a
    change there changes it too) and the shared training code. Raises for an unknown id."""
    from vlmeft import kinds, registry

    root = Path(__file__).resolve().parents[1]  # the vlmeft package
    cls = registry.get(method)
    bases = [k for k in cls.__mro__[1:] if k.__module__.startswith("vlmeft.methods.")]
    files = dict.fromkeys(Path(inspect.getsourcefile(k) or "") for k in (cls, *bases))
    shared = [root / name for name in _SHARED_CODE]
    if kinds.generates(cls):
        shared += [root / name for name in _GENERATIVE_CODE]
    return list(files) + shared


@lru_cache(maxsize=None)
def code_fingerprint(method: str) -> str:
    """A hash of :func:`code_files`: a finished cell whose fingerprint differs was measured
    with other code, and is measured again."""
    try:
        files = code_files(method)
    except (VlmeftError, ImportError, AttributeError, TypeError, KeyError):
        return ""  # no longer registered or importable: never counts as current
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
                 recipe: str | None = None, on_bad_image: str = "error") -> None:
        from vlmeft.engine import FeatureCache
        from vlmeft.recipes import check_recipe, default_recipe

        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise VlmeftError(f"expected one of {', '.join(BAD_IMAGE_POLICIES)}, got '{on_bad_image}'",
                              where="--on-bad-image")

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
        self.on_bad_image = on_bad_image
        self.bad_images: set[str] = set()  # unreadable images found so far (skipped from then on)
        self._skipped: set[str] = set()  # those that the cell being measured would have read

    # ------------------------------------------------------------------ helpers
    def _task(self, name: str) -> Any:
        if self.task_loader is not None:
            task = self.task_loader(name)
        else:
            from vlmeft.bench.plan import _task

            task = _task(name)
        if self.bad_images:
            from vlmeft.data.protocol import without_images

            task, dropped = without_images(task, self.bad_images)
            self._skipped |= dropped
        return task

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
        from vlmeft import kinds
        from vlmeft.data.loading import UnreadableImage

        kind = kinds.for_protocol(cell.protocol)
        self._skipped = set()
        while True:
            try:
                return kind.measure(self, cell)
            except UnreadableImage as err:
                if self.on_bad_image != "skip" or err.path in self.bad_images:
                    raise
                print(f"note: skipping unreadable image {err}", file=sys.stderr)
                self.bad_images.add(err.path)
                self._skipped = set()

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
        if self._skipped:
            row["skipped_images"] = sorted(self._skipped)
        row["overrides"] = dict(self.overrides_for(cell.method))
        row["code"] = self.code.get(cell.method) or code_fingerprint(cell.method)
        row["cell_seconds"] = round(time.perf_counter() - start, 4)  # wall time: train + evaluate
        row["cell_cpu_seconds"] = round(time.process_time() - cpu_start, 4)  # all threads' CPU time
        row["profile"] = self.profile
        row["config_hash"] = self.config_hash
        row["vlmeft_version"] = __version__
        return row
