"""# VL-Adapter: one set of adapters, shared by every task, in a frozen generative VL model

Sung, Cho and Bansal, "VL-Adapter: Parameter-Efficient Transfer Learning for
Vision-and-Language Tasks" (CVPR 2022). A frozen VL-BART / VL-T5 (a language model that
reads CLIP image features) gets Houlsby-style adapters in every layer of its encoder and
decoder: after the self-attention, the cross-attention and the feed-forward sublayers,

$$h \\leftarrow h + \\mathrm{up}\\big(\\mathrm{GELU}(\\mathrm{down}(h))\\big), \\qquad \\mathrm{down}: d \\to d/r,$$

applied to each sublayer's output before its residual connection. The paper's best
setting is *single adapter*: one set of adapters shared by all tasks (VQA, GQA, NLVR2,
captioning trained together, each input prefixed with its task name), with the layer
norms of the language model also trained ($r = 8$: about 4% of VL-BART's parameters).

On CoCa the language model is the unimodal text decoder plus the multimodal decoder, so
adapters go after the self-attention and MLP of every text-tower block, and after the
self-attention, the cross-attention and both MLPs of every decoder layer; the layer norms
of both decoders train. The decoder's adapters act on fused, image-dependent states:
a cross-modal adapter. One set of adapters serves captioning and VQA (the same
parameters, whatever the task: ``tasks = ("vqa", "captioning")``).

What this version simplifies: the image tower and its attentional pooler stay frozen
(VL-BART trains a new visual projection; CoCa's pooler is that projection, pretrained);
training is on one task per run (the paper trains four together); cosine instead of a
linear schedule after the warm-up; no gradient clipping.

Embedded recipe, chosen on val (`python benchmarks/generative_calibration.py`: 16 examples per
group, seeds 1 and 2, val VQA accuracy and val CIDEr; the frozen captioner scores 38.0 and
148.2): lr 3e-4: VQA 38.8, CIDEr 137.6; lr 1e-3: VQA 42.0, CIDEr 217.5; lr 3e-3: VQA 41.0,
CIDEr 208.2; kept lr 1e-3.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from vlmeft import registry
from vlmeft.decoder_adapters import Bottleneck, TunedNorms, blocks, width
from vlmeft.errors import VlmeftError
from vlmeft.generative import GenerativeConfig, GenerativeMethod
from vlmeft.recipes import Source


@dataclass
class Config(GenerativeConfig):
    """The single-adapter recipe of ylsung/VL_adapter ``VL-T5/scripts/image/single_adapter.sh``
    (@ 545fcbb): reduction factor 8, layer norms unfrozen, AdamW lr 1e-3, 20 epochs, batch 500
    (VL-BART), warm-up 10% of the steps; adapter activation gelu_new, no adapter layer norm
    (``VL-T5/src/adapters/config.py``), adapters also after the cross-attention
    (``--add_adapter_cross_attn`` defaults to true).

    Embedded recipe: batch 32 and at least 40 steps (val evidence in the module notes)."""

    reduction_factor: int = 8
    activation: typing.Literal["gelu_new", "relu", "swish"] = "gelu_new"
    cross_attention_adapters: bool = True
    tune_norms: bool = True
    lr: float = 1e-3
    epochs: int = 20
    batch_size: int = 500
    select: typing.Literal["last", "val"] = "last"

    source: ClassVar[Source] = Source("ylsung/VL_adapter", "VL-T5/scripts/image/single_adapter.sh", "545fcbb",
                                      "fp16")
    embedded: ClassVar[dict[str, Any]] = {"batch_size": 32, "min_steps": 40}

    def validate(self) -> None:
        super().validate()
        if self.reduction_factor < 1:
            raise VlmeftError(f"reduction_factor must be >= 1, got {self.reduction_factor}", where="--set")


@registry.register
class VLAdapter(GenerativeMethod):
    """Shared bottleneck adapters after every sublayer of both decoders, plus their norms."""

    name = "vl-adapter"
    category = "adapter.crossmodal"
    Config = Config
    adapted_towers = ("text", "decoder", "cross")

    def __init__(self, backbone, classnames=(), templates=(), config: Config | None = None) -> None:
        super().__init__(backbone, classnames, templates, config)
        cfg = self.config
        self.adapters = nn.ModuleDict()
        for tower in self.adapted_towers:
            d = width(backbone, tower)
            hidden = max(1, d // cfg.reduction_factor)
            for i in range(len(blocks(backbone, tower))):
                if tower != "cross" or cfg.cross_attention_adapters:
                    self.adapters[f"{tower}_{i}_attn"] = Bottleneck(d, hidden, cfg.activation)
                self.adapters[f"{tower}_{i}_mlp"] = Bottleneck(d, hidden, cfg.activation)
        self.norms = TunedNorms(backbone, self.adapted_towers, final=True) if cfg.tune_norms else None
        self.to(backbone.device)

    def attn_out(self, tower: str, i: int, x: Tensor, out: Tensor) -> Tensor:
        key = f"{tower}_{i}_attn"
        return out + self.adapters[key](out) if key in self.adapters else out

    def mlp_out(self, tower: str, i: int, x: Tensor, out: Tensor) -> Tensor:
        return out + self.adapters[f"{tower}_{i}_mlp"](out)

    def norm(self, tower: str, i: int, which: str, ln: nn.Module, x: Tensor) -> Tensor:
        return self.norms.run(tower, i, which, ln, x) if self.norms is not None else ln(x)
