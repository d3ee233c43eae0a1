"""# CoPrompt: Consistency-guided Prompt Learning

*Roy, Etemad. "Consistency-guided Prompt Learning for Vision-Language Models", ICLR 2024
(arXiv 2306.01195).*

CoPrompt combines MaPLe's coupled prompts (:mod:`.maple`: deep text prompts, vision
prompts generated from them by linear maps) with a residual adapter on each tower's
output feature, and keeps the trainable model close to the frozen one on *perturbed*
inputs:

$$\\tilde f = m_v A_v(f) + (1 - m_v) f, \\qquad \\tilde g = m_t A_t(g) + (1 - m_t) g,
\\qquad A(x) = \\mathrm{ReLU}(W_2\\,\\mathrm{ReLU}(W_1 x)),$$

with $W_1: E \\to E/4$, $W_2: E/4 \\to E$ (no biases), $m_v = 0.1$, $m_t = 0.2$, and

$$\\mathcal{L} = \\mathrm{CE}(\\tau \\hat{\\tilde f} \\cdot \\hat{\\tilde g})
+ \\lambda\\Big[\\big(1 - \\overline{\\cos}(\\tilde g_c, g^{0}_{c,j})\\big)
+ \\big(1 - \\overline{\\cos}(\\tilde f(x), f^{0}(x'))\\big)\\Big].$$

The text side's perturbation is a *description* of the class: $g^0_{c,j}$ is the frozen
encoder's feature of description $j$ of class $c$ (an LLM wrote them in the paper; one
$j$ drawn per step, the same for every class, as the official code draws it). The image
side's is a second augmented view $x'$ of the image, encoded by the frozen model.
$\\lambda$ is ``TRAINER.W`` (1.0 in the released config; per-dataset values in its
``trainers/constants.py``).

The text and image prompts are MaPLe's, so the image feature has a non-zero gradient
with respect to the text prompts: the *coupled* leaf (the record also files it under
``adapter.unimodal`` for the adapters). Parameters on ViT-B/16 (depth 9, 2 tokens):
MaPLe's 3,555,072 plus two 512 -> 128 -> 512 adapters, 262,144: 3,817,216.

## What this version changes
* **Descriptions.** ``descriptions`` names a JSON file in CuPL's format (class name ->
  list of sentences), as the official ``gpt_file/*.json``; nothing calls a language model.
  Without one (the default), the class's descriptions are the task's own templates filled
  with its name: on the embedded world, other hand-written phrasings of the class. A class
  with fewer sentences than the draw's index uses the index modulo its count (the official
  code needs equal counts).
* **The second view.** The official loader draws two RandAugment views of each image.
  Here $x'$ is a random resized crop + flip of the batch the engine hands over
  (:func:`vlmeft.data.augment.second_view`); with the paper recipe's augmentation on, that
  is a view of an already augmented image, and the first view is Dassl's crop + flip, not
  RandAugment.
* The adapters act on normalised features. ``A`` is positively homogeneous (linear maps
  without bias and ReLU), so $\\tilde f$ is a positive multiple of the official value and
  the normalised features are identical.
* MaPLe's differences (widths from the backbone, depth clipped to the shorter tower, no fp16).

Fidelity: simplified (the list above; no comparison with the official code on shared
weights has been run).

## The embedded recipe (``Config.embedded``)
At least 300 steps. Val evidence (``vlmeft`` 4-shot digits, val accuracy of the kept state,
mean over seeds 1-3; zero-shot CLIP 0.633): this recipe 0.750; without the step floor (8
epochs) 0.708, consistency weight 0.1 0.733, 4 0.708.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft import registry
from vlmeft.backbone.wrapper import Backbone
from vlmeft.data.augment import second_view
from vlmeft.errors import VlmeftError
from vlmeft.recipes import Source

from .maple import Config as MaPLeConfig
from .maple import MaPLe

MAX_DESCRIPTIONS_BYTES = 32 * 1024 * 1024


@dataclass
class Config(MaPLeConfig):
    """CoPrompt's recipe, ``configs/trainers/coprompt.yaml`` of ShuvenduRoy/CoPrompt (@ a2a6c12),
    run by ``scripts/base2new_train_coprompt.sh`` on Dassl's defaults: MaPLe's prompts (2
    tokens from "a photo of a", depth 9), adapters with reduction 4 and ratios 0.1 (image)
    / 0.2 (text), consistency weight W 1.0 (cosine distance), SGD lr 0.0035 (momentum 0.9,
    weight decay 5e-4), batch 4, 8 epochs, one constant warm-up epoch at 1e-5 then Dassl's
    cosine, two RandAugment views per image, fp16, the last epoch evaluated (the README
    tests epoch 8). ``trainers/constants.py`` overrides depth, tokens and W per dataset
    (ImageNet: depth 12, 4 tokens, W 8).

    Embedded recipe: see ``embedded`` below (val evidence in the module notes)."""

    epochs: int = 8
    batch_size: int = 4
    lr: float = 0.0035
    consistency_weight: float = 1.0  # lambda (TRAINER.W)
    image_adapter_ratio: float = 0.1
    text_adapter_ratio: float = 0.2
    adapter_reduction: int = 4
    descriptions: str = ""  # a JSON file {class name: [sentences]}; "" = the task's templates

    source: ClassVar[Source] = Source("ShuvenduRoy/CoPrompt", "configs/trainers/coprompt.yaml", "a2a6c12", "fp16")
    # Val evidence: the module docstring's embedded-recipe section.
    embedded: ClassVar[dict[str, Any]] = {"min_steps": 300}

    def validate(self) -> None:
        super().validate()
        if self.consistency_weight < 0:
            raise VlmeftError(f"consistency_weight must be non-negative, got {self.consistency_weight}", where="--set")
        for name in ("image_adapter_ratio", "text_adapter_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise VlmeftError(f"{name} must lie in [0, 1], got {getattr(self, name)}", where="--set")
        if self.adapter_reduction < 1:
            raise VlmeftError(f"adapter_reduction must be at least 1, got {self.adapter_reduction}", where="--set")


def _adapter(width: int, reduction: int) -> nn.Sequential:
    """CoPrompt's (and CLIP-Adapter's) bottleneck: Linear, ReLU, Linear, ReLU, no biases."""
    hidden = max(width // reduction, 1)
    return nn.Sequential(nn.Linear(width, hidden, bias=False), nn.ReLU(),
                         nn.Linear(hidden, width, bias=False), nn.ReLU())


def load_descriptions(path: str, classnames: Sequence[str]) -> list[list[str]]:
    """Per class, its sentences from a CuPL-format JSON file (class name -> list of strings);
    class names match with underscores read as spaces. One-line errors name the file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise VlmeftError("descriptions file not found", where=str(file))
    if file.stat().st_size > MAX_DESCRIPTIONS_BYTES:
        raise VlmeftError(f"descriptions file is larger than {MAX_DESCRIPTIONS_BYTES} bytes", where=str(file))
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VlmeftError(f"not a JSON file of descriptions: {err}", where=str(file)) from None
    if not isinstance(data, dict):
        raise VlmeftError("expected a JSON object mapping class names to lists of sentences", where=str(file))
    table = {str(k).replace("_", " ").strip().lower(): v for k, v in data.items()}
    out = []
    for name in classnames:
        sentences = table.get(name.replace("_", " ").strip().lower())
        if not isinstance(sentences, list) or not sentences or not all(isinstance(s, str) and s for s in sentences):
            raise VlmeftError(f"no list of sentences for class {name!r}", where=str(file))
        out.append(sentences)
    return out


