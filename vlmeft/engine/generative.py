"""Training and evaluation of generative methods: the loop of :mod:`vlmeft.engine.train`, on text.

The same optimisers, schedules, step budget (``plan``: epochs, ``min_steps``,
``steps_per_shot`` with shots = the largest group), local seeding and selection rules as
classification training; what differs:

- a training example is an image, a prompt (the question, or nothing for a caption) and
  its accepted targets; each epoch draws one target per example (a caption's reference)
  from the run's generator, and the loss is the teacher-forced cross-entropy of that
  target (:meth:`vlmeft.generative.GenerativeMethod.lm_loss`);
- methods whose vision tower is untouched (``frozen_image_path``) train on the frozen
  image memory (latent + cross-attention tokens) computed once per image: exact, since the
  image tower is frozen and nothing augments;
- selection on val (``select = "val"``) uses the task's own score (VQA accuracy, CIDEr),
  passed in as ``score``; ties go to the later epoch.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

from vlmeft.backbone.captioner import ImageMemory
from vlmeft.data.loading import Preprocess, load_batch
from vlmeft.data.vl import VLSplit
from vlmeft.engine.schedule import lr_at, lr_at_step, per_step, plan
from vlmeft.engine.device import autocast, grad_scaler
from vlmeft.engine.train import FitReport, _batches, _precision, _progress, method_optimizer
from vlmeft.errors import VlmeftError

CHUNK = 128
_MEMORY: OrderedDict[tuple, ImageMemory] = OrderedDict()  # frozen image memories, by (weights, data key)
_MEMORY_ITEMS = 64


def frozen_memory(backbone, split: VLSplit) -> ImageMemory:  # noqa: ANN001
    """The frozen captioner's image memory of every image of ``split`` (memoised)."""
    key = (backbone.name, backbone.weights_id, split.key, len(split))
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    prep = Preprocess.for_backbone(backbone)
    images = split.image_split()
    parts = []
    # fp32 whatever autocast is in force around the call: the memo outlives it (and runs at
    # other precisions), as the feature cache does.
    with torch.no_grad(), torch.autocast(backbone.device.type, enabled=False):
        for i in range(0, len(split), CHUNK):
            batch = load_batch(images, range(i, min(i + CHUNK, len(split))), prep).to(backbone.device)
            parts.append(backbone.image_memory(batch))
    memory = ImageMemory(torch.cat([p.latent for p in parts]), torch.cat([p.tokens for p in parts]))
    _MEMORY[key] = memory
    if len(_MEMORY) > _MEMORY_ITEMS:
        _MEMORY.popitem(last=False)
    return memory


def memory_of(method, split: VLSplit, idx: np.ndarray) -> ImageMemory:  # noqa: ANN001
    """The method's image memory for examples ``idx`` of ``split``."""
    if method.frozen_image_path:
        return method.adapt_memory(frozen_memory(method.backbone, split).index(torch.as_tensor(idx)))
    prep = Preprocess.for_backbone(method.backbone)
    return method.encode_images(load_batch(split.image_split(), idx, prep).to(method.device))


def _group_labels(split: VLSplit) -> np.ndarray:
    names = {g: i for i, g in enumerate(split.groups())}
    return np.array([names[e.group] for e in split.examples], dtype=np.int64)


def fit_generative(method, train: VLSplit, val: VLSplit | None, *, seed: int,  # noqa: ANN001, C901
                   score: Callable[[object, VLSplit], float], progress: bool = False) -> FitReport:
    """Train ``method`` on ``train`` (select on ``val`` by ``score``); a :class:`FitReport`
    whose ``best_val_accuracy`` holds the best val score."""
    if len(train) == 0:
        raise VlmeftError("the training split is empty", where=train.key)
    config = method.config
    start = time.perf_counter()
    report = FitReport(epochs=0, steps=0, best_epoch=None, best_val_accuracy=None, train_seconds=0.0,
                       used_feature_cache=bool(method.frozen_image_path))
    params = method.trainable_parameters()
    epochs, total = plan(_group_labels(train), config)
    if method.training_free or not params or total == 0:
        report.train_seconds = time.perf_counter() - start
        return report
    devices = [method.device] if method.device.type == "cuda" else []
    select_val = val is not None and len(val) > 0 and config.select == "val"
    best, best_state = -1.0, None
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        optimizer = method_optimizer(method, params)
        precision = _precision(method)
        scaler = grad_scaler(method.device, precision)  # fp16 only
        stepwise = per_step(config)
        bar = _progress(total, method.name, progress)
        try:
            for epoch in range(epochs):
                lr = lr_at_step(report.steps, total, config) if stepwise else lr_at(epoch, config, epochs)
                method.train()
                losses = []
                for idx in _batches(len(train), config.batch_size, generator):
                    if report.steps >= total:
                        break
                    for group in optimizer.param_groups:
                        group["lr"] = (lr_at_step(report.steps, total, config) if stepwise else lr) * group["lr_scale"]
                    examples = [train.examples[i] for i in idx]
                    picks = torch.randint(1 << 30, (len(idx),), generator=generator).tolist()
                    targets = [e.targets[p % len(e.targets)] for e, p in zip(examples, picks)]
                    with autocast(method.device, precision):
                        memory = memory_of(method, train, idx)
                        loss = method.lm_loss(memory, [e.prompt for e in examples], targets).float()
                    if not torch.isfinite(loss):
                        raise VlmeftError(f"training diverged (loss {loss.item()}) at epoch {epoch + 1}; "
                                          "try a lower lr", where="--set lr")
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is None:
                        method.backward(loss)
                        optimizer.step()
                    else:  # fp16: scaled loss; steps with inf/nan gradients are skipped
                        method.backward(scaler.scale(loss))
                        scaler.step(optimizer)
                        scaler.update()
                    report.steps += 1
                    losses.append(float(loss.detach()))
                    bar.update(1)
                entry = {"epoch": epoch + 1, "lr": lr, "loss": float(np.mean(losses)) if losses else float("nan")}
                if select_val:
                    value = score(method, val)
                    entry["val_score"] = value
                    if value >= best:
                        best, report.best_epoch = value, epoch + 1
                        best_state = {k: v.detach().clone() for k, v in method.state_tensors().items()}
                report.history.append(entry)
                report.epochs += 1
        finally:
            bar.close()
    if best_state is not None:
        method.load_state_tensors(best_state, where="best-val state")
        report.best_val_accuracy = best
    method.eval()
    report.train_seconds = time.perf_counter() - start
    return report


@torch.no_grad()
def generate_split(method, split: VLSplit, max_new: int, *, batch_size: int = 64) -> list[str]:  # noqa: ANN001
    """The method's greedy output for every example of ``split`` (eval mode)."""
    was = method.training
    method.eval()
    try:
        out: list[str] = []
        for i in range(0, len(split), batch_size):
            idx = np.arange(i, min(i + batch_size, len(split)))
            with autocast(method.device, _precision(method)):
                memory = memory_of(method, split, idx)
                out += method.generate(memory, [split.examples[j].prompt for j in idx], max_new)
        return out
    finally:
        method.train(was)
