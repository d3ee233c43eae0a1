"""A plain training loop and evaluation: what CoOp's Dassl trainer does, in one page.

- Optimiser: SGD with momentum, AdamW, or Adam with the weight decay as an L2 term
  (Dassl's "adam"); ``eps`` from the config's ``adam_eps`` when a method declares one,
  else 1e-8, over ``method.trainable_parameters()`` only (the
  backbone sits outside the method's module tree, so it cannot be optimised), in the
  groups of ``method.parameter_groups()``, each at its multiple of the scheduled lr
  (DPT's text side, DePT's head).
- Gradients come from ``method.backward(loss)``: plain backprop unless a method edits its
  update direction (ProGrad).
- ``method.end_epoch(epoch, epochs)`` runs after each epoch's steps, before its val
  evaluation (PromptSRC aggregates its prompts there).
- Opt-in (``MethodConfig.lr_logit_scale = S > 0``): with SGD the learning rates are
  multiplied by ``S / backbone.logit_scale()``, because the cross-entropy gradient is
  proportional to the logit scale, so a paper's lr tuned at CLIP's 100 keeps its step
  size on a backbone with a smaller learned scale. AdamW normalises the gradient's
  scale away and is never rescaled. Off by default (see the field's comment).
- Schedule and budget (:mod:`vlmeft.engine.schedule`): Dassl's per-epoch cosine after a
  constant warm-up (paper recipes), the project's first cosine (``legacy``, the embedded
  recipe) or a per-step cosine (``cosine-steps``). ``min_steps`` raises the number of
  epochs when the split is so small that ``epochs`` would give fewer optimiser steps;
  ``steps_per_shot`` fixes the number of steps instead.
- Augmentation (``config.augment``): Dassl's random resized crop of the original image
  plus a flip (:mod:`vlmeft.data.augment`), drawn from the run's local generator.
- Batches are shuffled by a local ``torch.Generator(seed)``; the last partial batch is
  dropped when the split holds at least one full batch (Dassl's fix for tiny splits).
  Images of file-based splits are decoded by ``workers`` processes
  (:mod:`vlmeft.engine.loader`), in the same order whatever their number.
- Precision (``config.precision``, :mod:`vlmeft.engine.device`): autocast to bf16 or
  fp16 around the forward pass and loss, the loss itself in fp32, and a GradScaler for
  fp16. Evaluation runs at the same precision; cached frozen features stay fp32.
- Methods whose image path is the frozen encoder (``frozen_image_path``), trained
  without augmentation, train on frozen features computed once by the
  :class:`~vlmeft.engine.cache.FeatureCache`: exact, and the image tower never runs
  per step.
- ``fit_cache`` (train features) runs before training and ``select_on_val`` (val
  features) after it; training-free methods stop there. Which trained state is kept
  follows ``config.select``: ``last`` keeps the final one (Dassl's default, what the
  papers report) and never evaluates during training; ``val`` (with a val split) keeps
  the epoch with the best val accuracy, ties going to the *later* epoch (a few-shot val
  split of ~40 images often cannot tell epochs apart, and then the model the schedule
  was designed to end with is the better default). The test split is never seen.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from vlmeft.data.augment import load_augmented_batch
from vlmeft.data.loading import Preprocess
from vlmeft.data.types import Split
from vlmeft.engine.cache import CHUNK, FeatureCache, default_cache
from vlmeft.engine.device import autocast, check_precision, grad_scaler
from vlmeft.engine.loader import chunks, image_batches
from vlmeft.engine.schedule import lr_at, lr_at_step, per_step, plan
from vlmeft.errors import VlmeftError
from vlmeft.method import Method


@dataclass
class FitReport:
    """What happened during :func:`fit`."""

    epochs: int  # epochs run
    steps: int  # optimiser steps
    best_epoch: int | None  # 1-based epoch whose state was kept (None: last, no val)
    best_val_accuracy: float | None
    train_seconds: float
    used_feature_cache: bool
    selected: dict[str, float] = field(default_factory=dict)  # from select_on_val
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: lr, loss, val_accuracy

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def lr_factor(method: Method) -> float:
    """``lr_logit_scale / backbone scale`` for SGD (see the module notes), else 1."""
    config = method.config
    reference = float(getattr(config, "lr_logit_scale", 0.0) or 0.0)
    if config.optimizer != "sgd" or reference <= 0:
        return 1.0
    scale = float(method.backbone.logit_scale())
    return reference / scale if scale > 0 else 1.0


def _optimizer(params: list[torch.nn.Parameter] | list[dict], config) -> torch.optim.Optimizer:  # noqa: ANN001
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    eps = float(getattr(config, "adam_eps", 1e-8))
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, eps=eps, weight_decay=config.weight_decay)
    if config.optimizer == "adam":  # Dassl's "adam": weight decay as an L2 term in the gradient
        return torch.optim.Adam(params, lr=config.lr, eps=eps, weight_decay=config.weight_decay)
    raise VlmeftError(f"unknown optimizer '{config.optimizer}' (sgd, adamw or adam)", where="--set optimizer")


def method_optimizer(method: Method, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimiser over ``params`` (the method's trainable parameters): one group per
    ``Method.parameter_groups()`` entry, each with its lr multiplier. The classification and
    the generative loops both build theirs here."""
    groups = [{"params": list(ps), "lr_scale": float(scale)} for ps, scale in method.parameter_groups() if ps]
    grouped = [id(p) for g in groups for p in g["params"]]
    if sorted(grouped) != sorted(id(p) for p in params):  # a method bug, not user input
        raise RuntimeError(f"{method.name}: parameter_groups() must hold each trainable parameter exactly once")
    return _optimizer(groups, method.config)