@registry.register
class CoPrompt(MaPLe):
    """MaPLe's coupled prompts, an adapter on each tower, and consistency with the frozen
    model on descriptions and a second image view."""

    name = "coprompt"
    category = "prompt.multimodal.coupled"
    Config = Config
    requires_vision_tokens = True
    frozen_image_path = False

    descriptions: Tensor

    def __init__(
        self, backbone: Backbone, classnames: Sequence[str], templates: Sequence[str], config: Config | None = None
    ) -> None:
        super().__init__(backbone, classnames, templates, config)
        width, reduction = backbone.embed_dim, self.config.adapter_reduction
        self.image_adapter = _adapter(width, reduction).to(backbone.device)
        self.text_adapter = _adapter(width, reduction).to(backbone.device)
        self._saved: tuple[Tensor, Tensor, Tensor] | None = None  # this training step's tensors, for `loss`

    def build_class_state(self) -> None:
        super().build_class_state()
        self.register_buffer("descriptions", self._description_features(), persistent=False)

    @torch.no_grad()
    def _description_features(self) -> Tensor:
        """``[J, C, E]``: the frozen encoder's normalised features of description ``j`` of
        class ``c`` (index modulo the class's count)."""
        bb, names = self.backbone, [c.replace("_", " ") for c in self.classnames]
        if self.config.descriptions:
            per_class = load_descriptions(self.config.descriptions, self.classnames)
        else:
            if not self.templates:
                raise VlmeftError("CoPrompt needs descriptions or at least one template for its text consistency")
            per_class = [[t.format(c) for t in self.templates] for c in names]
        depth = max(len(s) for s in per_class)
        rows = [bb.encode_text(bb.tokenize([s[j % len(s)] for s in per_class]), normalize=True) for j in range(depth)]
        return torch.stack(rows)

    @staticmethod
    def _adapt(adapter: nn.Module, feats: Tensor, ratio: float) -> Tensor:
        return F.normalize(ratio * adapter(feats) + (1.0 - ratio) * feats, dim=-1)

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        return self._adapt(self.text_adapter, super().text_features(image_features), self.config.text_adapter_ratio)

    def image_features(self, images: Tensor) -> Tensor:
        return self._adapt(self.image_adapter, super().image_features(images), self.config.image_adapter_ratio)

    def forward(self, images: Tensor) -> Tensor:
        feats = self.image_features(images)
        text = self.class_text_features(feats)
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():  # the frozen model on the perturbed view
                generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
                frozen = self.backbone.encode_image(second_view(images, generator, self.config.crop_scale),
                                                    normalize=True)
            self._saved = (feats, text, frozen)
        return self.backbone.logit_scale() * feats @ text.t()

    def consistency(self, feats: Tensor, text: Tensor, frozen: Tensor) -> Tensor:
        """(1 - mean cos) to one drawn description per class + (1 - mean cos) to the frozen
        features of the second view."""
        j = int(torch.randint(0, self.descriptions.shape[0], (1,)))
        described = self.descriptions[j].to(text.dtype)
        return (1 - F.cosine_similarity(text, described, dim=-1, eps=1e-7).mean()) + \
               (1 - F.cosine_similarity(feats, frozen.to(feats.dtype), dim=-1, eps=1e-7).mean())

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """CE + lambda x consistency of this step's training forward pass (logits from an
        eval-mode or no-grad forward carry no consistency term)."""
        ce = F.cross_entropy(logits, labels)
        saved, self._saved = self._saved, None
        if saved is None:
            return ce
        return ce + self.config.consistency_weight * self.consistency(*saved)
