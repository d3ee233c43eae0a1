"""The evaluation protocol of CoOp/CoCoOp/MaPLe as tested code.

- Few-shot sampling: ``K`` images per class, drawn without replacement by a local
  ``numpy.random.Generator`` seeded from the run seed (never the global RNG), so the
  same seed gives the same images in any process. A class with fewer than ``K``
  images contributes all of them (Dassl does the same).
- Validation: ``min(K, 4)`` images per class from the val split. It is used for
  hyperparameter searches (Tip-Adapter's alpha and beta, the linear probe's C) and, where
  ``config.select == "val"``, to keep the epoch with the best val accuracy; the test
  split never chooses anything.
- Which trained state is reported (``config.select``, ``vlmeft run --select``): the
  official code of CoOp, CoCoOp, KgCoOp, CLIP-Adapter, VPT, IVLP, MaPLe and MMA (all on
  Dassl, whose ``TEST.FINAL_MODEL`` is ``"last_step"``; their test scripts load the last
  epoch) and of CLIP-LoRA (``VALIDATION = False``: test after the last iteration) reports
  the *last* epoch, so their paper recipe uses ``last``. Tip-Adapter-F's and VP's scripts
  keep the epoch with the best *test* accuracy (Tip-Adapter issue #11; VP validates on
  CIFAR-100's test split); their paper recipe keeps the best epoch on val instead.
  Tip-Adapter's search ran on val (on test for ImageNet), CALIP's on test; here both
  searches, where they exist, run on val. The embedded recipe uses ``val`` for every
  method (chosen when the embedded benchmark was calibrated).
- Base-to-novel: the first ``ceil(n/2)`` sorted labels are base, the rest novel; each
  half is relabelled ``0..m-1``.
- HM: the harmonic mean of the *averaged* base and novel accuracies (not the mean of
  per-dataset HMs); this reproduces MaPLe's 78.55 and CLIP's 71.70.
- Seeds: mean and standard deviation over seeds (population std, ``ddof=0``, as
  CoOp's ``parse_test_res.py`` computes it).

How this draw differs from Dassl's ``DatasetBase.generate_fewshot_dataset`` (which CoOp,
CoCoOp and MaPLe use): same counts (``K`` per class, all of a smaller class, no repeats,
val ``min(K, 4)``), other images. Dassl draws with the *global* ``random`` module seeded
by the run seed, class by class in order of first appearance, ``random.sample`` per
class, train first and then val from the same stream; its lists keep the drawn order.
Here each class draws from a local numpy generator (train and val on separate streams)
and indices are sorted. A task that must match the official images brings its own
sampler (``task.sampler``, e.g. the CoOp datasets' Dassl-order draw in
:mod:`vlmeft.data.coop`); :func:`few_shot_splits` uses it. Base-to-novel then follows
CoCoOp's order: draw the shots over *all* classes, then keep the base or novel ones
(``subsample_classes`` runs after ``generate_fewshot_dataset``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from vlmeft.data.types import ClassificationTask, FewShotSampler, Split
from vlmeft.errors import VlmeftError

VAL_SHOTS_CAP = 4


def subset(split: Split, indices: Sequence[int] | np.ndarray, tag: str, labels: np.ndarray | None = None) -> Split:
    """The images ``indices`` of ``split`` (optionally relabelled); ``tag`` extends the key."""
    idx = np.asarray(indices, dtype=np.int64)
    images = split.images[idx] if isinstance(split.images, np.ndarray) else [split.images[i] for i in idx]
    new_labels = np.asarray(split.labels, dtype=np.int64)[idx] if labels is None else labels
    return Split(images=images, labels=new_labels, key=f"{split.key}|{tag}")


def few_shot_indices(labels: np.ndarray, shots: int, seed: int, stream: int = 0) -> np.ndarray:
    """Sorted indices of ``shots`` examples per class. ``stream`` separates draws that
    share a seed (train 0, val 1)."""
    if shots <= 0:
        raise VlmeftError(f"shots must be positive, got {shots}", where="--shots")
    rng = np.random.default_rng([int(seed), int(stream)])
    labels = np.asarray(labels)
    chosen: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = min(shots, len(members))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def sample_few_shot(split: Split, shots: int, seed: int, stream: int = 0) -> Split:
    """A class-balanced ``shots``-per-class subset of ``split``."""
    idx = few_shot_indices(split.labels, shots, seed, stream)
    return subset(split, idx, f"{shots}shot-seed{seed}-s{stream}")


def few_shot_splits(task: ClassificationTask, shots: int, seed: int) -> tuple[Split, Split]:
    """(train, val): ``shots`` per class from train, ``min(shots, 4)`` from val (the
    task's own sampler's draw, if it has one)."""
    if task.sampler is not None:
        if shots <= 0:
            raise VlmeftError(f"shots must be positive, got {shots}", where="--shots")
        return task.sampler.draw(shots, seed)
    train = sample_few_shot(task.train, shots, seed, stream=0)
    val = sample_few_shot(task.val, min(shots, VAL_SHOTS_CAP), seed, stream=1)
    return train, val


def base_novel_labels(num_classes: int) -> tuple[list[int], list[int]]:
    """Base = the first ``ceil(n/2)`` sorted labels, novel = the rest."""
    labels = list(range(num_classes))
    m = math.ceil(num_classes / 2)
    return labels[:m], labels[m:]


def _restrict(split: Split, keep: list[int], tag: str) -> Split:
    mapping = np.full(max(keep) + 1 if keep else 1, -1, dtype=np.int64)
    mapping[keep] = np.arange(len(keep))
    labels = np.asarray(split.labels, dtype=np.int64)
    idx = np.flatnonzero(np.isin(labels, keep))
    return subset(split, idx, tag, labels=mapping[labels[idx]])


def base_novel(task: ClassificationTask) -> tuple[ClassificationTask, ClassificationTask]:
    """Two tasks, base and novel classes, each relabelled ``0..m-1`` (all splits,
    shifted test sets included)."""
    if len(task.classnames) < 2:
        raise VlmeftError(f"task '{task.name}' has {len(task.classnames)} class(es); base-to-novel needs at least 2")
    base, novel = base_novel_labels(len(task.classnames))

    def part(keep: list[int], tag: str) -> ClassificationTask:
        return replace(
            task,
            name=f"{task.name}:{tag}",
            classnames=[task.classnames[i] for i in keep],
            train=_restrict(task.train, keep, tag),
            val=_restrict(task.val, keep, tag),
            test=_restrict(task.test, keep, tag),
            shifted={k: _restrict(v, keep, tag) for k, v in task.shifted.items()},
            sampler=None if task.sampler is None else RestrictedSampler(task.sampler, tuple(keep), tag),
        )

    return part(base, "base"), part(novel, "novel")


@dataclass(frozen=True)
class RestrictedSampler:
    """A task sampler's draw over all classes, then only the ``keep`` labels, relabelled
    ``0..m-1`` (CoCoOp samples the shots before subsampling the classes)."""

    inner: FewShotSampler
    keep: tuple[int, ...]
    tag: str

    def draw(self, shots: int, seed: int) -> tuple[Split, Split]:
        train, val = self.inner.draw(shots, seed)
        return _restrict(train, list(self.keep), self.tag), _restrict(val, list(self.keep), self.tag)

    def without(self, paths: set[str]) -> RestrictedSampler:
        return RestrictedSampler(self.inner.without(paths), self.keep, self.tag)


def without_images(task: ClassificationTask, paths: set[str]) -> tuple[ClassificationTask, set[str]]:
    """``task`` without the image files ``paths`` (every split and its sampler), and which of
    them it held. Splits of in-memory images are returned unchanged."""
    dropped: set[str] = set()
    tag = "without-" + hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()[:8]

    def drop(split: Split) -> Split:
        if isinstance(split.images, np.ndarray):
            return split
        keep = [i for i, p in enumerate(split.images) if str(p) not in paths]
        if len(keep) == len(split.images):
            return split
        dropped.update(str(split.images[i]) for i in set(range(len(split.images))) - set(keep))
        return subset(split, keep, tag)

    if not isinstance(task, ClassificationTask):
        return task, dropped
    out = replace(task, train=drop(task.train), val=drop(task.val), test=drop(task.test),
                  shifted={k: drop(v) for k, v in task.shifted.items()},
                  sampler=None if task.sampler is None else task.sampler.without(paths))
    return out, dropped


def harmonic_mean(base: float, novel: float) -> float:
    """HM of two accuracies (0 when either is 0)."""
    return 0.0 if base <= 0 or novel <= 0 else 2 * base * novel / (base + novel)


def base_novel_hm(base_accuracies: Sequence[float], novel_accuracies: Sequence[float]) -> dict[str, float]:
    """Average base and novel accuracies over datasets, then their harmonic mean."""
    if not base_accuracies or len(base_accuracies) != len(novel_accuracies):
        raise VlmeftError("need one base and one novel accuracy per dataset")
    base = float(np.mean(base_accuracies))
    novel = float(np.mean(novel_accuracies))
    return {"base": base, "novel": novel, "hm": harmonic_mean(base, novel)}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation over seeds."""
    if len(values) == 0:
        raise VlmeftError("no values to average")
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())