def _precision(method: Method) -> str:
    """The method's ``config.precision``, checked against its device (fp16 needs a GPU)."""
    return check_precision(method.config.precision, method.device, where=f"method '{method.name}' config precision")


def _overrides(method: Method, name: str) -> bool:
    """Whether the method implements a hook instead of inheriting the no-op."""
    return getattr(type(method), name) is not getattr(Method, name)


def _can_cache(method: Method) -> bool:
    return bool(method.frozen_image_path) and not method.config.augment


def _progress(total: int, desc: str, enabled: bool):  # noqa: ANN202
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not (enabled and sys.stderr.isatty()))


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[np.ndarray]:
    order = torch.randperm(n, generator=generator).numpy()
    drop_last = n >= batch_size
    stop = (n // batch_size) * batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        yield order[i : i + batch_size]


def fit(
    method: Method,
    train: Split,
    val: Split | None = None,
    *,
    seed: int,
    progress: bool = True,
    cache: FeatureCache | None = None,
    workers: int | None = None,
) -> FitReport:
    """Train ``method`` on ``train``, selecting on ``val``; returns a :class:`FitReport`.
    ``workers``: image-decoding processes for file-based splits (None: the process default)."""
    if len(train) == 0:
        raise VlmeftError("the training split is empty", where=train.key)
    _precision(method)
    cache = cache or default_cache()
    config = method.config
    backbone = method.backbone
    labels = torch.as_tensor(train.labels, dtype=torch.long, device=method.device)
    has_val = val is not None and len(val) > 0
    use_cache = _can_cache(method)
    start = time.perf_counter()
    devices = [method.device] if method.device.type == "cuda" else []

    # Local seeding: any randomness inside the method (dropout, init done lazily in
    # fit_cache) is drawn from `seed`, and the caller's global RNG state is restored.
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)

        train_feats = None
        if use_cache or _overrides(method, "fit_cache") or method.training_free:
            train_feats = cache.features(backbone, train, workers=workers)
        if train_feats is not None and (_overrides(method, "fit_cache") or method.training_free):
            method.fit_cache(train_feats, labels)

        report = FitReport(epochs=0, steps=0, best_epoch=None, best_val_accuracy=None, train_seconds=0.0,
                           used_feature_cache=use_cache)
        params = method.trainable_parameters()
        if not method.training_free and params and plan(train.labels, config)[1] > 0:
            select_val = has_val and config.select == "val"
            _train_loop(method, train, val if select_val else None, labels, train_feats if use_cache else None,
                        params, generator, report, progress, cache, workers)

        if has_val and _overrides(method, "select_on_val"):
            val_feats = cache.features(backbone, val, workers=workers)
            val_labels = torch.as_tensor(val.labels, dtype=torch.long, device=method.device)
            method.eval()
            with torch.no_grad():
                report.selected = dict(method.select_on_val(val_feats, val_labels))
    method.eval()
    report.train_seconds = time.perf_counter() - start
    return report


