"""# Zero-shot CoCa: the frozen captioner

Yu et al., "CoCa: Contrastive Captioners are Image-Text Foundation Models" (TMLR 2022).
CoCa is a CLIP whose text side continues into a multimodal decoder: a causal
*unimodal* text decoder (its class token gives the contrastive text latent), then a
*multimodal* decoder whose every layer cross-attends to the image tokens of an
attentional pooler. Trained with a contrastive loss plus a captioning loss
($\\mathcal{L} = \\lambda_{con}\\mathcal{L}_{con} + \\lambda_{cap}\\mathcal{L}_{cap}$,
$\\lambda_{cap} = 2$), it writes captions zero-shot and, as a generative model, answers
questions written before the answer.

This is the zero-shot reference of the generative tasks: nothing trains, the captioner
decodes greedily (open_clip's ``generate`` defaults to beam search: simplified), and
VQA answers are the continuation of the question (``"what color is the star?" -> "red"``),
as synthcoca-tiny was pretrained to answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vlmeft import registry
from vlmeft.generative import GenerativeConfig, GenerativeMethod
from vlmeft.recipes import Source


@dataclass
class Config(GenerativeConfig):
    """Nothing trains: zero epochs, and the two recipes are the same. open_clip's
    ``CoCa.generate`` (mlfoundations/open_clip ``src/open_clip/coca_model.py``) is the
    official decoding; this one is greedy (module notes)."""

    epochs: int = 0

    source: ClassVar[Source] = Source("mlfoundations/open_clip", "src/open_clip/coca_model.py", "", "amp")
    embedded: ClassVar[dict[str, Any]] = {}


@registry.register
class CoCaZeroShot(GenerativeMethod):
    """The frozen captioner: no hooks, no trainable tensors."""

    name = "coca"
    category = "baseline"
    Config = Config
    training_free = True

    def adapts(self, tower: str, i: int) -> bool:
        return False

    @property
    def hooks(self):  # noqa: ANN201
        from vlmeft.backbone.captioner import NO_HOOKS

        return NO_HOOKS
