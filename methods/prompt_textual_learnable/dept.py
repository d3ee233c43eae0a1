"""# DePT: Decoupled Prompt Tuning (on CoOp)

*Zhang, Wu, Gao, Shen, Song. "DePT: Decoupled Prompt Tuning", CVPR 2024 (arXiv 2309.07439).*

Prompt tuning trades new-class accuracy for base-class accuracy. DePT traces this to
*channel bias*: during tuning most feature channels fill with base-specific knowledge,
crowding out the task-shared knowledge that new classes need. It therefore moves the
base-specific knowledge into a separate feature space: a **Channel Adjusted Transfer
(CAT) head**, trained alongside the prompt, rescales and shifts the channels of the
image and text features (one FiLM-style $\\gamma \\odot f + \\beta$ per modality) and
classifies them with a linear layer over the base classes. Both the image features and
the text features of the images' labels are training samples of that classifier:

$$\\mathcal{L} = (1-\\lambda)\\,\\mathcal{L}_{ce}\\big(\\tau\\, \\cos(f, g(t_c))\\big)
+ \\lambda\\,\\mathcal{L}_{ce}\\big(W [\\gamma_v \\odot f + \\beta_v;\\; \\gamma_t \\odot g(t_y) + \\beta_t] + b\\big),
\\qquad \\lambda = 0.7.$$

At test time on the base classes the two are fused, $(1-\\lambda)$ ITM logits +
$\\lambda$ CAT logits; on new classes only the image-text matching (ITM) logits of the
original feature space are used. DePT is a plug-in; this is its CoOp variant
(``ExtrasLinearProbeCoOp`` in the official code), the learner CoOp's 16 random context
vectors.

Here the CAT head is bound to the label set it was trained on (remembered at
construction, so a checkpoint rebuilt on its training classes has it): after
``set_classnames`` to other classes only the ITM logits are used; to a subset or
reordering of the training classes, the matching head rows are (as the official code
does for ImageNet-A/-R). The head's lr is the prompt's times ``head_lr_scale`` (the
official ``OPTIM.LR_EXP`` 6.5, through ``Method.parameter_groups``).

What this version simplifies: the CAT head reads the *normalised* frozen image feature
and normalised text features (the official code feeds the unnormalised encoder outputs),
so the engine's exact frozen-feature cache applies; fp32 instead of fp16. The image
feature that the image-text matching uses is the frozen model's; the head's transformed
copy lives only inside the head.

Fidelity: simplified (the normalisation above; not run against the official code).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft import registry
from vlmeft.backbone.wrapper import Backbone
from vlmeft.errors import VlmeftError
from vlmeft.recipes import Source

from .coop import Config as CoOpConfig
from .coop import CoOp


@dataclass
class Config(CoOpConfig):
    """DePT's CoOp recipe, ``configs/trainers/ExtrasLinearProbeCoOp/vit_b16_ep10_bs4_lr35.yaml``
    of Koorye/DePT (@ d4ff416; ``coop_dept`` in ``configs.py``, 16 shots), with the defaults of
    its ``train.py``: CoOp's 16 random context tokens, SGD lr 0.0035 (momentum 0.9, weight
    decay 5e-4), batch 4, 10 epochs, one constant warm-up epoch at 1e-5 then Dassl's cosine,
    random resized crop + flip, fp16, the last epoch evaluated; the CAT head's lr 6.5x
    (``OPTIM.LR_EXP``), ``LINEAR_PROBE.WEIGHT`` 0.7, test-time fusion on.

    Embedded recipe: the shared base plus lr 0.02, epochs 50. Val evidence (4-shot digits,
    val accuracy of the kept state, mean over seeds 1-3; zero-shot CLIP 0.633): lr 0.02 for
    50 epochs 0.717; the shared base 0.625, lr 0.02 0.633, lr 0.05 0.700."""

    epochs: int = 10
    batch_size: int = 4
    lr: float = 0.0035
    n_ctx: int = 16
    cat_weight: float = 0.7  # lambda: the CAT head's share of the loss and of the base-class logits
    head_lr_scale: float = 6.5  # the CAT head trains at this multiple of the prompt's lr

    source: ClassVar[Source] = Source("Koorye/DePT", "configs/trainers/ExtrasLinearProbeCoOp/vit_b16_ep10_bs4_lr35.yaml",
                                      "d4ff416", "fp16")
    embedded: ClassVar[dict[str, Any]] = {'lr': 0.02, 'epochs': 50}

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.cat_weight <= 1.0:
            raise VlmeftError(f"cat_weight must lie in [0, 1], got {self.cat_weight}", where="--set")
        if self.head_lr_scale <= 0:
            raise VlmeftError(f"head_lr_scale must be positive, got {self.head_lr_scale}", where="--set")


class FiLM(nn.Module):
    """A per-channel scale (from 1) and shift (from 0): the CAT head's channel adjustment."""

    def __init__(self, dim: int, device: torch.device) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim, device=device))
        self.shift = nn.Parameter(torch.zeros(dim, device=device))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale.to(x.dtype) * x + self.shift.to(x.dtype)


