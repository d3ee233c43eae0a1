"""Mutant methods for the conformance matrix: each breaks one property on purpose.

Test material only (never shipped in ``methods/``, never registered outside a test): a
test registers them with :func:`vlmeft.registry.registered` and checks that the matrix
turns exactly the expected cells red, with a reason naming the property. Each subclasses
a real method and changes one thing, so everything else about it stays conformant.

``EXPECTED_RED`` maps each mutant to the cells it must turn red. Most are one cell. Two
properties cannot be broken alone, because the taxonomy defines one in terms of the
other: a text side that depends on the image, or an image side that depends on the
class texts, *is* a cross-modal dependence (``crossmodal_dependence`` counts input
dependence across towers), and vision prompts with a gradient to the text prompts make
those prompts parameters of both towers. A method with no live trainable tensor both
does not train and leaves its declared tensors unmoved.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft.methods.adapter_unimodal.clip_adapter import CLIPAdapter
from vlmeft.methods.adapter_unimodal.tip_adapter import TipAdapter
from vlmeft.methods.prompt_multimodal_coupled.maple import MaPLe
from vlmeft.methods.prompt_textual_handcrafted.dclip import DCLIP
from vlmeft.methods.prompt_textual_handcrafted.zsclip import ZSCLIP
from vlmeft.methods.prompt_textual_learnable.coop import CoOp
from vlmeft.methods.prompt_visual_annotation.fgvp import FGVP, gaussian_blur
from vlmeft.methods.prompt_textual_learnable.tpt import TPT
from vlmeft.methods.prompt_visual_annotation.red_circle import RedCircle
from vlmeft.methods.prompt_visual_pixel.vp import VisualPrompt
from vlmeft.methods.prompt_visual_token.vpt import VPT


def _fixed_direction(backbone, dim: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(dim, generator=g), dim=0).to(backbone.device, backbone.dtype)


class _TrainedGain:
    """Mixin: one trainable scalar gain on the logits (on both the live and the cached path)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gain = nn.Parameter(torch.ones((), device=self.device))

    def logits_from_features(self, image_features: Tensor) -> Tensor:
        return super().logits_from_features(image_features) * self.gain


# ------------------------------------------------------------ signature keys
class TrainsHandcrafted(_TrainedGain, ZSCLIP):
    """A "hand-crafted" prompt that trains a logit gain (the leaf trains nothing)."""

    name = "mutant-trains"
    training_free = False


class DeadContext(CoOp):
    """CoOp whose context is cut from the graph: declared trainable, never trained."""

    name = "mutant-dead-context"

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        return super().text_features(image_features).detach()


class TextChangingPixelPrompt(VisualPrompt):
    """A pixel prompt that also shifts the class text features (the leaf's text is frozen)."""

    name = "mutant-text-changes"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("shift", _fixed_direction(self.backbone, self.backbone.embed_dim, 1), persistent=False)

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        return F.normalize(super().text_features(image_features) + 0.3 * self.shift, dim=-1)


class UndeclaredPrompts(DCLIP):
    """DCLIP whose classifier reads more sentences than ``class_prompts()`` declares: its
    text features are not the frozen features of the prompts it says it writes."""

    name = "mutant-undeclared-prompts"

    def class_prompts(self) -> list[list[str]]:
        prompts = super().class_prompts()
        if self.__dict__.get("_declaring", True):
            return [p[:1] for p in prompts]  # declares each class's first sentence only
        return prompts

    def _ensemble(self) -> tuple[Tensor, Tensor]:
        self.__dict__["_declaring"] = False
        try:
            return super()._ensemble()
        finally:
            self.__dict__["_declaring"] = True


class ImageChangingCoOp(CoOp):
    """CoOp that also shifts the image feature (the leaf's image side is frozen)."""

    name = "mutant-image-changes"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("shift", _fixed_direction(self.backbone, self.backbone.embed_dim, 2), persistent=False)

    def adapt_image_features(self, features: Tensor) -> Tensor:
        return F.normalize(features + 0.3 * self.shift, dim=-1)


class ImageConditionedCoOp(CoOp):
    """CoOp whose text features depend on the image while it declares they do not
    (``image_conditioned_text`` stays False)."""

    name = "mutant-text-depends-on-image"

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        text = super().text_features(None)
        if image_features is None:
            return text
        return F.normalize(text.unsqueeze(0) + 0.3 * image_features.unsqueeze(1), dim=-1)


class TextConditionedAdapter(CLIPAdapter):
    """A "unimodal" adapter whose image feature leans towards the class texts."""

    name = "mutant-image-depends-on-text"

    def adapt_image_features(self, features: Tensor) -> Tensor:
        return F.normalize(super().adapt_image_features(features) + 0.3 * self.zero_shot_weights().mean(0), dim=-1)


class PixelEditingVPT(VPT):
    """VPT that also edits the pixels (the token leaf leaves the input image alone)."""

    name = "mutant-pixels-change"

    def image_features(self, images: Tensor) -> Tensor:
        return super().image_features(images + 0.1)


