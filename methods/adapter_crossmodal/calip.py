"""
# CALIP: zero-shot enhancement of CLIP with parameter-free attention

*Guo, Zhang, Qiu, Ma, Miao, He and Cui, "CALIP: Zero-Shot Enhancement of CLIP with
Parameter-free Attention", AAAI 2023 (arXiv 2209.14169).*

CALIP lets the two modalities attend to each other once, after both encoders, with no
learnable weights. Take the image's spatial features $F_s \\in \\mathbb{R}^{P \\times E}$
(patch tokens projected into the joint space), its global feature $F_v$, and the class
text features $F_t \\in \\mathbb{R}^{C \\times E}$, all normalised. The cross-modal
affinity $A = F_s F_t^\\top / \\tau$ ($P \\times C$) is read both ways:

* every spatial location gathers text: $F_s^a = \\mathrm{softmax}_C(A)\\, F_t$, pooled to
  a *text-aware image feature* $F_v^a = \\mathrm{mean}_P(F_s^a) + \\mathrm{max}_P(F_s^a)$;
* every class gathers image regions: $F_t^a = \\mathrm{softmax}_P(A)^\\top F_s$, a
  *visual-guided text feature* per image.

The logits blend three terms, zero-shot, text-guided and image-guided:

$$\\mathrm{logits} = \\lambda\\big(\\beta_1 F_v F_t^\\top + \\beta_2 F_v {F_t^a}^\\top
+ \\beta_3 F_v^a F_t^\\top\\big),$$

with $\\lambda$ the logit scale and $\\tau = 1/2$ (the released code multiplies the
affinity by 2). The image-side output depends on the text features and the text-side
output on the image: CALIP takes part in modal fusion (category `adapter.crossmodal`).

**CALIP-FS** (the paper's few-shot variant) inserts a few linear layers into this
attention and trains them on the few-shot set; here ``few_shot=True`` adds two, one per
modality, applied to $F_s$ and $F_t$ before the attention and initialised to the identity
(so training starts at training-free CALIP). Only the attention branches see them; the
zero-shot term stays frozen.

## What this version changes
* $\\beta_2, \\beta_3$ are fixed config values: the released code grid-searched them
  *on the test set* (``beta1 = 1``; ImageNet search ranges up to 2.0 and 0.1). The
  engine's validation search receives pooled features only, which cannot rebuild the
  attention terms, so no search is done; the defaults are the middle of the released
  search ranges.
* ViT only: the spatial features are the backbone's projected patch tokens
  (``encode_image(..., return_tokens=True)``). The paper's ResNet variant reads the feature
  map before the attention pool, which our wrapper does not expose; a ResNet backbone is
  refused with a clear error.
* ``image_features`` returns the part of the image side that meets the class text
  features, ``normalise(beta1 F_v + beta3 F_v^a)``: it depends on the text features.
* CALIP-FS's exact layer placement in the paper is richer; ours is a deliberate minimum.
* CALIP-FS trains with AdamW at lr 0.01 and is run as
  ``--set few_shot=true --set epochs=100``. Chosen on val (digits, 4 shots, mean over
  seeds 1-3): lr 1e-3 x 20 epochs 0.650, lr 1e-2 x 20 epochs 0.658, lr 1e-2 x 100
  epochs 0.733 (world-v2 backbone, zero-shot 0.608). ``epochs`` stays 0 by default, so plain ``calip`` is
  the training-free method.

## On the embedded default
Training-free CALIP only just beats zero-shot on synthclip-tiny (digits: 53.1% against
52.2% on test; ``results/digits-4shot.json``). Its attention reads the *projected patch
tokens*, and only the pooled class token was trained to align with text: on a 32 px,
4-layer ViT the patch tokens carry little class-specific text alignment, so both
attention terms add near-constant votes. On the previous backbone (world-v2) it sat just
below zero-shot (55.5% against 55.8%), and a val search (digits, 4 shots, seeds 1-3) over
``beta2`` in {0, 0.25, 0.5, 1}, ``beta3`` in {0, 0.05, 0.5} and ``temperature`` in
{0.5, 1} moved the mean val accuracy by at most one image in 40 (0.608-0.625, zero-shot
0.608), so the released defaults stay. This is a property of the small backbone, not a
bug: the conformance checks show the cross-modal dependence is real. CALIP-FS, whose
linear layers learn to re-map the patch and text features before the attention, trains
well past zero-shot (59.5% test, mean over seeds 1-3, with the settings above).

## Fidelity
Training-free CALIP against ZiyuGuo99/CALIP @ 83e21b6 (its ``text_encode``, its CLIP that
returns every projected token, and the logit expressions of ``run_imagenet.py``; setup in
:mod:`vlmeft.methods`), two templates, beta2 1, beta3 0.05: logits agree to 1.3e-5 (4.1e-7
relative). The record stays ``simplified``: the betas are fixed instead of searched (the
official search reads the test set) and CALIP-FS has no released code to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft import registry
from vlmeft.errors import VlmeftError
from vlmeft.method import Method, MethodConfig
from vlmeft.recipes import Source


@dataclass
class Config(MethodConfig):
    """CALIP settings; ``few_shot=True`` gives CALIP-FS.

    The released code is training-free only: ``run_imagenet.py`` with ``configs/imagenet.yaml``
    of ZiyuGuo99/CALIP (@ 83e21b6), fp16 (``clip.load`` on CUDA), which grid-searches beta2
    in (0, 2] and beta3 in (0, 0.1] on the *test* features; here they stay fixed at the
    middle of those ranges (module notes). CALIP-FS has no released code and its training
    settings could not be checked against the paper here: its lr and optimiser below are
    this project's, chosen on val (module notes), in both recipes."""

    beta1: float = 1.0  # zero-shot term
    beta2: float = 1.0  # image vs visual-guided text term
    beta3: float = 0.05  # text-aware image vs text term
    temperature: float = 0.5  # softmax temperature of the affinity (x2 in the released code)
    few_shot: bool = False  # CALIP-FS: learnable linear layers in the attention
    epochs: int = 0  # training-free unless few_shot
    batch_size: int = 32
    lr: float = 1e-2  # CALIP-FS only; 1e-3 and 1e-2 tried on val, 1e-2 kept (module notes)
    optimizer: Literal["sgd", "adamw"] = "adamw"

    source: ClassVar[Source] = Source("ZiyuGuo99/CALIP", "configs/imagenet.yaml", "83e21b6", "fp16")
    embedded: ClassVar[dict[str, Any]] = {}

    def validate(self) -> None:
        super().validate()
        if self.temperature <= 0:
            raise VlmeftError(f"temperature must be positive, got {self.temperature}", where="--set")
        if self.few_shot and self.epochs == 0:
            raise VlmeftError("few_shot=true trains linear layers: set epochs > 0", where="--set")


