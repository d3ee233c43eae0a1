"""# MAGMA: a visual prefix and adapters for a frozen language model

Eichenberg et al., "MAGMA – Multimodal Augmentation of Generative Models through
Adapter-based Finetuning" (Findings of EMNLP 2022). A frozen GPT-J becomes a
vision-language model in two ways at once:

- a **visual prefix**: image-encoder features are projected to the language model's
  embedding width, normalised and dropped out, and put *before* the text embeddings,
  $E = [\\mathrm{LN}(W_p f_{img}); E_{text}]$ (``ImagePrefix`` in ``magma/image_prefix.py``:
  one prefix token per encoder token for a sequence encoder, ``image_seq_len`` tokens
  from one linear map for a pooled one);
- **adapters** after the feed-forward block of every layer,
  $h \\leftarrow h + \\mathrm{up}(\\mathrm{ReLU}(\\mathrm{down}(h)))$ with ``downsample_factor`` 4,
  both layers drawn from $\\mathcal{N}(0, 10^{-3})$ clamped to $\\pm 2\\cdot 10^{-3}$
  (``magma/adapters.py``),

all trained end to end with the language-modelling loss on image-caption pairs.

On CoCa the prefix goes before the tokens of the unimodal text decoder (so the text
states depend on the image: cross-modal) and the adapters after the MLP of every block of
both decoders (text tower, decoder self- and cross-attention blocks). The image feature is
CoCa's pooled image latent (``prefix_from = "latent"``, MAGMA's path for pooled encoders)
or its cross-attention tokens (``"tokens"``, one prefix token each, its path for sequence
encoders such as the paper's CLIP RN50x16).

What this version simplifies: the image encoder stays frozen (MAGMA v1 tunes it at lr
2e-6); no gradient clipping; the 150k-step schedule becomes the recipe's epochs.

Embedded recipe, chosen on val (`python benchmarks/generative_calibration.py`: 16 examples per
group, seeds 1 and 2, val VQA accuracy and val CIDEr; the frozen captioner scores 38.0 and
148.2): lr 8e-4: VQA 35.0, CIDEr 156.8; lr 3e-3: VQA 36.0, CIDEr 187.1; lr 1e-2: VQA 38.0,
CIDEr 210.1; kept lr 1e-2.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from vlmeft import registry
from vlmeft.backbone.captioner import ImageMemory
from vlmeft.decoder_adapters import Bottleneck, blocks, width
from vlmeft.errors import VlmeftError
from vlmeft.generative import GenerativeConfig, GenerativeMethod
from vlmeft.recipes import Source


@dataclass
class Config(GenerativeConfig):
    """Aleph-Alpha/magma ``configs/MAGMA_v1.yml`` (@ 281e070): MLP adapters with downsample factor
    4, image-embedding layer norm and dropout 0.1, lr 8e-4, batch 256 (weight decay 0, the
    default of ``magma/config.py``, which also gives ``image_seq_len`` 2 for pooled encoders).

    Embedded recipe: 4 prefix tokens, lr 1e-2, 20 epochs, batch 32 (val evidence in the module notes)."""

    prefix_from: typing.Literal["latent", "tokens"] = "latent"
    prefix_length: int = 2  # prefix tokens made from the pooled latent ("latent" only)
    downsample_factor: int = 4
    prefix_dropout: float = 0.1
    lr: float = 8e-4
    batch_size: int = 256
    epochs: int = 20
    select: typing.Literal["last", "val"] = "last"

    source: ClassVar[Source] = Source("Aleph-Alpha/magma", "configs/MAGMA_v1.yml", "281e070", "fp16")
    embedded: ClassVar[dict[str, Any]] = {"prefix_length": 4, "lr": 1e-2, "batch_size": 32, "min_steps": 40}

    def validate(self) -> None:
        super().validate()
        if self.prefix_length < 1 or self.downsample_factor < 1:
            raise VlmeftError("prefix_length and downsample_factor must be >= 1", where="--set")
        if not 0.0 <= self.prefix_dropout < 1.0:
            raise VlmeftError(f"prefix_dropout must lie in [0, 1), got {self.prefix_dropout}", where="--set")


@registry.register
class MAGMA(GenerativeMethod):
    """A projected image prefix before the text, and sequential MLP adapters in both decoders."""

    name = "magma"
    category = "adapter.crossmodal"
    Config = Config
    adapted_towers = ("text", "decoder", "cross")

    def __init__(self, backbone, classnames=(), templates=(), config: Config | None = None) -> None:
        super().__init__(backbone, classnames, templates, config)
        cfg = self.config
        d = width(backbone, "text")
        self.n_prefix = cfg.prefix_length if cfg.prefix_from == "latent" else self._image_tokens(backbone)
        out = d * cfg.prefix_length if cfg.prefix_from == "latent" else d
        self.proj = nn.Linear(backbone.embed_dim, out)
        self.ln = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.prefix_dropout)
        self.adapters = nn.ModuleDict()
        for tower in self.adapted_towers:
            dt = width(backbone, tower)
            for i in range(len(blocks(backbone, tower))):
                self.adapters[f"{tower}_{i}"] = Bottleneck(dt, max(1, dt // cfg.downsample_factor), "relu",
                                                           init_std=1e-3)
        self.to(backbone.device)

    @staticmethod
    def _image_tokens(backbone) -> int:  # noqa: ANN001
        return int(backbone.model.visual.attn_pool.query.shape[0]) - 1 if getattr(
            backbone.model.visual, "attn_pool", None) is not None else backbone.num_patches

    def prefix_length(self) -> int:
        return self.n_prefix

    def prefix(self, memory: ImageMemory) -> Tensor:
        d = width(self.backbone, "text")
        if self.config.prefix_from == "latent":
            x = self.proj(memory.latent).view(len(memory.latent), self.config.prefix_length, d)
        else:
            x = self.proj(memory.tokens)
        return self.dropout(self.ln(x))

    def mlp_out(self, tower: str, i: int, x: Tensor, out: Tensor) -> Tensor:
        return out + self.adapters[f"{tower}_{i}"](out)
