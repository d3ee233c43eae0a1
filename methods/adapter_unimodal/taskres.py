r"""
# TaskRes: Task Residual Tuning

*Yu, Lu, Jin, Chen and Wang, "Task Residual for Tuning Vision-Language Models",
CVPR 2023 (arXiv 2211.10277).*

TaskRes keeps the zero-shot text classifier as frozen *prior knowledge* and learns a
prior-independent residual on top of it, one vector per class:

$$t'_c = t_c + \alpha\, x_c, \qquad
\mathrm{logits}(f) = \lambda\, \frac{f}{\lVert f\rVert} \cdot \frac{t'_c}{\lVert t'_c\rVert},$$

where $t_c$ is the *base* classifier (the text encoder's un-normalised output for the
class prompts, averaged over templates), $x_c \in \mathbb{R}^E$ is learned from zero,
$\alpha$ scales it (0.5 in every released script but Flowers, 1.0) and $\lambda$ is
CLIP's logit scale. Nothing else trains, no encoder runs after the features are
computed, and with $\alpha = 0$ (or before training) the classifier is zero-shot CLIP's.

The residual lives on the text side only; the image feature is the frozen encoder's, so
the adapter plays no role in modal fusion (category `adapter.unimodal`). The paper also
describes an image-side residual; the release keeps it commented out, and so do we.

## What this version changes
* The base classifier averages the task's templates (the release: the dataset's single
  CoOp template, or 7 + 1 templates on ImageNet).
* The residual is one row per class, so a checkpoint cannot classify a different
  *number* of classes; a label set of the same size keeps the rows by position (the
  release never switches label sets).
* Dassl's "adam" (Adam with the weight decay as an L2 term, 5e-4) is the engine's
  ``optimizer="adam"``.

## Fidelity
Compared with the release (``trainers/taskres.py`` of geekyutao/TaskRes @ 5195359, its
``CustomCLIP`` over the same random-init vlmeft-tiny-vit and -rn, the same residual):
base text features, logits, the cross-entropy and the residual's gradient agree to
1e-6 (max |logit diff| 9.5e-7 at logit scale 4). The training loop is the engine's
Dassl loop with the release's config.

## The embedded recipe
Learning rate 1.0 instead of 2e-3, chosen on val (digits, 4 shots, mean over seeds 1-3,
every other setting the paper's): lr 2e-3 / 1e-2 / 5e-2 / 0.1 / 0.2 / 0.5 / 1.0 gave val
0.658 / 0.667 / 0.767 / 0.775 / 0.792 / 0.792 / 0.808 (zero-shot 0.633); alpha 1.0 at
lr 5e-2 gave 0.783, 200 epochs at lr 5e-2 0.775. synthclip-tiny's learned logit scale is
about 20, not CLIP's 100, and 40 training images make one Adam step an epoch: at 2e-3 the
residual barely leaves zero in 100 steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft import registry
from vlmeft.adapters_common import raw_text_prototypes, require_class_count
from vlmeft.errors import VlmeftError
from vlmeft.method import Method, MethodConfig
from vlmeft.recipes import Source


@dataclass
class Config(MethodConfig):
    """``configs/trainers/TaskRes/adam_lr2e-3_B256_ep100.yaml`` of geekyutao/TaskRes
    (@ 5195359), the config ``train_regular.sh`` runs at 1 to 4 shots (8 and 16 shots:
    ``..._ep200``): Dassl's Adam, lr 2e-3, batch 256, 100 epochs, one constant warm-up epoch
    at 1e-5 then cosine, random resized crop + flip, the last epoch; weight decay is Dassl's
    default 5e-4. Residual scale 0.5 (``train_regular.sh``; 1.0 for Flowers). The trainer
    casts the model to fp32.

    Embedded recipe: lr 1.0 (val evidence in the module notes)."""

    alpha: float = 0.5  # residual scale (train_regular.sh: 0.5, Flowers 1.0)
    epochs: int = 100
    batch_size: int = 256
    lr: float = 2e-3
    optimizer: Literal["sgd", "adamw", "adam"] = "adam"

    text_template: str = "first"  # the official base classifier: the dataset's single CoOp template
    source: ClassVar[Source] = Source("geekyutao/TaskRes", "configs/trainers/TaskRes/adam_lr2e-3_B256_ep100.yaml",
                                      "5195359", "fp32", "residual scale from train_regular.sh")
    embedded: ClassVar[dict[str, Any]] = {"lr": 1.0}

    def validate(self) -> None:
        super().validate()
        if self.alpha < 0:
            raise VlmeftError(f"alpha must be non-negative, got {self.alpha}", where="--set")


@registry.register
class TaskRes(Method):
    """A learnable residual on the frozen base text classifier."""

    name = "taskres"
    category = "adapter.unimodal"
    Config = Config
    frozen_image_path = True

    def __init__(self, backbone, classnames, templates, config: Config | None = None) -> None:
        super().__init__(backbone, classnames, templates, config)
        self.residual = nn.Parameter(torch.zeros(len(self.classnames), backbone.embed_dim,
                                                 device=backbone.device, dtype=backbone.dtype))
        self.build_class_state()

    def build_class_state(self) -> None:
        residual = getattr(self, "residual", None)
        require_class_count(self, None if residual is None else residual.shape[0], "one residual per class")
        self.register_buffer("base_text", raw_text_prototypes(self.backbone, self.classnames, self.text_templates()),
                             persistent=False)

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        return F.normalize(self.base_text + self.config.alpha * self.residual, dim=-1)