@registry.register(reference_for="adapter.crossmodal")
class CALIP(Method):
    """Parameter-free two-way attention between patch tokens and class text features."""

    name = "calip"
    category = "adapter.crossmodal"
    Config = Config
    requires_vision_tokens = True
    training_free = True  # per instance: False when config.few_shot (CALIP-FS)
    frozen_image_path = False
    conformance_variants = {"fs": {"few_shot": "true", "epochs": "1"}}  # CALIP-FS

    def __init__(self, backbone, classnames, templates, config: Config | None = None) -> None:
        super().__init__(backbone, classnames, templates, config)
        self.training_free = not self.config.few_shot
        if self.config.few_shot:
            dim = backbone.embed_dim
            self.visual_proj = nn.Linear(dim, dim)
            self.text_proj = nn.Linear(dim, dim)
            for layer in (self.visual_proj, self.text_proj):
                nn.init.eye_(layer.weight)
                nn.init.zeros_(layer.bias)
            self.to(device=backbone.device, dtype=backbone.dtype)
        self.build_class_state()

    # ------------------------------------------------------------- attention
    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Frozen normalised global feature ``[B, E]`` and spatial features ``[B, P, E]``."""
        pooled, tokens = self.backbone.encode_image(images, return_tokens=True)
        return F.normalize(pooled, dim=-1), F.normalize(tokens, dim=-1)

    def attend(self, spatial: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """The two attention reads: text-aware image feature ``[B, E]`` and visual-guided
        text features ``[B, C, E]``."""
        if self.config.few_shot:
            spatial = self.visual_proj(spatial)
            text = self.text_proj(text)
        affinity = spatial @ text.t() / self.config.temperature  # [B, P, C]
        image_a = torch.softmax(affinity, dim=-1) @ text  # [B, P, E]
        image_a = image_a.mean(dim=1) + image_a.amax(dim=1)
        text_a = torch.softmax(affinity, dim=1).transpose(1, 2) @ spatial  # [B, C, E]
        return image_a, text_a

    def calip_logits(self, pooled: Tensor, spatial: Tensor) -> Tensor:
        cfg = self.config
        text = self.zero_shot_weights()
        image_a, text_a = self.attend(spatial, text)
        logits = (
            cfg.beta1 * pooled @ text.t()
            + cfg.beta2 * torch.einsum("be,bce->bc", pooled, text_a)
            + cfg.beta3 * image_a @ text.t()
        )
        return self.backbone.logit_scale() * logits

    def forward(self, images: Tensor) -> Tensor:
        return self.calip_logits(*self.encode(images))

    def image_features(self, images: Tensor) -> Tensor:
        pooled, spatial = self.encode(images)
        image_a, _ = self.attend(spatial, self.zero_shot_weights())
        return F.normalize(self.config.beta1 * pooled + self.config.beta3 * image_a, dim=-1)
