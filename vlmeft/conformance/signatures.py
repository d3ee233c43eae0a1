"""Behavioural probes: observe each signature key of ``categories.yaml`` on a real model.

:func:`observe` runs one method (in a perturbed, "trained" state) on one backbone and
returns, per signature key, what it saw: a value in the key's vocabulary plus a short
detail with the measurement. :func:`judge` compares that with what the record's leaf
demands. Observation and judgement are separate so one observation serves all keys.

Classification methods are probed through the Method interface (``image_features``,
``text_features``, ``forward``, ``set_classnames``); grounding methods through
``ground`` with the backbone's encoders instrumented (see :mod:`.subject`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vlmeft.conformance.subject import (
    EXPRESSIONS, OTHER_CLASSES, TOL, Subject, capture_pixels, own_trainable, record_encoders,
)
from vlmeft.backbone.wrapper import class_prompt
from vlmeft.kb.schema import Signature
from vlmeft.method import Method

SIGNATURE_KEYS: tuple[str, ...] = tuple(Signature.model_fields)
# Keys whose value may be "declared": the method class attribute that declares it.
DECLARATION_ATTR = "image_conditioned_text"
OTHER_EXPRESSIONS = ["the green triangle", "the yellow star at the top"]


@dataclass(frozen=True)
class Observed:
    value: bool | str | None  # None: the probe could not decide (detail says why)
    detail: str


def _fmt(x: float) -> str:
    return f"{x:.2g}"


def _max_diff(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.detach().float() - b.detach().float()).abs().max()) if a.numel() else 0.0


def _rows(t: Tensor) -> Tensor:
    return F.normalize(t.detach().float().reshape(-1, t.shape[-1]), dim=-1)


def _unmatched_rows(seen: Tensor, reference: Tensor) -> int:
    """How many rows of ``seen`` equal no row of ``reference`` (within TOL)."""
    if seen.shape[-1] != reference.shape[-1]:
        return seen.shape[0]
    d = (seen.unsqueeze(1) - reference.unsqueeze(0)).abs().amax(dim=-1)  # [S, R]
    return int((d.amin(dim=1) > TOL).sum())


def _nonzero_grad_params(method: Method, output: Tensor, seed: int) -> set[str]:
    """Names of trainable parameters with a non-zero gradient of a random projection of
    ``output`` (a projection, not a sum, so normalisation cannot cancel it)."""
    named = [(n, p) for n, p in method.named_parameters() if p.requires_grad]
    if not named or not output.requires_grad:
        return set()
    g = torch.Generator().manual_seed(seed)
    proj = torch.randn(output.shape, generator=g).to(output.device, output.dtype)
    grads = torch.autograd.grad((output * proj).sum(), [p for _, p in named], allow_unused=True)
    return {n for (n, _), gr in zip(named, grads) if gr is not None and bool(gr.abs().max() > 0)}


def _trains(method: Method, images: Tensor, labels: Tensor) -> Observed:
    """Whether the method trains, judged by gradients: some trainable tensor of its own
    receives a non-zero gradient from its training loss on the probe batch. A parameter
    that never gets one is not training, however many are declared. A method with no
    trainable tensor that tunes at test time (TPT, through a ``test_time_objective(images)
    -> (loss, tensors)`` hook) is judged the same way on its test-time objective."""
    objective = getattr(method, "test_time_objective", None)
    if not own_trainable(method) and objective is not None:
        return _trains_at_test_time(objective, images)
    return _trains_with(method, lambda: method.loss(method(images), labels))


def _trains_with(method: Method, loss_fn: Callable[[], Tensor]) -> Observed:
    """:func:`_trains` for any training loss (``loss_fn()``: the loss on the probe batch)."""
    named = own_trainable(method)
    if not named:
        return Observed(False, "no trainable parameters")
    with torch.enable_grad():
        loss = loss_fn()
        if not loss.requires_grad:
            return Observed(False, f"{len(named)} trainable tensors, but the training loss has no gradient to any")
        grads = torch.autograd.grad(loss, [q for _, q in named], allow_unused=True)
    live = [n for (n, _), g in zip(named, grads) if g is not None and bool(g.abs().max() > 0)]
    if not live:
        return Observed(False, f"{len(named)} trainable tensors, but none receives a gradient from the training loss")
    return Observed(True, f"{len(live)} of {len(named)} trainable tensors receive a gradient from the training loss")


def _trains_at_test_time(objective: Callable[[Tensor], tuple[Tensor, list[Tensor]]], images: Tensor) -> Observed:
    """Test-time tuning uses no training data but is gradient descent all the same: the
    tensors the objective tunes (per-image prompt copies) must receive a gradient from it."""
    with torch.enable_grad():
        loss, tensors = objective(images)
        if not tensors or not loss.requires_grad:
            return Observed(False, "test-time objective, but it has no gradient to any tuned tensor")
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    live = sum(1 for g in grads if g is not None and bool(g.abs().max() > 0))
    return Observed(live > 0, f"tunes at test time, without training data: {live} of {len(tensors)} tuned "
                              "tensors receive a gradient from the test-time objective")


def _grad_wrt_text_prompts(method: Method, image_features: Callable[[], Tensor]) -> Observed:
    hook = getattr(method, "text_prompt_parameters", None)
    if hook is None:
        return Observed(None, "the method has no text_prompt_parameters() hook (see vlmeft.conformance)")
    params = [p for p in hook() if p.requires_grad]
    if not params:
        return Observed(None, "text_prompt_parameters() returned no trainable tensor")
    with torch.enable_grad():
        feats = image_features()
        if not feats.requires_grad:
            return Observed("zero", "the image feature does not depend on any parameter")
        proj = torch.randn(feats.shape, generator=torch.Generator().manual_seed(7)).to(feats.device, feats.dtype)
        grads = torch.autograd.grad((feats * proj).sum(), params, allow_unused=True)
    norm = sum(float(g.abs().sum()) for g in grads if g is not None)
    return Observed("nonzero" if norm > 0 else "zero", f"|d image feature / d text prompts|_1 = {_fmt(norm)}")


def _declared_views(seen: list[Tensor], images: Tensor) -> Observed:
    """Pixels for a method that declares test-time views (TPT): the views are augmented
    copies, so what must hold is that every input image also reaches the tower unchanged
    (the image its prediction reads; whether that feature is the frozen one is
    ``image_changes``'). An input image that never arrives unedited is a pixel change."""
    rows = torch.cat([s.detach().float().flatten(1) for s in seen])
    missing = _unmatched_rows(images.detach().float().flatten(1), rows)
    return Observed(missing > 0, f"{missing} of {len(images)} input images never reach the tower unchanged; "
                                 f"{len(rows) - len(images) + missing} other inputs are declared test-time views")


def _support_dependence(subject: Subject, m: Method, query: Tensor) -> str | None:
    """How the text features depend on the *support set* (the training images' frozen
    features handed to ``fit_cache``), or None when they do not.

    A second instance is fitted on other support features (seeded random unit vectors:
    the probe images are noise, whose encoded features are too alike to tell a weak
    dependence from none), and every trainable tensor of the probed instance is copied
    into it, so a dependence that
    only comes from initialising trained tensors from the support set (a linear probe
    started at class means) is not counted: what remains is image information that
    enters the text side at every forward pass (Meta-Adapter's cross-attention,
    GraphAdapter's visual sub-graph)."""
    bb, d = subject.backbone, subject.data
    other = subject.build(fit=False)
    g = torch.Generator().manual_seed(11)
    feats = F.normalize(torch.randn(len(d.cache_labels), bb.embed_dim, generator=g), dim=-1).to(bb.device, bb.dtype)
    with torch.no_grad():
        other.fit_cache(feats, d.cache_labels.to(bb.device))
        own = dict(m.named_parameters())
        for name, p in other.named_parameters():
            if name in own and own[name].shape == p.shape:
                p.copy_(own[name])
        diff = _max_diff(m.text_features(query), other.text_features(query))
    if diff <= TOL:
        return None
    return f"text features depend on the support images (max change {_fmt(diff)}, trainable tensors held equal)"


def _crossmodal(tdi: Observed | Exception, idt: Observed | Exception, shared: set[str],
                support: str | None = None) -> Observed:
    found = []
    if isinstance(tdi, Observed) and tdi.value is True:
        found.append("text features depend on the image")
    if isinstance(idt, Observed) and idt.value is True:
        found.append("image features depend on the class texts")
    if support:
        found.append(support)
    if shared:
        found.append(f"parameters act in both towers: {', '.join(sorted(shared)[:4])}")
    if found:
        return Observed("present", "; ".join(found))
    return Observed("none", "no input dependence across towers and no parameter shared by both")


def _frozen_text_of_written_prompts(m: Method) -> tuple[Tensor, str]:
    """The frozen classifier of the prompts ``m`` says it writes, computed here from the
    bare text encoder: per class the normalised mean of its prompts' normalised features.
    The prompts are the class names in the method's templates, or, for methods whose
    prompts differ per class (descriptor sentences: DCLIP, CuPL), ``m.class_prompts()``."""
    hook = getattr(m, "class_prompts", None)
    if hook is None:
        # The templates in force (config.text_template), with class names cleaned as every
        # official codebase does; the raw task templates would flag a method that merely
        # uses its paper's single template as having changed the text tower.
        prompts = [[class_prompt(t, c) for t in m.text_templates()] for c in m.classnames]
        what = "templates"
    else:
        prompts = hook()
        what = f"class_prompts(): {sum(len(p) for p in prompts)} sentences"
    bb = m.backbone
    rows = [F.normalize(bb.encode_text(bb.tokenize(p), normalize=True).mean(0), dim=-1) for p in prompts]
    return torch.stack(rows), what


class _Probe:
    """Collects one Observed (or the exception a probe raised) per signature key."""

    def __init__(self) -> None:
        self.out: dict[str, Observed | Exception] = {}

    def run(self, key: str, fn: Callable[[], Observed]) -> None:
        try:
            self.out[key] = fn()
        except Exception as err:  # a crashing probe is a failed cell, reported with its message
            self.out[key] = err


def _observe_classification(subject: Subject) -> dict[str, Observed | Exception]:
    bb, d = subject.backbone, subject.data
    m = subject.build()
    subject.perturb(m)
    imgs, imgs_b = d.images.to(bb.device), d.images_b.to(bb.device)
    p = _Probe()
    p.run("trains", lambda: _trains(m, imgs, d.labels.to(bb.device)))

    with torch.no_grad():
        feats = m.image_features(imgs)
        feats_b = m.image_features(imgs_b)
        frozen = bb.encode_image(imgs, normalize=True)
        text = m.text_features(feats)
        text_b = m.text_features(feats_b)
        # Also the text for seeded random unit features: noise images encode to nearly one
        # feature on a random-weights tower (cosine 0.99999 on the tiny ResNet), too alike for
        # a method whose dependence passes through a sign-like step (TPT's first Adam step).
        g = torch.Generator().manual_seed(12)
        spread = F.normalize(torch.randn(feats.shape, generator=g), dim=-1).to(feats.device, feats.dtype)
        text_r = m.text_features(spread)
        zs, written = _frozen_text_of_written_prompts(m)

    def text_changes() -> Observed:
        ref = zs.expand_as(text) if text.dim() == 3 else zs
        diff = _max_diff(text, ref)
        return Observed(diff > TOL, f"max |text - frozen text of the same prompts ({written})| = {_fmt(diff)}")

    def image_changes() -> Observed:
        diff = _max_diff(feats, frozen)
        return Observed(diff > TOL, f"max |image feature - frozen image feature| = {_fmt(diff)}")

    def text_dep() -> Observed:
        diff, spread_diff = _max_diff(text, text_b), _max_diff(text, text_r)
        shape = "per-image" if text.dim() == 3 else "shared"
        return Observed(max(diff, spread_diff) > TOL, f"{shape} class text features; max change for other images = "
                                                      f"{_fmt(diff)}, for random unit image features = {_fmt(spread_diff)}")

    def image_dep() -> Observed:
        with torch.no_grad():
            m.set_classnames(OTHER_CLASSES)
            other = m.image_features(imgs)
            diff = _max_diff(feats, other)
            m.set_classnames(subject_classes)
        return Observed(diff > TOL, f"max image-feature change when the class names change = {_fmt(diff)}")

    subject_classes = list(m.classnames)
    p.run("text_changes", text_changes)
    p.run("image_changes", image_changes)
    p.run("text_depends_on_image", text_dep)
    p.run("image_depends_on_text", image_dep)

    observe_image_input(p, bb, imgs, lambda: m(imgs), m.test_time_views)
    p.run("vision_prompt_grad_wrt_text_prompt", lambda: _grad_wrt_text_prompts(m, lambda: m.image_features(imgs)))

    def crossmodal() -> Observed:
        with torch.enable_grad():
            img_side = _nonzero_grad_params(m, m.image_features(imgs), seed=3)
            txt_side = _nonzero_grad_params(m, m.text_features(frozen.detach()), seed=4)
        return _crossmodal(p.out.get("text_depends_on_image", Exception()), p.out.get("image_depends_on_text", Exception()),
                           img_side & txt_side, _support_dependence(subject, m, frozen.detach()))

    p.run("crossmodal_dependence", crossmodal)
    return p.out


def observe_image_input(p: _Probe, bb: Any, imgs: Tensor, forward: Callable[[], Any],
                        test_time_views: bool = False) -> None:
    """``pixels_change``, ``pixels_change_only_in_marker`` and ``vision_tokens_grow`` of a
    method whose ``forward()`` encodes ``imgs`` (classification and generative methods)."""

    def pixels() -> Observed:
        with capture_pixels(bb) as seen, torch.no_grad():
            forward()
        if not seen:
            return Observed(None, "forward never reached the image tower")
        diff = max(_max_diff(s, imgs.to(s.dtype)) for s in seen)
        if diff > TOL and test_time_views:  # declared augmented views (TPT) are checked as views
            return _declared_views(seen, imgs)
        return Observed(diff > TOL, f"max |encoder input - input image| = {_fmt(diff)}")

    p.run("pixels_change", pixels)
    p.run("pixels_change_only_in_marker", lambda: Observed(
        None, "the marker-region probe needs a grounding method (ground() with boxes and marker_mask())"))

    def tokens() -> Observed:
        bb.last_vision_seq_len = None
        with torch.no_grad():
            forward()
        seq = bb.last_vision_seq_len
        if not bb.is_vit:
            return Observed(False, "ResNet image tower: no token sequence")
        base = 1 + bb.num_patches
        return Observed(seq is not None and seq > base, f"vision sequence {seq} tokens, frozen model {base}")

    p.run("vision_tokens_grow", tokens)


def _observe_grounding(subject: Subject) -> dict[str, Observed | Exception]:
    bb, d = subject.backbone, subject.data
    m = subject.build()
    subject.perturb(m)
    p = _Probe()
    n = m.num_trainable()
    p.run("trains", lambda: Observed(False, "no trainable parameters") if not n else Observed(
        None, f"{n} trainable parameters, but gradients cannot be traced through ground()"))
    originals = d.normalise(bb, d.raw).to(bb.device, bb.dtype)

    bb.last_vision_seq_len = None
    with record_encoders(bb) as log, capture_pixels(bb) as seen:
        subject.outputs(m)
    seq = bb.last_vision_seq_len
    with record_encoders(bb) as log_b:
        subject.outputs(m, raw=d.raw_b)
    with record_encoders(bb) as log_t:
        subject.outputs(m, expressions=OTHER_EXPRESSIONS)
    with torch.no_grad():
        frozen = _rows(bb.encode_image(originals, normalize=True))

    def text_changes() -> Observed:
        if not log["text"]:
            return Observed(False, "no text encoder call")
        diff = max(_max_diff(_rows(o), _rows(f)) for o, f in log["text"])
        return Observed(diff > TOL, f"max |text - frozen text of the same tokens| = {_fmt(diff)}")

    def image_changes() -> Observed:
        if not log["image"]:
            return Observed(None, "ground() never called the image encoder")
        rows = torch.cat([_rows(o) for o in log["image"]])
        bad = _unmatched_rows(rows, frozen)
        return Observed(bad > 0, f"{bad} of {len(rows)} encoded images differ from every frozen original's feature")

    def cat(entries: list, idx: int | None = None) -> Tensor:
        parts = [e[idx] if idx is not None else e for e in entries]
        return torch.cat([_rows(x) for x in parts]) if parts else torch.empty(0)

    def text_dep() -> Observed:
        diff = _max_diff(cat(log["text"], 0), cat(log_b["text"], 0))
        return Observed(diff > TOL, f"max text-feature change for other images = {_fmt(diff)}")

    def image_dep() -> Observed:
        diff = _max_diff(cat(log["image"]), cat(log_t["image"]))
        return Observed(diff > TOL, f"max image-feature change for other expressions = {_fmt(diff)}")

    p.run("text_changes", text_changes)
    p.run("image_changes", image_changes)
    p.run("text_depends_on_image", text_dep)
    p.run("image_depends_on_text", image_dep)

    flat = torch.cat([s.reshape(-1, *s.shape[1:]) for s in seen]) if seen else torch.empty(0)

    def pixels() -> Observed:
        if not len(flat):
            return Observed(None, "ground() never reached the image tower")
        bad = _unmatched_rows(flat.flatten(1), originals.flatten(1).to(flat.dtype))
        return Observed(bad > 0, f"{bad} of {len(flat)} encoder inputs differ from every original image")

    def only_in_marker() -> Observed:
        hook = getattr(m, "marker_mask", None)
        if hook is None:
            return Observed(None, "the method has no marker_mask() hook (see vlmeft.conformance)")
        masks = [hook(b, tuple(d.raw.shape[1:3])).to(flat.device) for b in d.boxes]  # per image [K, S, S]
        outside_worst = None
        for x in flat:
            best = None  # fewest changed pixels outside some marker, over (image, box)
            for img, mk in zip(originals, masks):
                changed = (x - img.to(x.dtype)).abs().amax(dim=0) > TOL  # [S, S]
                if not changed.any():
                    continue
                outside = int((changed.unsqueeze(0) & ~mk).flatten(1).sum(1).min())
                best = outside if best is None else min(best, outside)
            if best is None:
                continue  # an unmarked original: nothing changed at all
            outside_worst = best if outside_worst is None else max(outside_worst, best)
        if outside_worst is None:
            return Observed(False, "no encoder input was changed, so there is no marker to check")
        return Observed(outside_worst == 0, f"at most {outside_worst} changed pixels lie outside the declared marker region")

    p.run("pixels_change", pixels)
    p.run("pixels_change_only_in_marker", only_in_marker)

    def tokens() -> Observed:
        if not bb.is_vit:
            return Observed(False, "ResNet image tower: no token sequence")
        base = 1 + bb.num_patches
        return Observed(seq is not None and seq > base, f"vision sequence {seq} tokens, frozen model {base}")

    p.run("vision_tokens_grow", tokens)

    def grad() -> Observed:
        def feats() -> Tensor:
            with record_encoders(bb) as rec:
                m.ground(d.raw, d.boxes, EXPRESSIONS)
            return torch.cat(rec["image"])
        return _grad_wrt_text_prompts(m, feats)

    p.run("vision_prompt_grad_wrt_text_prompt", grad)
    # ground() runs without gradients, so parameters shared by both towers cannot be
    # traced here; a grounding method that trains says so in the detail.
    untraced = " (its trainable parameters were not traced)" if n else ""

    def crossmodal() -> Observed:
        got = _crossmodal(p.out["text_depends_on_image"], p.out["image_depends_on_text"], set())
        return Observed(got.value, got.detail + untraced)

    p.run("crossmodal_dependence", crossmodal)
    return p.out


def observe(subject: Subject) -> dict[str, Observed | Exception]:
    """Every signature key's observation for ``subject``, by its task kind's observers
    (:mod:`vlmeft.kinds`: ``_observe_classification``, ``_observe_grounding``, ...)."""
    return subject.kind.observe(subject)


def expected_value(key: str, signature: Signature, method_cls: type[Method]) -> tuple[Any, str]:
    """The value the leaf demands, with "declared" resolved from the method class."""
    value = getattr(signature, key)
    if value != "declared":
        return value, ""
    declared = bool(getattr(method_cls, DECLARATION_ATTR, False))
    note = f" (declared by {method_cls.__name__}.{DECLARATION_ATTR}={declared})"
    if key == "crossmodal_dependence":
        return ("present" if declared else "none"), note
    return declared, note


def _word(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def judge(key: str, leaf_id: str, signature: Signature, method_cls: type[Method],
          observed: Observed | Exception | None) -> tuple[str, str]:
    """``(status, reason)`` for one signature cell."""
    raw = getattr(signature, key)
    if raw == "na":
        return "na", f"does not apply to {leaf_id}"
    if raw == "any":
        seen = f"; observed {_word(observed.value)}" if isinstance(observed, Observed) and observed.value is not None else ""
        return "na", f"{leaf_id} leaves it open (any){seen}"
    expected, note = expected_value(key, signature, method_cls)
    if observed is None:
        return "fail", f"{key}: not observed"
    if isinstance(observed, Exception):
        first = str(observed).strip().splitlines()[0] if str(observed).strip() else ""
        return "fail", f"{key}: probe raised {type(observed).__name__}: {first}"[:300]
    if observed.value is None:
        return "fail", f"{key}: {leaf_id} expects {_word(expected)}{note}, but {observed.detail}"
    if observed.value == expected:
        return "pass", f"{_word(expected)}{note}: {observed.detail}"
    return "fail", f"{key}: {leaf_id} expects {_word(expected)}{note}, observed {_word(observed.value)}: {observed.detail}"
