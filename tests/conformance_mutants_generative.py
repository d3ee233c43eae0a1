"""Mutant generative methods: each breaks one property of the decoder signatures on purpose.

Test material only (never shipped in ``methods/``, registered only inside a test), as
``conformance_mutants.py`` is for the classifiers. Each subclasses decoder LoRA and changes
one thing; the test probes them on the random tiny CoCa against the category the class
declares and checks that exactly the expected cells turn red.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from vlmeft.backbone.captioner import ImageMemory
from vlmeft.decoder_adapters import width
from vlmeft.methods.adapter_unimodal.lora import Config as LoRAConfig
from vlmeft.methods.adapter_unimodal.lora import DecoderLoRA


@dataclass
class _DecoderConfig(LoRAConfig):
    towers: str = "decoder"  # the multimodal decoder's self-attention: it reads cross-attended states


class UnimodalClaimInTheFusion(DecoderLoRA):
    """Declared unimodal, but its low-rank updates sit in the multimodal decoder, whose
    self-attention (after the first layer) reads image-dependent states: it takes part in fusion."""

    name = "mutant-gen-unimodal-in-fusion"
    category = "adapter.unimodal"
    Config = _DecoderConfig


class CrossmodalClaimInTheTextTower(DecoderLoRA):
    """Declared cross-modal, but its updates act only in the unimodal text decoder, which
    never sees the image: nothing it trains fuses the modalities."""

    name = "mutant-gen-crossmodal-text-only"
    category = "adapter.crossmodal"


class TextSeesTheImage(DecoderLoRA):
    """Declared unimodal, but a trainable projection of the image latent is put before the
    text (one prefix token): the unimodal text states now depend on the image."""

    name = "mutant-gen-text-sees-image"
    category = "adapter.unimodal"

    def __init__(self, backbone, classnames=(), templates=(), config=None) -> None:  # noqa: ANN001
        super().__init__(backbone, classnames, templates, config)
        self.to_prefix = nn.Linear(backbone.embed_dim, width(backbone, "text")).to(backbone.device)

    def prefix_length(self) -> int:
        return 1

    def prefix(self, memory: ImageMemory) -> Tensor:
        return self.to_prefix(memory.latent)[:, None, :]


MUTANTS = (UnimodalClaimInTheFusion, CrossmodalClaimInTheTextTower, TextSeesTheImage)

# Mutant -> {cell: a phrase its reason must contain}.
EXPECTED_RED: dict[str, dict[str, str]] = {
    "mutant-gen-unimodal-in-fusion": {"signature.crossmodal_dependence": "fusion"},
    "mutant-gen-crossmodal-text-only": {"signature.crossmodal_dependence": "no trainable tensor acts in the fusion"},
    "mutant-gen-text-sees-image": {"signature.text_depends_on_image": "other images",
                                   "signature.crossmodal_dependence": "text features depend on the image"},
}
