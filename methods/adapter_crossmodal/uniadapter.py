"""# UniAdapter: one adapter per depth, partially shared by the image, text and fusion towers

Lu et al., "UniAdapter: Unified Parameter-Efficient Transfer Learning for Cross-modal
Modeling" (ICLR 2024), on BLIP. Layer ``k`` of the vision encoder, of the text encoder and
of the multimodal decoder share *one* adapter module (``models/adapter.py``):

$$\\mathrm{down} = \\mathrm{ReLU}(W_d\\,\\mathrm{LN}(x)),\\qquad
\\mathrm{up} = s\\cdot\\begin{cases} W_v\\,\\mathrm{down} & \\text{vision}\\\\ W_t\\,\\mathrm{down} & \\text{text}\\\\
\\mathrm{LN}_{mm}(W_m\\,\\mathrm{down} + W_t\\,\\mathrm{down}) & \\text{fusion}\\end{cases}$$

The layer norm and down-projection are shared by all three towers; each tower has its own
up-projection, and the fusion branch reuses the text one ("knowledge sharing"), $s = 0.1$,
bottleneck 512 of 768, $W_d$ Kaiming-initialised and $W_t$ zero. The adapter runs in
parallel with the feed-forward block: its input is the stream after attention and its
output is added to the feed-forward output. In a fusion layer, the text branch reads the
self-attention output ("query residual learning") and the fusion branch the
cross-attention output; both are added to the feed-forward output.

On CoCa: adapter ``k`` serves vision block ``k``, text block ``k`` and decoder layer ``k``,
where it runs beside the MLP of the cross-attention block (BLIP's fusion layer has one
feed-forward block, after its cross-attention): the text branch of the stream before
cross-attention plus the fusion branch of the stream after it. The MLP of the decoder's
self-attention block (which BLIP's layer lacks) gets none. The vision adapters change the image
memory, and the fusion branch reads image-dependent states: cross-modal. Towers of unequal
width cannot share a projection: there (``coca_ViT-B-32``: vision 768, text 512) the vision
tower gets its own layer norm and down-projection.

What this version simplifies: one task per run; BLIP's answer-ranking inference for VQA
becomes greedy generation, as for every method here.

Embedded recipe, chosen on val (`python benchmarks/generative_calibration.py`: 16 examples per
group, seeds 1 and 2, val VQA accuracy and val CIDEr; the frozen captioner scores 38.0 and
148.2): lr 2e-5: VQA 38.2, CIDEr 143.7; lr 1e-3: VQA 39.2, CIDEr 158.4; lr 3e-3: VQA 43.5,
CIDEr 171.8; kept lr 3e-3.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vlmeft import registry
from vlmeft.decoder_adapters import blocks, width
from vlmeft.errors import VlmeftError
from vlmeft.generative import GenerativeConfig, GenerativeMethod
from vlmeft.recipes import Source


@dataclass
class Config(GenerativeConfig):
    """RERV/UniAdapter ``configs/vqa.yaml`` (@ 796c124): adapters in all three towers, bottleneck
    512 (of 768: ``bottleneck_ratio`` 2/3), scale 0.1 (``models/adapter.py``), lr 2e-5, weight
    decay 0.05, 10 epochs, batch 16.

    Embedded recipe: lr 3e-3, 20 epochs, batch 32 (val evidence in the module notes)."""

    bottleneck_ratio: float = 512 / 768
    scale: float = 0.1
    lr: float = 2e-5
    weight_decay: float = 0.05
    epochs: int = 10
    batch_size: int = 16
    select: typing.Literal["last", "val"] = "last"

    source: ClassVar[Source] = Source("RERV/UniAdapter", "configs/vqa.yaml", "796c124", "fp16")
    embedded: ClassVar[dict[str, Any]] = {"lr": 3e-3, "epochs": 20, "batch_size": 32, "min_steps": 40}

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.bottleneck_ratio <= 4.0:
            raise VlmeftError(f"bottleneck_ratio must lie in (0, 4], got {self.bottleneck_ratio}", where="--set")


class UniAdapterLayer(nn.Module):
    """One depth's adapter: shared LN + down-projection, an up-projection per tower. A tower
    with no block at this depth (towers of unequal depth) gets no part here: a part nothing
    calls would be a declared trainable tensor that never trains."""

    def __init__(self, d: int, hidden: int, scale: float, vision_width: int | None, *, text: bool = True,
                 fusion: bool = True) -> None:
        super().__init__()
        own = vision_width is not None and vision_width != d
        shared = text or fusion or not own  # the shared LN + down serve text, fusion (and vision of width d)
        self.ln = nn.LayerNorm(d) if shared else None
        self.down = nn.Linear(d, hidden) if shared else None
        self.up = nn.Linear(hidden, d) if text or fusion else None  # text (zero-initialised: "lora" init)
        self.multi_up = nn.Linear(hidden, d) if fusion else None  # fusion, added to the text one
        self.ln_multi = nn.LayerNorm(d) if fusion else None
        self.scale = scale
        self.vision_ln = nn.LayerNorm(vision_width) if own else None
        self.vision_down = nn.Linear(vision_width, hidden) if own else None
        self.visual_up = nn.Linear(hidden, vision_width or d) if vision_width is not None else None
        if self.down is None:
            return
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.down.bias)
            if self.up is not None:
                nn.init.zeros_(self.up.weight)
                nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor, mode: str) -> Tensor:
        if mode == "visual" and self.vision_down is not None:
            down = torch.relu(self.vision_down(self.vision_ln(x)))
        else:
            down = torch.relu(self.down(self.ln(x)))
        if mode == "visual":
            up = self.visual_up(down)
        elif mode == "text":
            up = self.up(down)
        else:
            up = self.ln_multi(self.multi_up(down) + self.up(down))
        return up * self.scale


@registry.register
class UniAdapter(GenerativeMethod):
    """Partially shared parallel adapters across the vision, text and fusion towers."""

    name = "uniadapter"
    category = "adapter.crossmodal"
    Config = Config
    adapted_towers = ("vision", "text", "cross")
    frozen_image_path = False  # the vision adapters change the image memory

    def __init__(self, backbone, classnames=(), templates=(), config: Config | None = None) -> None:
        super().__init__(backbone, classnames, templates, config)
        cfg = self.config
        d = width(backbone, "text")
        if width(backbone, "decoder") != d:
            raise VlmeftError(f"{backbone.name}'s text tower and decoder differ in width; UniAdapter shares "
                              "their adapters", where="--backbone")
        n = {t: len(blocks(backbone, t)) for t in self.adapted_towers}
        hidden = max(1, round(d * cfg.bottleneck_ratio))
        # adapter k serves depth k of each tower that has one
        self.layers = nn.ModuleList(
            UniAdapterLayer(d, hidden, cfg.scale, width(backbone, "vision") if k < n["vision"] else None,
                            text=k < max(n["text"], n["cross"]), fusion=k < n["cross"])
            for k in range(max(n.values())))
        self.to(backbone.device)
        self._before_cross: Tensor | None = None

    def attn_out(self, tower: str, i: int, x: Tensor, out: Tensor) -> Tensor:
        if tower == "cross":
            self._before_cross = x  # the self-attention block's output: the text branch's input
        return out

    def mlp_out(self, tower: str, i: int, x: Tensor, out: Tensor) -> Tensor:
        layer = self.layers[i]
        if tower == "vision":
            return out + layer(x, "visual")
        if tower == "text":
            return out + layer(x, "text")
        before, self._before_cross = self._before_cross, None
        return out + layer(before, "text") + layer(x, "multimodal")
