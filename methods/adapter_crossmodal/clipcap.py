"""# ClipCap: a mapping network from the image embedding to a language-model prefix

Mokady, Hertz and Bermano, "ClipCap: CLIP Prefix for Image Captioning" (arXiv 2021).
Two frozen models are bridged by one trained network. CLIP's image embedding $e$ is
mapped to $K$ embeddings that are put before the caption's token embeddings in GPT-2,
which then writes the caption:

$$[p_1, \\dots, p_K] = F(e), \\qquad E = [p_1, \\dots, p_K;\\ E_{text}].$$

The paper has two mappers $F$ (``MLP`` and ``TransformerMapper`` in the official
``train.py``):

- **transformer** (the language model stays frozen, ``--only_prefix``): a linear map turns
  $e$ into $C$ tokens, $K$ learnt constants are appended, and a pre-norm transformer
  (8 layers, 8 heads, ReLU MLP of twice the width, no dropout) runs over all $C + K$;
  the outputs at the constants' positions are the prefix. Official: $K = C = 10$ by
  default, 40 in the README's COCO command;
- **mlp**: $\\mathrm{Linear}(\\mathrm{tanh}(\\mathrm{Linear}(e)))$ reshaped to $K$ tokens,
  with a hidden width of $K d / 2$. The paper fine-tunes GPT-2 along with it.

Only the mapper is trained, with the teacher-forced language-modelling loss on
image-caption pairs (AdamW, lr 2e-5, 5,000 linear warm-up steps, batch 40, 10 epochs).

On CoCa the "language model" is the captioner's unimodal text tower and multimodal
decoder, and $e$ is CoCa's pooled image latent (its contrastive embedding, as CLIP's is in
the paper). The prefix goes before the text tower's tokens, so the text states depend on
the image (cross-modal). Unlike GPT-2, CoCa's decoder also cross-attends to the image
tokens, so the frozen model already captions and ClipCap's prefix adds to that.

What this version simplifies:

- the decoder stays frozen with the MLP mapper too (the paper fine-tunes GPT-2 with it);
- the mapper's layers are torch's ``nn.TransformerEncoderLayer`` (pre-norm, ReLU, no
  dropout), whose attention projections carry biases (the official queries, keys and values
  have none);
- the warm-up and linear decay become the engine's schedule; ``normalize_prefix`` is the
  official option of dividing $e$ by its norm (off by default, as there).

Embedded recipe, chosen on val (`python benchmarks/generative_calibration.py`: 16 examples per
group, seeds 1 and 2, val VQA accuracy and val CIDEr; the frozen captioner scores 38.0 and
148.2): lr 2e-5: VQA 35.0, CIDEr 118.1; lr 3e-4: VQA 37.0, CIDEr 150.6; lr 1e-3: VQA
39.5, CIDEr 159.6; lr 3e-3: VQA 38.8, CIDEr 156.8; kept lr 1e-3. The paper's lr leaves the
randomly initialised prefix disturbing the frozen decoder after the embedded budget.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vlmeft import registry
from vlmeft.backbone.captioner import ImageMemory
from vlmeft.decoder_adapters import width
from vlmeft.errors import VlmeftError
from vlmeft.generative import GenerativeConfig, GenerativeMethod
from vlmeft.recipes import Source


@dataclass
class Config(GenerativeConfig):
    """rmokady/CLIP_prefix_caption ``train.py`` (@ 1ad805a) with ``--only_prefix --mapping_type
    transformer`` (the frozen-GPT-2 variant): its defaults are prefix and CLIP lengths 10, 8 layers,
    AdamW lr 2e-5, batch 40, 10 epochs (fp32; its 5,000 warm-up steps: here the engine's schedule).
    The README's COCO command raises both lengths to 40: ``--set prefix_length=40 --set
    clip_length=40``.

    Embedded recipe: 4 prefix and 4 image tokens (synthcoca-tiny's context holds 32),
    lr 1e-3, 20 epochs, batch 32 (val evidence in the module notes)."""

    mapping: typing.Literal["transformer", "mlp"] = "transformer"
    prefix_length: int = 10  # K: prefix tokens the decoder sees
    clip_length: int = 10  # C: tokens the image embedding is mapped to (transformer mapper)
    num_layers: int = 8
    heads: int = 8
    normalize_prefix: bool = False
    lr: float = 2e-5
    batch_size: int = 40
    epochs: int = 10
    select: typing.Literal["last", "val"] = "last"

    source: ClassVar[Source] = Source("rmokady/CLIP_prefix_caption", "train.py", "1ad805a", "fp32")
    embedded: ClassVar[dict[str, Any]] = {"prefix_length": 4, "clip_length": 4, "lr": 1e-3, "epochs": 20,
                                          "batch_size": 32, "min_steps": 40}

    def validate(self) -> None:
        super().validate()
        if min(self.prefix_length, self.clip_length, self.num_layers, self.heads) < 1:
            raise VlmeftError("prefix_length, clip_length, num_layers and heads must be >= 1", where="--set")


class TransformerMapper(nn.Module):
    """``C`` image tokens from one linear map, ``K`` learnt constants after them, a
    transformer over both; the constants' outputs are the prefix."""

    def __init__(self, dim_in: int, d: int, prefix_length: int, clip_length: int, layers: int, heads: int) -> None:
        super().__init__()
        if d % heads:
            raise VlmeftError(f"the text width {d} is not divisible by heads={heads}", where="--set heads")
        self.clip_length = clip_length
        self.linear = nn.Linear(dim_in, clip_length * d)
        self.constants = nn.Parameter(torch.randn(prefix_length, d))
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=2 * d, dropout=0.0, activation="relu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, e: Tensor) -> Tensor:
        image = self.linear(e).view(len(e), self.clip_length, -1)
        x = torch.cat([image, self.constants.expand(len(e), -1, -1)], dim=1)
        return self.transformer(x)[:, self.clip_length:]


class MLPMapper(nn.Module):
    """``Linear -> tanh -> Linear`` to ``K * d``, hidden width ``K * d / 2``."""

    def __init__(self, dim_in: int, d: int, prefix_length: int) -> None:
        super().__init__()
        self.prefix_length = prefix_length
        self.net = nn.Sequential(nn.Linear(dim_in, d * prefix_length // 2), nn.Tanh(),
                                 nn.Linear(d * prefix_length // 2, d * prefix_length))

    def forward(self, e: Tensor) -> Tensor:
        return self.net(e).view(len(e), self.prefix_length, -1)


@registry.register
class ClipCap(GenerativeMethod):
    """A trained mapper turns the pooled image embedding into a prefix for the frozen decoder."""

    name = "clipcap"
    category = "adapter.crossmodal"
    Config = Config

    def __init__(self, backbone, classnames=(), templates=(), config: Config | None = None) -> None:
        super().__init__(backbone, classnames, templates, config)
        cfg = self.config
        d = width(backbone, "text")
        if cfg.mapping == "transformer":
            self.mapper: nn.Module = TransformerMapper(backbone.embed_dim, d, cfg.prefix_length, cfg.clip_length,
                                                       cfg.num_layers, cfg.heads)
        else:
            self.mapper = MLPMapper(backbone.embed_dim, d, cfg.prefix_length)
        self.to(backbone.device)

    def prefix_length(self) -> int:
        return self.config.prefix_length

    def prefix(self, memory: ImageMemory) -> Tensor:
        e = memory.latent
        if self.config.normalize_prefix:
            e = e / e.norm(dim=-1, keepdim=True)
        return self.mapper(e)
