"""Learning-rate schedules and the training budget, one function per question.

``MethodConfig.schedule`` picks the schedule:

- ``"dassl"`` (the paper recipe of every Dassl-based method: CoOp, CoCoOp, KgCoOp,
  CLIP-Adapter, VPT, IVLP, MaPLe, MMA): stepped per epoch. A constant warm-up at
  ``warmup_lr`` for ``warmup_epochs``, then cosine annealing over ``epochs`` whose count
  *restarts* after the warm-up (Dassl's ``WARMUP_RECOUNT = True``):
  ``lr_e = lr (1 + cos(pi (e - W) / E)) / 2`` for ``e >= W``. So the first epoch after
  the warm-up trains at the peak lr. MaPLe's 5 epochs at 0.0035 give
  [1e-5, .0035, .00317, .00229, .00121].
- ``"legacy"`` (the embedded recipe): the project's first schedule, whose cosine counts
  from epoch 0, ``lr_e = lr (1 + cos(pi e / E)) / 2``, one epoch ahead of Dassl's (the same
  5 epochs give [1e-5, .00317, .00229, .00121, .00033]); a warm-up that would take every
  epoch is shortened to leave one. Kept so the committed embedded numbers stay.
- ``"cosine-steps"`` (Tip-Adapter-F, CLIP-LoRA, VP): stepped per optimiser step: a linear
  warm-up ``lr (s + 1) / W`` for ``warmup_steps`` W steps (VP's ``cosine_lr``), then
  ``lr (1 + cos(pi (s - W) / (S - W))) / 2`` over the remaining steps (with W = 0, torch's
  ``CosineAnnealingLR`` stepped every iteration, as Tip-Adapter-F and CLIP-LoRA do; CLIP-LoRA's
  ``eta_min`` of 1e-6 is not modelled).

Every rate is multiplied by ``factor`` (``lr_logit_scale``'s rescaling, see the engine).
"""

from __future__ import annotations

import math

import numpy as np


def per_step(config) -> bool:  # noqa: ANN001 (any MethodConfig)
    """Whether the lr changes every optimiser step rather than every epoch."""
    return getattr(config, "schedule", "legacy") == "cosine-steps"


def lr_at(epoch: int, config, epochs: int | None = None, factor: float = 1.0) -> float:  # noqa: ANN001
    """Learning rate of 0-based ``epoch`` of ``epochs`` (default ``config.epochs``) under a
    per-epoch schedule (``legacy`` or ``dassl``)."""
    epochs = config.epochs if epochs is None else epochs
    if getattr(config, "schedule", "legacy") == "dassl":
        warmup = config.warmup_epochs
        if epoch < warmup:
            return factor * config.warmup_lr
        return factor * 0.5 * config.lr * (1.0 + math.cos(math.pi * (epoch - warmup) / max(epochs, 1)))
    warmup = min(config.warmup_epochs, max(epochs - 1, 0))
    if epoch < warmup:
        return factor * config.warmup_lr
    return factor * 0.5 * config.lr * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


def lr_at_step(step: int, total_steps: int, config, factor: float = 1.0) -> float:  # noqa: ANN001
    """Learning rate of 0-based optimiser ``step`` of ``total_steps`` under ``cosine-steps``."""
    warmup = int(getattr(config, "warmup_steps", 0))
    if step < warmup:
        return factor * config.lr * (step + 1) / warmup
    span = max(total_steps - warmup, 1)
    return factor * 0.5 * config.lr * (1.0 + math.cos(math.pi * (step - warmup) / span))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps an epoch takes over ``n`` images (the last partial batch is
    dropped when there is at least one full batch, as Dassl's loader does)."""
    return n // batch_size if n >= batch_size else 1


def shots_of(labels) -> int:  # noqa: ANN001 (array-like of ints)
    """Images of the largest class: the K of a K-shot split."""
    labels = np.asarray(labels)
    return int(np.bincount(labels).max()) if labels.size else 0


def plan(labels, config) -> tuple[int, int]:  # noqa: ANN001
    """``(epochs, steps)`` of a training run over a split with ``labels``.

    ``steps_per_shot > 0`` fixes the number of steps (``steps_per_shot x shots``) and runs
    as many epochs as that takes, the last one cut short. Otherwise ``epochs`` full
    epochs, raised so that training takes at least ``min_steps`` steps (the schedule
    stretches over the extra epochs); ``epochs = 0`` trains nothing."""
    n = len(labels)
    per_epoch = steps_per_epoch(n, config.batch_size)
    budget = int(getattr(config, "steps_per_shot", 0)) * shots_of(labels)
    if budget > 0:
        return math.ceil(budget / per_epoch), budget
    if config.epochs <= 0:
        return 0, 0
    need = math.ceil(getattr(config, "min_steps", 0) / per_epoch)
    epochs = max(config.epochs, need)
    return epochs, epochs * per_epoch