class MarkOutsideBox(RedCircle):
    """The red circle, plus one painted pixel outside every marker region."""

    name = "mutant-pixels-outside-marker"

    def mark(self, image: Tensor, boxes) -> Tensor:  # noqa: ANN001
        marked = super().mark(image, boxes).clone()
        s = marked.shape[-1]
        marked[:, :, s // 2, s // 2] = 3.0  # the centre: inside no ring of the probe's boxes
        return marked


class BlursTheTarget(FGVP):
    """FGVP that blurs the candidate box too: pixels change inside the region it leaves
    out of its declared marker (the blurred surround)."""

    name = "mutant-blurs-the-target"

    def paint(self, image: Tensor, region: Tensor) -> Tensor:
        return gaussian_blur(image, self.sigma).unsqueeze(0).expand(region.shape[0], -1, -1, -1)


class TokenGrowingPixelPrompt(VisualPrompt):
    """A pixel prompt that also appends a vision token (the pixel leaf keeps the sequence)."""

    name = "mutant-vision-tokens-grow"
    requires_vision_tokens = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        width = self.backbone.vision_width
        self.register_buffer("token", torch.zeros(1, 1, width, device=self.device), persistent=False)

    def image_features(self, images: Tensor) -> Tensor:
        return self.backbone.encode_image(images, pixel_hook=self.prompt, prompt_tokens=self.token, normalize=True)


class UncoupledMaPLe(MaPLe):
    """MaPLe whose vision prompts ignore the text prompts (the coupling is cut)."""

    name = "mutant-vision-prompts-ignore-text"

    def vision_prompt_tensors(self) -> list[Tensor]:
        return [proj(p.detach()) for proj, p in zip(self.couplings, self.text_prompt_parameters(), strict=True)]


class SharedShiftAdapter(CLIPAdapter):
    """A "unimodal" adapter with one parameter acting in both towers."""

    name = "mutant-crossmodal"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shared = nn.Parameter(0.1 * _fixed_direction(self.backbone, self.backbone.embed_dim, 3))

    def adapt_image_features(self, features: Tensor) -> Tensor:
        return F.normalize(super().adapt_image_features(features) + self.shared, dim=-1)

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        return F.normalize(super().text_features(image_features) + self.shared, dim=-1)


# ---------------------------------------------------------------- generic checks
class UnfreezesBackbone(CoOp):
    """CoOp that switches one backbone tensor to trainable."""

    name = "mutant-unfreezes-backbone"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.backbone.model.ln_final.weight.requires_grad_(True)


class DeadParameter(CoOp):
    """CoOp with a declared trainable tensor that nothing reads."""

    name = "mutant-dead-parameter"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.unused = nn.Parameter(torch.zeros(3, device=self.device))


class WritesBuffer(CoOp):
    """CoOp that counts its forward passes in a saved buffer (an undeclared change)."""

    name = "mutant-writes-buffer"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("calls", torch.zeros((), device=self.device))

    def forward(self, images: Tensor) -> Tensor:
        self.calls.add_(1)
        return super().forward(images)


class TrainingFreeLie(_TrainedGain, TipAdapter):
    """Tip-Adapter (declared training-free) with a trainable gain on its logits."""

    name = "mutant-training-free-lie"


class ExtraParameterCoOp(_TrainedGain, CoOp):
    """CoOp with one more trainable scalar (a logit gain) than its record states."""

    name = "mutant-param-count"


class InfiniteLogit(ZSCLIP):
    """Zero-shot CLIP whose logit for one base class is infinite at inference."""

    name = "mutant-logits"

    def logits_from_features(self, image_features: Tensor) -> Tensor:
        logits = super().logits_from_features(image_features)
        if not self.training and "red circle" in self.classnames:
            logits = logits.clone()
            logits[:, self.classnames.index("red circle")] = float("inf")
        return logits


class UnsavedTemperature(CoOp):
    """CoOp that trains a logit temperature kept outside its module tree, so checkpoints
    never hold it."""

    name = "mutant-save-load"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "temperature", nn.Parameter(torch.ones((), device=self.device)))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*super().trainable_parameters(), self.temperature]

    def logits_from_features(self, image_features: Tensor) -> Tensor:
        return super().logits_from_features(image_features) * self.temperature


class ForgetsOnRelabel(CoOp):
    """CoOp that re-draws its context whenever the label set changes (base -> novel
    loses the training)."""

    name = "mutant-novel-classes"

    def build_class_state(self) -> None:
        super().build_class_state()
        with torch.no_grad():
            nn.init.normal_(self.prompt_learner.ctx, std=0.02)


class UnseededInit(CoOp):
    """CoOp whose context is drawn from a generator seeded by the clock."""

    name = "mutant-deterministic"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        g = torch.Generator().manual_seed(time.time_ns() % (2**63))
        with torch.no_grad():
            self.prompt_learner.ctx.copy_(0.02 * torch.randn(self.prompt_learner.ctx.shape, generator=g))


