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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft.adapters_common import raw_text_prototypes, require_class_count
from vlmeft.errors import VlmeftError
from vlmeft.method import Method, MethodConfig


@dataclass
class Config(MethodConfig):
    """TaskRes settings."""

    alpha: float = 0.5  # residual scale (train_regular.sh: 0.5, Flowers 1.0)
    epochs: int = 100
    batch_size: int = 256
    lr: float = 2e-3
    optimizer: Literal["sgd", "adamw", "adam"] = "adam"

    def validate(self) -> None:
        super().validate()
        if self.alpha < 0:
            raise VlmeftError(f"alpha must be non-negative, got {self.alpha}", where="--set")


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
        self.register_buffer("base_text", raw_text_prototypes(self.backbone, self.classnames, self.templates),
                             persistent=False)

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        return F.normalize(self.base_text + self.config.alpha * self.residual, dim=-1)
