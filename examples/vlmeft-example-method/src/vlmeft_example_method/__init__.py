"""A diagonal image-feature adapter: the smallest useful third-party vlmeft method.

The adapted image feature is ``normalise(f * (1 + s))`` with one learnable scale per
feature dimension, ``s``, initialised at zero (so training starts at zero-shot CLIP). The
text side is CLIP's frozen zero-shot classifier. It plays no role in modal fusion, so it
declares the category ``adapter.unimodal``; since it reads the image only through the
frozen encoder's feature, it declares ``frozen_image_path`` and the engine caches those
features.

Registered by the entry point in ``pyproject.toml``; the class only sets ``name`` (which
must equal the entry-point name) and ``category``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft.method import Method, MethodConfig


@dataclass
class Config(MethodConfig):
    epochs: int = 20
    lr: float = 0.05


class DiagonalAdapter(Method):
    """One learnable scale per image-feature dimension; frozen text side."""

    name = "diagonal-adapter"
    category = "adapter.unimodal"
    Config = Config
    frozen_image_path = True

    def __init__(self, backbone, classnames, templates, config: Config | None = None) -> None:
        super().__init__(backbone, classnames, templates, config)
        self.scale = nn.Parameter(torch.zeros(backbone.embed_dim, device=backbone.device, dtype=backbone.dtype))
        self.build_class_state()

    def adapt_image_features(self, features: Tensor) -> Tensor:
        return F.normalize(features * (1.0 + self.scale), dim=-1)
