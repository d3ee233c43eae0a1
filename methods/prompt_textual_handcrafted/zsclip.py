"""# Zero-shot CLIP with prompt ensembling

Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision" (ICML 2021). CLIP classifies an image with no training at all: each
class name is written into hand-crafted sentences ("a photo of a {}."), the text
encoder embeds them, and the class whose text embedding is closest (cosine) to the
image embedding wins. The paper's *prompt ensembling* averages the normalised text
embeddings of many templates per class (80 for ImageNet) and re-normalises; CoOp's
`ZeroshotCLIP` trainer uses one dataset-specific template instead.

This is the reference of the `prompt.textual.handcrafted` category: nothing trains,
and image features equal the frozen model's.

What this version simplifies: templates come from the task (each task ships its
own list); the paper's per-dataset template engineering is not reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vlmeft import registry
from vlmeft.method import Method, MethodConfig
from vlmeft.recipes import Source


@dataclass
class Config(MethodConfig):
    """Nothing is trained: zero epochs, and the two recipes are the same. CoOp's
    zero-shot baseline is ``trainers/zsclip.py`` of KaiyangZhou/CoOp (@ ff61507), fp16; the
    templates here come from the task (module notes)."""

    epochs: int = 0

    source: ClassVar[Source] = Source("KaiyangZhou/CoOp", "trainers/zsclip.py", "ff61507", "fp16")
    embedded: ClassVar[dict[str, Any]] = {}


@registry.register(reference_for="prompt.textual.handcrafted")
class ZSCLIP(Method):
    """Logits = ``logit_scale * image_feature @ ensemble_text_weights.T``.

    Everything it needs is in :class:`~vlmeft.method.Method`: ``zero_shot_weights``
    (the template ensemble, cached per label set by the backbone) and the frozen
    image encoder."""

    name = "zsclip"
    category = "prompt.textual.handcrafted"
    Config = Config
    training_free = True
    frozen_image_path = True
