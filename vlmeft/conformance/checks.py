"""Generic checks every implementation must pass, whatever its category.

Each check takes a :class:`CheckContext` and returns ``(status, reason)`` with status
``pass``, ``fail`` or ``na``. They use a few plain SGD steps of a local loop as
"training", the engine's checkpoint module for save/load, and the paper's default
config of each method.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from vlmeft.backbone.wrapper import Backbone
from vlmeft.conformance.subject import BASE_CLASSES, BATCH, NOVEL_CLASSES, TEMPLATES, Subject, own_trainable
from vlmeft.errors import VlmeftError

Result = tuple[str, str]
COUNT_BACKBONE = "ViT-B-16"  # where record parameter counts are checked (random init)
# How records spell the backbone of their parameter count -> open_clip model name.
COUNT_BACKBONE_SPELLINGS = {"ViT-B/16", "ViT-B-16"}


@dataclass
class CheckContext:
    subject: Subject
    record: Any  # vlmeft.kb.schema.MethodRecord (or a fixture record)
    count_backbone: Callable[[], Backbone]  # the shared ViT-B-16, built on first use


def _equal_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    return sorted(k for k in a if k not in b or a[k].shape != b[k].shape or not torch.equal(a[k], b[k]))


def frozen_backbone(ctx: CheckContext) -> Result:
    """The backbone is bit-identical after training steps, collected no gradient, has no
    trainable weight, and no backbone tensor is among the method's trainable parameters."""
    bb = ctx.subject.backbone
    before = {k: v.detach().clone() for k, v in bb.model.state_dict().items()}
    method = ctx.subject.build()
    names = {id(p): n for n, p in bb.model.named_parameters()}
    declared = sorted(names[id(p)] for p in method.trainable_parameters() if id(p) in names)
    steps = ctx.subject.train_steps(method)
    changed = _equal_state(before, bb.model.state_dict())
    trainable = [n for n, p in bb.model.named_parameters() if p.requires_grad or p.grad is not None]
    if declared or changed or trainable:
        bb.model.load_state_dict(before)  # keep the shared backbone clean for later cells
        for p in bb.model.parameters():
            p.requires_grad_(False)
            p.grad = None
        if declared:
            return "fail", f"backbone not frozen: trainable_parameters() returns backbone tensor(s) {', '.join(declared[:3])}"
        what = f"changed: {', '.join(changed[:3])}" if changed else f"made trainable: {', '.join(trainable[:3])}"
        return "fail", f"backbone not frozen after {steps} SGD steps ({what})"
    return "pass", f"{len(before)} backbone tensors bit-identical after {steps} SGD steps; none trainable"


def only_declared_change(ctx: CheckContext) -> Result:
    """Training moves every declared trainable tensor of the method, and nothing else:
    judged per tensor, so one live tensor cannot hide a dead one."""
    method = ctx.subject.build()
    declared = {n for n, _ in own_trainable(method)}
    before = {k: v.detach().clone() for k, v in method.state_dict().items()}
    steps = ctx.subject.train_steps(method)
    changed = set(_equal_state(before, method.state_dict()))
    undeclared = sorted(changed - declared)
    if undeclared:
        return "fail", f"undeclared change: tensors outside the trainable parameters changed: {', '.join(undeclared[:4])}"
    dead = sorted(declared - changed)
    if dead:
        return "fail", (f"{len(dead)} of {len(declared)} declared trainable tensors never moved (no gradient reaches "
                        f"them; {steps} SGD steps run): {', '.join(dead[:4])}")
    if not declared:
        return "pass", "no trainable tensors; method state unchanged by the forward passes"
    return "pass", f"all {len(declared)} declared trainable tensors moved in {steps} steps; nothing else changed"


def training_free_no_params(ctx: CheckContext) -> Result:
    method = ctx.subject.build()
    n = method.num_trainable()
    if not method.training_free:  # the instance's: a config may switch it (CALIP-FS)
        return "na", f"not declared training-free ({n} trainable parameters)"
    if n:
        return "fail", f"declared training_free but has {n} trainable parameters"
    return "pass", "training-free and 0 trainable parameters"


_count_cache: dict[str, Result] = {}


def param_count(ctx: CheckContext) -> Result:
    """The trainable count on an untrained ViT-B/16 equals the record's ``parameters.count``."""
    rec = ctx.record
    params = getattr(rec, "parameters", None)
    if params is None or params.count is None:
        return "na", "the record states no parameter count"
    if (params.backbone or "").strip() not in COUNT_BACKBONE_SPELLINGS:
        return "na", f"the record's count is for '{params.backbone}'; the matrix counts on ViT-B/16 only"
    if ctx.subject.variant:
        return "na", f"variant '{ctx.subject.variant}': the record's count is for the default config"
    key = f"{ctx.subject.label}:{params.count}"
    if key not in _count_cache:
        _count_cache[key] = _param_count(ctx, params.count)
    return _count_cache[key]


