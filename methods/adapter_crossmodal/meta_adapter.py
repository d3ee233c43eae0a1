r"""
# Meta-Adapter: an online few-shot learner

*Cheng, Song, Xue, Wang, Sun, Ge and Shan, "Meta-Adapter: An Online Few-shot Learner for
Vision-Language Model", NeurIPS 2023 (arXiv 2311.03774).*

Meta-Adapter refines each class's text embedding with that class's few-shot image
features through a gated cross-attention: the class embedding $t_c$ is the query, and
the keys and values are $t_c$ itself followed by the $K$ support features
$s_{c,1..K}$ of class $c$ (normalised frozen image features):

$$a_c = \mathrm{softmax}\Big(\frac{(W_q t_c)\,(W_k [t_c; s_c])^\top}{\sqrt{E}}\Big)\,[t_c; s_c],
\qquad t'_c = \frac{t_c + \sigma(w_g^\top t_c + b_g)\, a_c}{\lVert\cdot\rVert},$$

with single-head projections $W_q, W_k \in \mathbb{R}^{E\times E}$ (no value projection,
no biases) and a scalar gate per class ($w_g, b_g$; $b_g$ starts at 1). Logits are
$100\, f\, t'^\top$. The module is meta-trained once (on base classes); on new classes it
is used *online*: their support features go through the same trained attention, with no
fine-tuning. A class without support features attends only to itself, so its embedding
stays the zero-shot one.

The refined class embedding is a function of image features (the support set): the
adapter fuses the two modalities (category `adapter.crossmodal`). The test image
itself only meets the refined embeddings in the final cosine.

## What this version changes
* Support features are the un-augmented training features handed to ``fit_cache``
  (the release averages 10 augmented views of a separate few-shot set, and replaces a
  class's support features by the newest training features of that class, first in
  first out, after every step; here the training set *is* the support set, so the queue
  would cycle through the same features).
* Classes may hold different numbers of support features (padding is masked out of
  the attention); the release needs the same number for every class.
* The release keeps its best epoch by test accuracy; the paper recipe here keeps the
  last epoch.
* Our base-to-novel protocol gives no support images for the novel classes, so there
  Meta-Adapter equals zero-shot CLIP; give new classes support features with
  ``fit_cache`` to use it online.

## Fidelity
Compared with the release's ``MetaAdapter`` module (``main.py`` of
ArsenalCheng/Meta-Adapter @ dc1d9c0) with the same projection and gate weights, on the
synthclip-tiny features of digits (4 shots, seed 1, a class-major support set): the
refined class embeddings agree to 4.5e-8, the logits to 1.9e-5 (up to 84), the loss to
1e-6 and every parameter's gradient to 3e-8.

## The embedded recipe
lr 1e-2, 50 epochs and the backbone's own logit scale (``zs_scale`` 20; synthclip-tiny
learned about 20.5), chosen on val (digits, 4 shots, mean over seeds 1-3; zero-shot
0.633): the paper's lr 1e-4 x 5 epochs gave 0.692 (40 images at batch 64 are one step an
epoch, 5 steps in all); 50 epochs at lr 1e-3 / 1e-2 / 1e-1 gave 0.700 / 0.708 / 0.708;
200 epochs at 1e-2 0.717; 50 epochs at 1e-2 with ``zs_scale`` 20 0.717 (kept: as good,
4x cheaper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft import registry
from vlmeft.adapters_common import SupportSetMixin
from vlmeft.method import Method, MethodConfig, Schedule, Select
from vlmeft.recipes import Source


@dataclass
class Config(MethodConfig):
    """``run_meta_adapter`` in ``main.py`` of ArsenalCheng/Meta-Adapter (@ dc1d9c0) with
    ``configs/imagenet.yaml`` (every dataset's config has the same values): AdamW lr 1e-4,
    eps 1e-4 (weight decay: AdamW's default 0.01), batch 64, 5 epochs, a per-iteration
    cosine with no warm-up, random resized crop (scale 0.5-1) + flip, logits at a fixed
    scale 100. The release keeps its best epoch by *test* accuracy; the paper recipe here
    keeps the last. fp16 (the adapter takes CLIP's dtype).

    Embedded recipe: lr 1e-2 for 50 epochs at the backbone's logit scale (val evidence in
    the module notes)."""

    zs_scale: float = 100.0  # fixed logit scale of the release
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-4
    optimizer: Literal["sgd", "adamw", "adam"] = "adamw"
    weight_decay: float = 1e-2  # AdamW's default, which the release keeps
    adam_eps: float = 1e-4
    warmup_epochs: int = 0
    schedule: Schedule = "cosine-steps"
    crop_scale: float = 0.5
    select: Select = "last"

    source: ClassVar[Source] = Source("ArsenalCheng/Meta-Adapter", "main.py", "dc1d9c0", "fp16",
                                      "with configs/imagenet.yaml (lr, train_epoch)")
    embedded: ClassVar[dict[str, Any]] = {"lr": 1e-2, "epochs": 50, "zs_scale": 20.0}


@registry.register
class MetaAdapter(SupportSetMixin, Method):
    """Class text embeddings attend to their few-shot image features."""

    name = "meta-adapter"
    category = "adapter.crossmodal"
    Config = Config
    frozen_image_path = True

    def __init__(self, backbone, classnames, templates, config: Config | None = None) -> None:
        super().__init__(backbone, classnames, templates, config)
        self.init_support()
        dim = backbone.embed_dim
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.gate = nn.Linear(dim, 1, bias=True)
        for layer in (self.q_proj, self.k_proj, self.gate):
            nn.init.xavier_uniform_(layer.weight)
        nn.init.constant_(self.gate.bias, 1.0)
        self.to(device=backbone.device, dtype=backbone.dtype)
        self.build_class_state()

    def build_class_state(self) -> None:
        """Support features grouped per class of the current label set: ``[C, K, E]`` with
        a mask ``[C, K]`` (K = the largest class's count)."""
        index = self.support_index()
        keep = (index >= 0).nonzero().squeeze(1)
        num = len(self.classnames)
        counts = torch.bincount(index[keep], minlength=num) if keep.numel() else torch.zeros(num, dtype=torch.long)
        k = int(counts.max()) if counts.numel() else 0
        grouped = self.cache_keys.new_zeros(num, k, self.backbone.embed_dim)
        mask = torch.zeros(num, k, dtype=torch.bool, device=self.cache_keys.device)
        slot = torch.zeros(num, dtype=torch.long)
        for i in keep.tolist():  # in cache order, as the release's reshape of a class-major cache
            c = int(index[i])
            grouped[c, slot[c]] = self.cache_keys[i].detach()
            mask[c, slot[c]] = True
            slot[c] += 1
        self.register_buffer("support", grouped, persistent=False)
        self.register_buffer("support_mask", mask, persistent=False)

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        text = self.zero_shot_weights()  # [C, E]
        keys = torch.cat([text.unsqueeze(1), self.support], dim=1)  # [C, 1 + K, E]: the query comes first
        own = torch.ones(len(text), 1, dtype=torch.bool, device=text.device)  # a class always sees itself
        mask = torch.cat([own, self.support_mask], dim=1)
        scores = (self.q_proj(text).unsqueeze(1) @ self.k_proj(keys).transpose(1, 2)).squeeze(1)  # [C, 1 + K]
        scores = scores / math.sqrt(text.shape[-1])
        attn = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        attended = (attn.unsqueeze(1) @ keys).squeeze(1)  # values are the raw features
        return F.normalize(text + torch.sigmoid(self.gate(text)) * attended, dim=-1)

    def logits_from_features(self, image_features: Tensor) -> Tensor:
        return self.config.zs_scale * image_features @ self.class_text_features(image_features).t()