def _train_loop(
    method: Method,
    train: Split,
    val: Split | None,
    labels: Tensor,
    train_feats: Tensor | None,
    params: list[torch.nn.Parameter],
    generator: torch.Generator,
    report: FitReport,
    progress: bool,
    cache: FeatureCache,
    workers: int | None,
) -> None:
    config = method.config
    optimizer = method_optimizer(method, params)
    prep = Preprocess.for_backbone(method.backbone)
    precision = _precision(method)
    scaler = grad_scaler(method.device, precision)  # fp16 only
    best_acc, best_state = -1.0, None
    epochs, total_steps = plan(train.labels, config)
    factor = lr_factor(method)
    stepwise = per_step(config)
    bar = _progress(total_steps, f"{method.name}", progress)
    try:
        for epoch in range(epochs):
            lr = lr_at_step(report.steps, total_steps, config, factor) if stepwise else lr_at(epoch, config, epochs, factor)
            method.train()
            total, count = 0.0, 0
            order = list(_batches(len(train), config.batch_size, generator))
            # Plain batches are decoded ahead by the loader (in `workers` processes); augmented
            # ones are cropped from the originals here, in order, from the run's generator.
            plain = (None if train_feats is not None or config.augment
                     else image_batches(train, order, prep, device=method.device, workers=workers))
            for idx in order:
                if report.steps >= total_steps:  # a step budget may end inside an epoch
                    break
                step_lr = lr_at_step(report.steps, total_steps, config, factor) if stepwise else lr
                for group in optimizer.param_groups:
                    group["lr"] = step_lr * group["lr_scale"]
                idx_t = torch.as_tensor(idx, device=method.device)
                with autocast(method.device, precision):
                    if train_feats is not None:
                        logits = method.logits_from_image_features(train_feats[idx_t])
                    else:
                        if config.augment:
                            images = load_augmented_batch(train, idx, prep, generator, config.crop_scale)
                        else:
                            images = next(plain)
                        logits = method(images.to(method.device, non_blocking=True))
                    loss = method.loss(logits.float(), labels[idx_t])
                if not torch.isfinite(loss):
                    raise VlmeftError(f"training diverged (loss {loss.item()}) at epoch {epoch + 1}; try a lower lr",
                                      where="--set lr")
                optimizer.zero_grad(set_to_none=True)
                if scaler is None:
                    method.backward(loss)  # plain backprop unless the method edits its gradients
                    optimizer.step()
                else:  # fp16: scale the loss so small gradients survive; steps with inf/nan are skipped
                    method.backward(scaler.scale(loss))
                    scaler.step(optimizer)
                    scaler.update()
                report.steps += 1
                total += loss.item() * len(idx)
                count += len(idx)
                bar.update(1)
            method.end_epoch(epoch, epochs)
            entry = {"epoch": epoch + 1, "lr": lr, "loss": total / max(count, 1)}
            if val is not None:
                acc = evaluate(method, val, cache=cache, workers=workers)
                entry["val_accuracy"] = acc
                if acc >= best_acc:  # ties: the later epoch (see the module notes)
                    best_acc, report.best_epoch = acc, epoch + 1
                    best_state = {k: v.detach().clone() for k, v in method.state_tensors().items()}
                bar.set_postfix(loss=f"{entry['loss']:.3f}", val=f"{acc:.3f}")
            report.history.append(entry)
            report.epochs += 1
    finally:
        bar.close()
    if best_state is not None:
        method.load_state_tensors(best_state, where="best-val state")
        report.best_val_accuracy = best_acc


@torch.no_grad()
def predict(method: Method, split: Split, *, batch_size: int = 256, cache: FeatureCache | None = None,
            workers: int | None = None) -> Tensor:
    """Logits ``[N, C]`` of ``method`` on ``split`` (eval mode, float32, CPU), computed under
    the method's ``config.precision``.

    Frozen-image-path methods read cached frozen features; others encode images in
    fixed-size chunks. Either way the result does not depend on ``batch_size``, which
    only bounds memory in the head. Each call is one pass over the split in its stored
    order (``Method.start_test_stream``), which is what a test-time method adapts on."""
    if batch_size <= 0:
        raise VlmeftError(f"batch size must be positive, got {batch_size}", where="--batch-size")
    precision = _precision(method)
    was_training = method.training
    method.eval()
    method.start_test_stream()  # a new pass over a split: test-time state starts empty
    try:
        if method.frozen_image_path:  # cached features are fp32 whatever the precision: computed outside autocast
            feats = (cache or default_cache()).features(method.backbone, split, workers=workers)
            with autocast(method.device, precision):
                out = [method.logits_from_image_features(feats[i : i + batch_size]).float().cpu()
                       for i in range(0, len(split), batch_size)]
        else:
            prep = Preprocess.for_backbone(method.backbone)
            batches = image_batches(split, chunks(len(split), CHUNK), prep, device=method.device, workers=workers)
            with autocast(method.device, precision):
                out = [method(images.to(method.device, non_blocking=True)).float().cpu() for images in batches]
    finally:
        method.train(was_training)
    return torch.cat(out) if out else torch.empty(0, len(method.classnames))


def evaluate(method: Method, split: Split, *, batch_size: int = 256, cache: FeatureCache | None = None,
             workers: int | None = None) -> float:
    """Top-1 accuracy of ``method`` on ``split`` (a fraction in [0, 1])."""
    if len(split) == 0:
        raise VlmeftError("cannot evaluate on an empty split", where=split.key)
    logits = predict(method, split, batch_size=batch_size, cache=cache, workers=workers)
    if logits.shape[1] != len(method.classnames):
        raise VlmeftError(f"method gives {logits.shape[1]} logits for {len(method.classnames)} classes")
    labels = torch.as_tensor(split.labels, dtype=torch.long)
    return float((logits.argmax(dim=1) == labels).float().mean())