def _param_count(ctx: CheckContext, stated: int) -> Result:
    sub = ctx.subject
    # A count that depends on the label set or the cache size (linear probe, Tip-Adapter-F)
    # is specific to the paper's dataset; it cannot be compared on ours.
    first = sub.build().num_trainable()
    other = sub.build(classnames=NOVEL_CLASSES, fit=False)
    if not sub.grounding:
        with torch.no_grad():
            feats = sub.backbone.encode_image(sub.data.cache_images[:6].to(sub.backbone.device), normalize=True)
        other.fit_cache(feats, torch.arange(6, device=feats.device) % len(NOVEL_CLASSES))
    if other.num_trainable() != first:
        return "na", (f"the count depends on the label set or cache size ({first} vs {other.num_trainable()}); "
                      "the record's count is for its own dataset")
    bb = ctx.count_backbone()
    torch.manual_seed(0)
    method = sub.cls(bb, [] if sub.grounding else BASE_CLASSES, TEMPLATES, sub.config(bb))
    if not sub.grounding:
        g = torch.Generator().manual_seed(0)
        feats = F.normalize(torch.randn(8, bb.embed_dim, generator=g), dim=-1).to(bb.device, bb.dtype)
        method.fit_cache(feats, torch.arange(8, device=bb.device) % len(BASE_CLASSES))
    n = method.num_trainable()
    if n == stated:
        return "pass", f"{n:,} trainable parameters on ViT-B/16, as the record states"
    return "fail", f"{n:,} trainable parameters on ViT-B/16 with the default config; the record states {stated:,}"


def _trained(ctx: CheckContext, seed: int = 0):  # noqa: ANN202
    method = ctx.subject.build(seed)
    ctx.subject.train_steps(method)
    return method


def logits(ctx: CheckContext) -> Result:
    sub = ctx.subject
    method = _trained(ctx)
    out = sub.outputs(method)
    want, what = sub.kind.probe_output_shape(sub)  # the task kind declares its logits shape
    if tuple(out.shape) != want:
        return "fail", f"{what} shaped {tuple(out.shape)}, expected {want}"
    if not bool(torch.isfinite(out).all()):
        return "fail", f"{what} contain NaN or inf"
    return "pass", f"{what} {tuple(out.shape)}, all finite"


def save_load(ctx: CheckContext) -> Result:
    """engine.checkpoint save -> load into a freshly built (differently seeded) method
    gives bit-identical outputs."""
    from vlmeft.engine import checkpoint

    sub = ctx.subject
    method = _trained(ctx)
    before = sub.outputs(method)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint.save(method, tmp)
        torch.manual_seed(12345)  # a fresh instance initialises differently; only the file can restore it
        loaded = checkpoint.load(tmp, sub.backbone, method_class=sub.cls)
    loaded.eval()
    after = sub.outputs(loaded)
    if before.shape != after.shape or not torch.equal(before, after):
        diff = (before - after).abs().max().item() if before.shape == after.shape else float("inf")
        return "fail", f"outputs differ after save -> load (max |diff| {diff:.3g})"
    return "pass", f"{len(method.state_tensors())} tensors saved; outputs bit-identical after load"


def novel_classes(ctx: CheckContext) -> Result:
    """A checkpoint trained on base classes loads for novel ones, no retraining."""
    from vlmeft.engine import checkpoint

    sub = ctx.subject
    if sub.grounding:
        return "na", f"{sub.kind.label or sub.kind.name} method: no class names"
    method = _trained(ctx)
    trained = {n: p.detach().clone() for n, p in method.named_parameters() if p.requires_grad}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint.save(method, tmp)
        try:
            novel = checkpoint.load(tmp, sub.backbone, NOVEL_CLASSES, TEMPLATES, method_class=sub.cls)
            novel.eval()
            out = sub.outputs(novel)
        except VlmeftError as err:
            if sub.variant:
                return "na", (f"variant '{sub.variant}' refuses novel classes with a clear error (the record's tasks "
                              f"describe the default config): {err}")
            if "base-to-novel" in (getattr(ctx.record, "tasks", None) or []):
                return "fail", f"record lists base-to-novel, but loading for novel classes failed: {err}"
            return "na", f"refuses novel classes with a clear error (record does not list base-to-novel): {err}"
    want = (BATCH, len(NOVEL_CLASSES))
    if tuple(out.shape) != want:
        return "fail", f"novel-class logits shaped {tuple(out.shape)}, expected {want}"
    if not bool(torch.isfinite(out).all()):
        return "fail", "novel-class logits contain NaN or inf"
    now = {n: p.detach() for n, p in novel.named_parameters() if p.requires_grad}
    moved = _equal_state(trained, now)
    if moved:
        return "fail", f"trained tensors differ after loading for novel classes: {', '.join(moved[:3])}"
    return "pass", f"loaded for {len(NOVEL_CLASSES)} novel classes: logits {want}, trained tensors unchanged"


