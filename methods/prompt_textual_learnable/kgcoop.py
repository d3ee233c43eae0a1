"""# KgCoOp: Knowledge-guided Context Optimization

*Yao, Zhang, Xu. "Visual-Language Prompt Tuning with Knowledge-guided Context Optimization",
CVPR 2023 (arXiv 2303.13283).*

Learned contexts drift away from the general knowledge held in hand-crafted prompts,
which is why CoOp loses accuracy on unseen classes. KgCoOp keeps CoOp's prompt learner
and adds a regulariser that holds each learned class embedding $w_c$ close to the frozen
hand-crafted one $w_c^{\\text{clip}}$:

$$\\mathcal{L} = \\mathcal{L}_{ce} + \\lambda\\,\\frac{1}{C}\\sum_{c=1}^{C}\\lVert w_c - w_c^{\\text{clip}}\\rVert_2^2, \\qquad \\lambda = 8.$$

It adds no parameters and no inference cost; the hand-crafted embeddings are computed
once (the backbone caches them per label set).

What this version simplifies: $w^{\\text{clip}}$ is the task's template ensemble (the
method's ``templates``) rather than one dataset-specific template. We follow the paper's
squared L2 distance of normalised features; the official code writes the same idea as
$1 - \\overline{\\cos}$, which is half of it, so its $\\lambda=8$ corresponds to 4 here.

What this version changes in the defaults: **lr 0.02** (paper: 0.002). On the embedded
backbone (learned logit scale ~22 rather than CLIP's 100, so ~4.6x smaller gradients)
and 40 training images (one full-batch step an epoch), the paper's lr leaves the context
near its init. Chosen on val (digits, 4 shots, mean over seeds 1-3): lr 0.002 gives
0.658, lr 0.02 0.675 (world-v2 backbone, zero-shot 0.608).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from vlmeft import registry
from vlmeft.errors import VlmeftError

from .coop import Config as CoOpConfig
from .coop import CoOp


@dataclass
class Config(CoOpConfig):
    """KgCoOp's ViT-B/16 recipe (vit_b16_ep100_ctxv1): CoOp's prompt learner with 4 tokens
    from "a photo of a", SGD lr 0.002, batch 128, 100 epochs, lambda 8."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.02  # paper: 0.002; chosen on val for the embedded backbone (module notes)
    n_ctx: int = 4
    ctx_init: str = "a photo of a"
    kg_weight: float = 8.0  # lambda of the knowledge-guided term

    def validate(self) -> None:
        super().validate()
        if self.kg_weight < 0:
            raise VlmeftError(f"kg_weight must be non-negative, got {self.kg_weight}", where="--set")


@registry.register
class KgCoOp(CoOp):
    """CoOp plus lambda * mean_c ||w_c - w_c^clip||^2 in the loss."""

    name = "kgcoop"
    category = "prompt.textual.learnable"
    Config = Config
    requires_vision_tokens = False
    frozen_image_path = True

    _last_text: Tensor | None = None

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        text = super().text_features(image_features)
        # Kept for `loss`, so the regulariser reuses this step's text pass.
        self._last_text = text if text.requires_grad else None
        return text

    def knowledge_loss(self, text: Tensor | None = None) -> Tensor:
        """mean_c ||w_c - w_c^clip||^2 over the current classes (normalised features)."""
        if text is None:
            text = super().text_features()
        frozen = self.zero_shot_weights().to(text.dtype)
        return (text - frozen).pow(2).sum(dim=-1).mean()

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        text, self._last_text = self._last_text, None
        return super().loss(logits, labels) + self.config.kg_weight * self.knowledge_loss(text)