class BatchCentredAdapter(CLIPAdapter):
    """An adapter that centres features on the batch mean (results depend on the batch)."""

    name = "mutant-batch-size-invariant"

    def adapt_image_features(self, features: Tensor) -> Tensor:
        return super().adapt_image_features(features - 0.5 * features.mean(0, keepdim=True))


class LiesAboutFrozenPath(VisualPrompt):
    """VP declaring ``frozen_image_path``: the engine would cache features VP changes."""

    name = "mutant-frozen-image-path"
    frozen_image_path = True


# ------------------------------------------------------------- test-time tuning
class DetachedTestTimeObjective(TPT):
    """TPT whose test-time objective is cut from the contexts it tunes: with no trainable
    tensor and no gradient at test time, nothing trains."""

    name = "mutant-test-time-detached"

    def test_time_objective(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        loss, tuned = super().test_time_objective(images)
        return loss.detach(), tuned


class ViewsEditTheImage(TPT):
    """TPT declaring test-time views, but the image itself reaches the tower edited: the
    declaration must not hide a pixel change."""

    name = "mutant-views-edit-image"

    def views(self, images: Tensor) -> Tensor:
        views = super().views(images)
        views[:, 0] = views[:, 0] + 0.5
        return views


# ------------------------------------------------------------------ variants
class VariantOnlyBug(CoOp):
    """CoOp whose class-specific variant (csc=true) shifts the image feature: only a
    probe of the variant's config can see it."""

    name = "mutant-variant"
    conformance_variants = {"csc": {"csc": "true"}}

    def adapt_image_features(self, features: Tensor) -> Tensor:
        if self.config.csc:
            return F.normalize(features + 0.3 * _fixed_direction(self.backbone, features.shape[-1], 4), dim=-1)
        return features


MUTANTS: tuple[type, ...] = (
    TrainsHandcrafted, DeadContext, TextChangingPixelPrompt, UndeclaredPrompts, ImageChangingCoOp, ImageConditionedCoOp,
    TextConditionedAdapter, PixelEditingVPT, MarkOutsideBox, BlursTheTarget, TokenGrowingPixelPrompt, UncoupledMaPLe,
    SharedShiftAdapter, UnfreezesBackbone, DeadParameter, WritesBuffer, TrainingFreeLie, ExtraParameterCoOp,
    InfiniteLogit, UnsavedTemperature, ForgetsOnRelabel, UnseededInit, BatchCentredAdapter, LiesAboutFrozenPath,
    VariantOnlyBug, DetachedTestTimeObjective, ViewsEditTheImage,
)

# Row label -> {cell that must be red: a word its reason must contain}.
EXPECTED_RED: dict[str, dict[str, str]] = {
    "mutant-trains": {"signature.trains": "gradient"},
    "mutant-dead-context": {"signature.trains": "gradient", "only_declared_change": "never moved"},
    "mutant-text-changes": {"signature.text_changes": "frozen text"},
    "mutant-undeclared-prompts": {"signature.text_changes": "class_prompts()"},
    "mutant-image-changes": {"signature.image_changes": "frozen image feature"},
    "mutant-text-depends-on-image": {"signature.text_depends_on_image": "other images",
                                     "signature.crossmodal_dependence": "text features depend on the image"},
    "mutant-image-depends-on-text": {"signature.image_depends_on_text": "class names change",
                                     "signature.crossmodal_dependence": "image features depend on the class texts"},
    "mutant-pixels-change": {"signature.pixels_change": "encoder input"},
    "mutant-pixels-outside-marker": {"signature.pixels_change_only_in_marker": "outside the declared marker"},
    "mutant-blurs-the-target": {"signature.pixels_change_only_in_marker": "outside the declared marker"},
    "mutant-vision-tokens-grow": {"signature.vision_tokens_grow": "vision sequence"},
    "mutant-vision-prompts-ignore-text": {"signature.vision_prompt_grad_wrt_text_prompt": "text prompts",
                                          "signature.crossmodal_dependence": "no parameter shared by both"},
    "mutant-crossmodal": {"signature.crossmodal_dependence": "parameters act in both towers"},
    "mutant-unfreezes-backbone": {"frozen_backbone": "backbone not frozen"},
    "mutant-dead-parameter": {"only_declared_change": "never moved"},
    "mutant-writes-buffer": {"only_declared_change": "undeclared change"},
    "mutant-training-free-lie": {"training_free_no_params": "declared training_free"},
    "mutant-param-count": {"param_count": "the record states"},
    "mutant-logits": {"logits": "NaN or inf"},
    "mutant-save-load": {"save_load": "save -> load"},
    "mutant-novel-classes": {"novel_classes": "trained tensors differ"},
    "mutant-deterministic": {"deterministic": "same seed"},
    "mutant-batch-size-invariant": {"batch_size_invariant": "batch size"},
    "mutant-frozen-image-path": {"frozen_image_path": "cached-feature logits differ"},
    "mutant-variant": {},
    "mutant-variant:csc": {"signature.image_changes": "frozen image feature"},
    "mutant-test-time-detached": {"signature.trains": "no gradient"},
    "mutant-views-edit-image": {"signature.pixels_change": "never reach the tower unchanged"},
}