def deterministic(ctx: CheckContext) -> Result:
    a, b = _trained(ctx, seed=0), _trained(ctx, seed=0)
    diff = _equal_state(a.state_tensors(), b.state_tensors())
    if diff:
        return "fail", f"same seed, different trained tensors: {', '.join(diff[:3])}"
    out_a, out_b = ctx.subject.outputs(a), ctx.subject.outputs(b)
    if not torch.equal(out_a, out_b):
        return "fail", f"same seed, different outputs (max |diff| {(out_a - out_b).abs().max().item():.3g})"
    return "pass", "two seeded runs give bit-identical tensors and outputs"


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference of two same-shaped outputs: non-finite entries must match
    exactly (the same inf in the same place), or the difference is infinite."""
    finite = torch.isfinite(a)
    if not torch.equal(finite, torch.isfinite(b)):
        return float("inf")
    odd_a, odd_b = a[~finite], b[~finite]
    if not bool(((odd_a == odd_b) | (odd_a.isnan() & odd_b.isnan())).all()):
        return float("inf")
    return (a[finite] - b[finite]).abs().max().item() if finite.any() else 0.0


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> tuple[bool, float]:
    """Whether two same-shaped outputs agree within ``rel`` of the largest finite magnitude
    (at least 1), and their largest difference."""
    diff = _max_diff(a, b)
    finite = a[torch.isfinite(a)]
    scale = max(1.0, finite.abs().max().item() if finite.numel() else 1.0)
    return diff <= rel * scale, diff


def batch_size_invariant(ctx: CheckContext) -> Result:
    sub = ctx.subject
    method = _trained(ctx)
    whole = sub.outputs(method)
    single = sub.outputs(method, batch=1)
    if whole.shape != single.shape:
        return "fail", f"output shape depends on the batch size ({tuple(whole.shape)} vs {tuple(single.shape)})"
    same, diff = _close(whole, single)
    if not same:
        return "fail", f"outputs change with the batch size (max |diff| {diff:.3g})"
    return "pass", f"batch {len(whole) if not sub.grounding else len(sub.data.raw)} vs 1: max |diff| {diff:.2g}"


def frozen_image_path(ctx: CheckContext) -> Result:
    """A method that declares ``frozen_image_path`` (the engine may then cache frozen image
    features and call ``logits_from_image_features``) gives the same logits from cached
    features as from images, in a trained (perturbed) state."""
    sub = ctx.subject
    if sub.grounding:
        if sub.kind.name == "grounding":
            return "na", "grounding method: the engine never caches its image features"
        return "na", (f"{sub.kind.label or sub.kind.name} method: no class logits from cached features "
                      "(its frozen image memory is the backbone's own, computed once per image)")
    method = sub.build()
    sub.perturb(method)
    if not method.frozen_image_path:
        return "na", "not declared: the engine re-encodes images through the method"
    images = sub.data.images.to(sub.backbone.device)
    with torch.no_grad():
        live = sub.outputs(method)
        method.start_test_stream()  # the cached pass is a pass of its own, as in the engine's predict
        cached = method.logits_from_image_features(sub.backbone.encode_image(images, normalize=True))
    if live.shape != cached.shape:
        return "fail", f"frozen_image_path declared, but cached-feature logits are shaped {tuple(cached.shape)}, " \
                       f"live {tuple(live.shape)}"
    same, diff = _close(live, cached)
    if not same:
        return "fail", f"frozen_image_path declared, but cached-feature logits differ from live ones (max |diff| {diff:.3g})"
    return "pass", f"cached frozen features give the live logits (max |diff| {diff:.2g})"


GENERIC_CHECKS: dict[str, Callable[[CheckContext], Result]] = {
    "frozen_backbone": frozen_backbone,
    "only_declared_change": only_declared_change,
    "frozen_image_path": frozen_image_path,
    "training_free_no_params": training_free_no_params,
    "param_count": param_count,
    "logits": logits,
    "save_load": save_load,
    "novel_classes": novel_classes,
    "deterministic": deterministic,
    "batch_size_invariant": batch_size_invariant,
}