@registry.register
class DePT(CoOp):
    """CoOp plus a CAT head over the training classes, fused with the ITM logits on them."""

    name = "dept"
    category = "prompt.textual.learnable"
    Config = Config
    requires_vision_tokens = False
    frozen_image_path = True

    head_rows: Tensor | None
    _last: tuple[Tensor, Tensor] | None = None

    def __init__(
        self, backbone: Backbone, classnames: Sequence[str], templates: Sequence[str], config: Config | None = None
    ) -> None:
        self.trained_classnames = list(classnames)  # the label set the CAT head classifies
        super().__init__(backbone, classnames, templates, config)
        dim = backbone.embed_dim
        self.film_image = FiLM(dim, backbone.device)
        self.film_text = FiLM(dim, backbone.device)
        self.head = nn.Linear(dim, len(self.trained_classnames)).to(backbone.device)

    def build_class_state(self) -> None:
        super().build_class_state()
        index = {name: i for i, name in enumerate(self.trained_classnames)}
        rows = [index.get(name) for name in self.classnames]
        # The head applies when every current class is one it was trained on.
        head_rows = None if None in rows else torch.tensor(rows, dtype=torch.long, device=self.device)
        object.__setattr__(self, "head_rows", head_rows)

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        new = [p for m in (self.film_image, self.film_text, self.head) for p in m.parameters() if p.requires_grad]
        ids = {id(p) for p in new}
        prompt = [p for p in self.trainable_parameters() if id(p) not in ids]
        return [(prompt, 1.0), (new, self.config.head_lr_scale)]

    def cat_logits(self, image_features: Tensor) -> Tensor:
        """The CAT head's logits over the current classes ``[B, C]`` (head rows reordered)."""
        logits = self.head(self.film_image(image_features).to(self.head.weight.dtype))
        return logits[:, self.head_rows]

    def logits_from_features(self, image_features: Tensor) -> Tensor:
        text = self.class_text_features(image_features)
        itm = self.backbone.logit_scale() * image_features @ text.t().to(image_features.dtype)
        if self.head_rows is None:  # classes the head was not trained on: ITM only
            return itm
        if torch.is_grad_enabled():
            self._last = (image_features, text)  # the loss trains the head on both
        if self.training:
            return itm
        w = self.config.cat_weight
        return (1 - w) * itm + w * self.cat_logits(image_features).to(itm.dtype)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        last, self._last = self._last, None
        if last is None or self.head_rows is None:
            return F.cross_entropy(logits, labels)
        image_features, text = last
        w = self.config.cat_weight
        itm = self.backbone.logit_scale() * image_features @ text.t().to(image_features.dtype)
        # The head's samples: the images, and the text features of their labels.
        samples = torch.cat([self.film_text(text[labels]), self.film_image(image_features)])
        cat = self.head(samples.to(self.head.weight.dtype))[:, self.head_rows]
        return (1 - w) * F.cross_entropy(itm.float(), labels) + w * F.cross_entropy(cat.float(), labels.repeat(2))
