"""# LoRA on the captioner's language model (decoder LoRA baseline)

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (ICLR 2022). A frozen
weight matrix $W$ gets a trainable low-rank update,

$$h = W x + \\frac{\\alpha}{r} B A x, \\qquad A \\in \\mathbb{R}^{r\\times d},\\ B \\in \\mathbb{R}^{d\\times r},\\ B_0 = 0,$$

so training starts at the frozen model and the update merges into $W$ afterwards. The
paper adapts the query and value projections of every attention layer of GPT-2/GPT-3
(its GPT-2 recipe: $r = 4$, $\\alpha = 32$, dropout 0.1 on the LoRA input, AdamW lr
$2\\cdot10^{-4}$, weight decay 0.01, batch 8, 5 epochs, linear decay after 500 warm-up
steps, label smoothing 0.1).

Here it is the generative baseline on CoCa: $W_q$ and $W_v$ of every self-attention
layer of CoCa's *unimodal text decoder* (the language model half, which never sees the
image). By default the update therefore plays no role in fusing the modalities
(``adapter.unimodal``, the record's category, checked by conformance); ``--set
towers=text,decoder`` extends it to the multimodal decoder's self-attention, where it
would take part in fusion.

What this version changes: no label smoothing; the schedule is the recipe's cosine, not
a linear decay; LoRA's dropout is on the update's input as in ``loralib``.

Embedded recipe, chosen on val (`python benchmarks/generative_calibration.py`: 16 examples per
group, seeds 1 and 2, val VQA accuracy and val CIDEr; the frozen captioner scores 38.0 and
148.2): lr 2e-4: VQA 38.5, CIDEr 147.2; lr 1e-3: VQA 40.0, CIDEr 157.9; lr 3e-3: VQA 42.0,
CIDEr 178.1; kept lr 3e-3.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from vlmeft import registry
from vlmeft.decoder_adapters import LowRank, blocks, parse_towers, width
from vlmeft.errors import VlmeftError
from vlmeft.generative import GenerativeConfig, GenerativeMethod
from vlmeft.recipes import Source

_TOWERS = ("text", "decoder")


@dataclass
class Config(GenerativeConfig):
    """The GPT-2 recipe of microsoft/LoRA ``examples/NLG/README.md`` (@ c4593f0, E2E training
    command): r 4, alpha 32, dropout 0.1, AdamW lr 2e-4, weight decay 0.01, batch 8, 5 epochs.

    Embedded recipe: lr 3e-3 and 20 epochs (val evidence in the module notes)."""

    rank: int = 4
    alpha: float = 32.0
    dropout: float = 0.1
    targets: str = "qv"
    towers: str = "text"  # comma-separated: text (unimodal decoder), decoder (multimodal decoder)
    lr: float = 2e-4
    weight_decay: float = 0.01
    batch_size: int = 8
    epochs: int = 5
    select: typing.Literal["last", "val"] = "last"

    source: ClassVar[Source] = Source("microsoft/LoRA", "examples/NLG/README.md", "c4593f0", "fp32")
    embedded: ClassVar[dict[str, Any]] = {"lr": 3e-3, "epochs": 20, "batch_size": 32, "min_steps": 40}

    def validate(self) -> None:
        super().validate()
        if self.rank < 1:
            raise VlmeftError(f"rank must be >= 1, got {self.rank}", where="--set")
        if not self.targets or set(self.targets) - set("qkv"):
            raise VlmeftError(f"targets must be letters of 'qkv', got {self.targets!r}", where="--set")
        parse_towers(self.towers, _TOWERS)


@registry.register
class DecoderLoRA(GenerativeMethod):
    """Low-rank updates of q and v in the language model's self-attention."""

    name = "lora"
    category = "adapter.unimodal"
    Config = Config

    def __init__(self, backbone, classnames=(), templates=(), config: Config | None = None) -> None:
        super().__init__(backbone, classnames, templates, config)
        cfg = self.config
        self.adapted_towers = parse_towers(cfg.towers, _TOWERS)
        self.lora = nn.ModuleDict()
        for tower in self.adapted_towers:
            d = width(backbone, tower)
            for i in range(len(blocks(backbone, tower))):
                for t in cfg.targets:
                    self.lora[f"{tower}_{i}_{t}"] = LowRank(d, d, cfg.rank, cfg.alpha / cfg.rank, cfg.dropout)
        self.to(backbone.device)

    def qkv(self, tower: str, i: int, q_in: Tensor, kv_in: Tensor, q: Tensor, k: Tensor, v: Tensor
            ) -> tuple[Tensor, Tensor, Tensor]:
        out = {"q": q, "k": k, "v": v}
        for t in self.config.targets:
            out[t] = out[t] + self.lora[f"{tower}_{i}_{t}"](q_in if t == "q" else kv_in)
        return out["q"], out["k"], out["v"]
