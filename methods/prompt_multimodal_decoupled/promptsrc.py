"""# PromptSRC: Prompting with Self-Regulating Constraints

*Khattak, Wasim, Naseer, Khan, Yang, Khan. "Self-regulating Prompts: Foundational Model
Adaptation without Forgetting", ICCV 2023 (arXiv 2307.06948).*

Deep prompts fitted to a few labelled images overfit them and forget what the frozen
model knew, so novel classes suffer. PromptSRC keeps IVLP's independent deep prompts in
both towers (:mod:`.ivlp`: $T_i$ after SOS in the text tower, $\\tilde P_i$ after the
patches in the image tower, replaced in each of the first $J$ layers) and regulates them
three ways.

**Mutual agreement with the frozen model.** With $\\tilde g$, $\\tilde f$ the prompted
(normalised) text and image features, $g$, $f$ the frozen model's, and $\\tilde z$, $z$
the prompted and the frozen zero-shot logits,

$$\\mathcal{L} = \\mathcal{L}_{CE}(\\tilde z, y)
+ \\lambda_1 \\lVert \\tilde g - g \\rVert_1 + \\lambda_2 \\lVert \\tilde f - f \\rVert_1
+ \\mathrm{KL}\\big(\\sigma(z) \\,\\Vert\\, \\sigma(\\tilde z)\\big),$$

with $\\lambda_1 = 25$, $\\lambda_2 = 10$. The official code takes both L1 terms as the
*mean* absolute difference over all entries and divides the summed KL by the number of
logits (batch x classes); so does this version.

**Textual diversity.** The frozen text feature $g_c$ of class $c$ is not one prompt but the
normalised mean of the frozen encoder's (unnormalised) features over many templates: the
60 of CLIP's ImageNet templates the official code uses (``teacher_templates=imagenet``),
or the task's own templates (``task``).

**Gaussian prompt aggregation (GPA).** After epoch $t$ of $E$ the prompts $P_t$ are added
to a running sum with weight $w_t \\propto \\mathcal{N}(t; \\mu, \\sigma^2)$
($\\sum_t w_t = 1$); after the last epoch the prompts become $\\sum_t w_t P_t$. The
engine's :meth:`~vlmeft.method.Method.end_epoch` hook does this, so the state an
evaluation sees after training is the aggregate. $\\mu$ and $\\sigma$ are in epochs of the
recipe's ``epochs``; when the engine runs more epochs (``min_steps``) both stretch by
the same factor, so the Gaussian keeps its place in training.

The regulariser needs the frozen image feature of every training image, so a training
step runs the image tower twice (once prompted, once frozen, without gradient). At
inference PromptSRC costs what IVLP costs.

Parameters on ViT-B/16 (4 + 4 tokens in 9 layers of each tower): 9 x 4 x 512 + 9 x 4 x 768
= 46,080.

## What this version changes
* Forward pass: IVLP's, which is the same deep prompting as the official
  ``ResidualAttentionBlock_IVLP`` (prompts replace the previous layer's outputs; vision
  prompts sit after the patch tokens and pass ``ln_pre``). Widths and depths come from
  the backbone; depths are clipped to each tower (all 4 layers of synthclip-tiny).
* The frozen text feature averages the templates' *unnormalised* features before
  normalising, as the official code does (the project's zero-shot classifier averages
  normalised ones).
* No fp16 cast. The official trainer skips the regularisers under ``PREC=amp``; here they
  always apply.

Fidelity: **faithful**, compared with the official code (muzairkhattak/PromptSRC @ bb95c77,
``trainers/promptsrc.py`` and its ``clip/model.py``; run outside the project with Dassl
stubbed, ``.cuda()``/``.half()`` made no-ops and fp32 throughout) on one random ViT-B/16
(QuickGELU, weights rounded to fp16 as the official loader does), 3 classes, 2 images, the
paper recipe, the official prompts copied into this module: eval logits differ by at most
1.5e-6, the frozen text features (60 templates) by 6.7e-8, one training step's loss
(CE + both L1 terms + KL) by 3.6e-7, and the gradients of all 18 prompt tensors by 1.2e-6
(largest gradient 0.50). GPA is the training loop's: checked against its formula in
``tests/test_methods_multimodal.py``.

## The embedded recipe (``Config.embedded``)
The frozen-feature teacher uses the task's templates and training runs at least 300 steps;
selection is the project's shared rule (best val epoch). Val evidence (``vlmeft`` 4-shot digits, val accuracy of the kept state, mean over seeds 1-3; zero-shot CLIP 0.633): this recipe
0.725; the same with last-epoch selection (the aggregated GPA prompts) 0.708, with the 60
ImageNet teacher templates 0.700, without the 300-step floor 0.667, lr 0.01 0.633.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from vlmeft import registry
from vlmeft.backbone.wrapper import Backbone
from vlmeft.errors import VlmeftError
from vlmeft.recipes import Source

from .ivlp import IVLP
from .ivlp import Config as IVLPConfig

# The 60 templates PromptSRC averages for its frozen text features
# (``trainers/imagenet_templates.py``: a subset of CLIP's ImageNet prompt ensemble).
IMAGENET_TEMPLATES = [
    "a photo of a {}.", "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
    "graffiti of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.", "a tattoo of a {}.",
    "the embroidered {}.", "a photo of a hard to see {}.", "a bright photo of a {}.",
    "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.", "a drawing of a {}.",
    "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.", "a close-up photo of a {}.",
    "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
    "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.",
]


def gpa_weights(epochs: int, mean: float, std: float) -> list[float]:
    """GPA's weight of each epoch ``1..epochs``: a Gaussian density at the epoch number,
    normalised to sum to 1 (the official ``get_gauss`` evaluated at ``range(1, N + 1)``)."""
    dens = [math.exp(-0.5 * ((t - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi)) for t in range(1, epochs + 1)]
    total = sum(dens)
    if not total > 0:
        raise VlmeftError(f"gpa_mean={mean} and gpa_std={std} give every one of the {epochs} epochs zero weight",
                          where="--set")
    return [d / total for d in dens]


@dataclass
class Config(IVLPConfig):
    """PromptSRC's base-to-novel recipe, ``configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml``
    of muzairkhattak/PromptSRC (@ bb95c77), on Dassl's defaults: 4 text + 4 vision tokens
    in 9 layers of each tower, text init "a photo of a", SGD lr 0.0025 (momentum 0.9, weight
    decay 5e-4), batch 4, 20 epochs, one constant warm-up epoch at 1e-5 then Dassl's cosine,
    random resized crop + flip, fp16, text/image L1 weights 25/10, GPA mean 15 and std 1,
    the last (aggregated) epoch evaluated (``scripts/promptsrc/base2new_test.sh`` loads
    epoch 20). Few-shot runs use ``vit_b16_c2_ep50_batch4_4+4ctx_few_shot.yaml``: 50
    epochs, GPA mean 30 and std 30 (``--set epochs=50 gpa_mean=30 gpa_std=30``).

    Embedded recipe: see ``embedded`` below."""

    epochs: int = 20
    batch_size: int = 4
    lr: float = 0.0025
    n_ctx_text: int = 4
    n_ctx_vision: int = 4
    ctx_init: str = "a photo of a"
    depth_text: int = 9
    depth_vision: int = 9
    text_loss_weight: float = 25.0  # lambda_1: L1 between prompted and frozen text features
    image_loss_weight: float = 10.0  # lambda_2: L1 between prompted and frozen image features
    gpa_mean: float = 15.0  # GPA's Gaussian over epochs 1..epochs
    gpa_std: float = 1.0
    # The templates behind the frozen text features: the official 60 ImageNet ones, or the task's.
    teacher_templates: Literal["imagenet", "task"] = "imagenet"

    source: ClassVar[Source] = Source("muzairkhattak/PromptSRC",
                                      "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml", "bb95c77", "fp16")
    # Val evidence: the module docstring's embedded-recipe section.
    embedded: ClassVar[dict[str, Any]] = {"teacher_templates": "task", "min_steps": 300}

    def validate(self) -> None:
        super().validate()
        if self.text_loss_weight < 0 or self.image_loss_weight < 0:
            raise VlmeftError("text_loss_weight and image_loss_weight must be non-negative", where="--set")
        if self.gpa_std <= 0:
            raise VlmeftError(f"gpa_std must be positive, got {self.gpa_std}", where="--set")


@registry.register
class PromptSRC(IVLP):
    """IVLP's deep prompts, held to the frozen model by L1 and KL terms, aggregated over
    epochs by a Gaussian."""

    name = "promptsrc"
    category = "prompt.multimodal.decoupled"
    Config = Config
    requires_vision_tokens = True
    frozen_image_path = False

    teacher_text: Tensor

    def __init__(
        self, backbone: Backbone, classnames: Sequence[str], templates: Sequence[str], config: Config | None = None
    ) -> None:
        super().__init__(backbone, classnames, templates, config)
        self._regularise: tuple[Tensor, Tensor, Tensor] | None = None  # this step's features, for `loss`
        self._gpa: dict[str, Tensor] = {}  # GPA's running weighted sum (training state, never saved)

    def build_class_state(self) -> None:
        super().build_class_state()
        self.register_buffer("teacher_text", self._teacher_text(), persistent=False)

    @torch.no_grad()
    def _teacher_text(self) -> Tensor:
        """``[C, E]``: per class, the normalised mean of the frozen encoder's unnormalised
        features over the teacher templates (the official ``fixed_embeddings``)."""
        bb = self.backbone
        templates = IMAGENET_TEMPLATES if self.config.teacher_templates == "imagenet" else self.templates
        if not templates:
            raise VlmeftError("PromptSRC needs at least one template for its frozen text features")
        names = [c.replace("_", " ") for c in self.classnames]
        feats = torch.stack([bb.encode_text(bb.tokenize([t.format(c) for c in names])) for t in templates])
        return F.normalize(feats.mean(dim=0), dim=-1)

    # ------------------------------------------------------------------ training
    def forward(self, images: Tensor) -> Tensor:
        feats = self.image_features(images)
        text = self.class_text_features(feats)
        logits = self.backbone.logit_scale() * feats @ text.t()
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():  # the frozen model's view of the same images, for the regulariser
                frozen = self.backbone.encode_image(images, normalize=True)
            self._regularise = (feats, text, frozen)
        return logits

    def regulariser(self, logits: Tensor, feats: Tensor, text: Tensor, frozen: Tensor) -> Tensor:
        """lambda_1 L1(text) + lambda_2 L1(image) + KL(zero-shot || prompted), as the official code sums them."""
        cfg = self.config
        teacher = self.teacher_text.to(text.dtype)
        zero_shot = self.backbone.logit_scale() * frozen.to(teacher.dtype) @ teacher.t()
        kl = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(zero_shot.to(logits.dtype), dim=1),
                      reduction="sum", log_target=True) / logits.numel()
        return (cfg.text_loss_weight * F.l1_loss(text, teacher) + cfg.image_loss_weight * F.l1_loss(feats, frozen)
                + kl)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy plus the self-regulating terms of this step's training forward pass
        (logits from an eval-mode or no-grad forward carry no regulariser)."""
        ce = F.cross_entropy(logits, labels)
        saved, self._regularise = self._regularise, None
        if saved is None:
            return ce
        return ce + self.regulariser(logits, *saved)

    # ------------------------------------------------------------------ GPA
    @torch.no_grad()
    def end_epoch(self, epoch: int, epochs: int) -> None:
        """Add this epoch's prompts to the Gaussian-weighted sum; after the last epoch,
        the prompts become that sum."""
        cfg = self.config
        stretch = epochs / cfg.epochs if cfg.epochs > 0 else 1.0
        weight = gpa_weights(epochs, cfg.gpa_mean * stretch, cfg.gpa_std * stretch)[epoch]
        if epoch == 0:
            self._gpa = {}
        for name, p in self.named_parameters():
            if p.requires_grad:
                self._gpa[name] = self._gpa.get(name, torch.zeros_like(p)) + weight * p.detach()
        if epoch == epochs - 1:
            for name, p in self.named_parameters():
                if name in self._gpa:
                    p.copy_(self._gpa[name])
            self._gpa = {}
