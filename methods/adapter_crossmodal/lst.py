"""# LST: Ladder Side-Tuning

Sung, Cho and Bansal, "LST: Ladder Side-Tuning for Parameter and Memory Efficient
Transfer Learning" (NeurIPS 2022). Instead of changing the frozen backbone, LST trains a
small *side network* (the backbone's layers at ``1/r`` of their width) that reads the
backbone's intermediate activations through *ladder* connections and produces the output
itself. At side layer ``i``,

$$h_i = \\mu_i\\,h_{i-1} + (1 - \\mu_i)\\,W^{\\downarrow}_i\\,b_i, \\qquad \\mu_i = \\sigma(\\alpha_i / T),\\ \\alpha_i = 0,\\ T = 0.1,$$

($b_i$ the backbone's output of layer ``i``, $W^\\downarrow_i$ a learnt down-projection), then
$h_i \\leftarrow \\mathrm{side}_i(h_i)$; the last side state is normalised, projected back up
($W^\\uparrow$) and fed to the frozen language-model head. The backbone runs forward only:
no gradient ever flows through it, which is where LST's memory saving comes from
(``modeling_t5.py`` of the official code: ``side_block``, ``side_downsamples``,
``side_gate_params``, ``side_final_upsample``). The side blocks start from the backbone's
own weights, structurally pruned to ``1/r`` by Fisher importance.

On CoCa the ladder runs along the unimodal text decoder and the multimodal decoder: a
side text block per text block, then per decoder layer a side self-attention block and a
side cross-attention block attending to the image tokens projected to the side width (as
VL-T5's side decoder attends to its side encoder). The image tokens and the taps of the
decoder carry the image: the side network fuses the modalities (cross-modal). Its
output, ``up(LN(h))``, goes through the decoder's frozen output projection.

What this version simplifies: the side blocks are initialised by *magnitude* pruning of
the backbone's blocks (for each side block, the residual channels, per-head attention
dimensions and MLP units with the largest weight norms), not Fisher importance (which
needs a pass over the training data); the up-projection starts as the transpose of the
residual-channel selection; one task per run.

Embedded recipe, chosen on val (`python benchmarks/generative_calibration.py`: 16 examples per
group, seeds 1 and 2, val VQA accuracy and val CIDEr; the frozen captioner scores 38.0 and
148.2): lr 1e-3: VQA 35.2, CIDEr 98.0; lr 3e-3: VQA 37.0, CIDEr 86.1; lr 1e-2: VQA 32.8, CIDEr
124.2; kept lr 1e-2. Every setting is below the frozen captioner at 16 examples per group: the
side network replaces the decoder's output, and 16 examples per group do not train it to the
frozen model's level (the bench shows where it catches up).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vlmeft import registry
from vlmeft.backbone.captioner import ImageMemory, run_block
from vlmeft.decoder_adapters import blocks, heads, width
from vlmeft.errors import VlmeftError
from vlmeft.generative import GenerativeConfig, GenerativeMethod
from vlmeft.recipes import Source


@dataclass
class Config(GenerativeConfig):
    """ylsung/Ladder-Side-Tuning ``VL-T5/scripts/image/LST.sh`` (@ 1798e82): side reduction factor 4,
    Fisher-pruned initialisation, AdamW lr 3e-3, weight decay 3e-2, 20 epochs, batch 300 (T5),
    warm-up 10%; gate ``learnable`` with alpha 0 and T 0.1 (``side_transformers/config.py``).

    Embedded recipe: lr 1e-2, batch 32 and at least 40 steps (val evidence in the module notes)."""

    reduction_factor: int = 4
    gate_temperature: float = 0.1
    pruned_init: bool = True
    lr: float = 3e-3
    weight_decay: float = 3e-2
    epochs: int = 20
    batch_size: int = 300
    select: typing.Literal["last", "val"] = "last"

    source: ClassVar[Source] = Source("ylsung/Ladder-Side-Tuning", "VL-T5/scripts/image/LST.sh", "1798e82", "fp16")
    embedded: ClassVar[dict[str, Any]] = {"lr": 1e-2, "batch_size": 32, "min_steps": 40}

    def validate(self) -> None:
        super().validate()
        if self.reduction_factor < 1 or self.gate_temperature <= 0:
            raise VlmeftError("reduction_factor must be >= 1 and gate_temperature > 0", where="--set")


def _top(scores: Tensor, k: int) -> Tensor:
    return scores.topk(k).indices.sort().values


@torch.no_grad()
def pruned_copy(block: nn.Module, side: nn.Module, keep: Tensor, n_heads: int) -> None:
    """Load ``side`` (a narrower block) with ``block``'s weights on the residual channels
    ``keep``, the largest-norm dimensions of each head and the largest-norm MLP units."""
    d = block.ln_1.weight.shape[0]
    ds = len(keep)
    dh, dhs = d // n_heads, ds // n_heads
    w, b = block.attn.in_proj_weight, block.attn.in_proj_bias
    rows = []
    for part in range(3):  # q, k, v: per head, the dimensions whose rows have the largest norm
        for h in range(n_heads):
            base = part * d + h * dh
            rows.append(base + _top(w[base : base + dh].norm(dim=1), dhs))
    rows_t = torch.cat(rows)
    side.attn.in_proj_weight.copy_(w[rows_t][:, keep])
    if b is not None:
        side.attn.in_proj_bias.copy_(b[rows_t])
    inner = torch.cat([_top(w[2 * d + h * dh : 2 * d + (h + 1) * dh].norm(dim=1), dhs) + h * dh for h in range(n_heads)])
    side.attn.out_proj.weight.copy_(block.attn.out_proj.weight[keep][:, inner])
    side.attn.out_proj.bias.copy_(block.attn.out_proj.bias[keep])
    units = _top(block.mlp.c_fc.weight.norm(dim=1), side.mlp.c_fc.weight.shape[0])
    side.mlp.c_fc.weight.copy_(block.mlp.c_fc.weight[units][:, keep])
    side.mlp.c_fc.bias.copy_(block.mlp.c_fc.bias[units])
    side.mlp.c_proj.weight.copy_(block.mlp.c_proj.weight[keep][:, units])
    side.mlp.c_proj.bias.copy_(block.mlp.c_proj.bias[keep])
    for name in ("ln_1", "ln_2", "ln_1_kv"):
        if hasattr(block, name):
            getattr(side, name).weight.copy_(getattr(block, name).weight[keep])
            getattr(side, name).bias.copy_(getattr(block, name).bias[keep])
    if side.attn.kdim != ds:  # pragma: no cover - open_clip blocks always share q/k/v widths
        raise VlmeftError("unexpected attention layout")


@registry.register
class LST(GenerativeMethod):
    """A 1/r-wide side network fed by ladder taps of both decoders; the output is the side's."""

    name = "lst"
    category = "adapter.crossmodal"
    Config = Config

    def __init__(self, backbone, classnames=(), templates=(), config: Config | None = None) -> None:
        from open_clip.transformer import ResidualAttentionBlock

        super().__init__(backbone, classnames, templates, config)
        cfg = self.config
        d, n_heads = width(backbone, "text"), heads(backbone, "text")
        if width(backbone, "decoder") != d:
            raise VlmeftError("LST's ladder needs the text tower and the decoder of one width", where="--backbone")
        ds = max(n_heads, (d // cfg.reduction_factor) // n_heads * n_heads)
        self.taps = [("text", i) for i in range(len(blocks(backbone, "text")))]
        self.taps += [("cross", i) for i in range(len(blocks(backbone, "cross")))]
        make = lambda cross=False: ResidualAttentionBlock(ds, n_heads, is_cross_attention=cross)  # noqa: E731
        self.side_text = nn.ModuleList(make() for _ in blocks(backbone, "text"))
        self.side_self = nn.ModuleList(make() for _ in blocks(backbone, "decoder"))
        self.side_cross = nn.ModuleList(make(True) for _ in blocks(backbone, "cross"))
        self.first_down = nn.Linear(d, ds)
        self.downs = nn.ModuleList(nn.Linear(d, ds) for _ in self.taps)
        self.memory_down = nn.Linear(width(backbone, "cross"), ds)
        self.gate_alpha = nn.Parameter(torch.zeros(len(self.taps)))
        self.side_ln = nn.LayerNorm(ds)
        self.up = nn.Linear(ds, d)
        if cfg.pruned_init:
            self._init_from_backbone(d, ds, n_heads)
        self.to(backbone.device)
        self._recorded: dict[tuple[str, int], Tensor] = {}

    @torch.no_grad()
    def _init_from_backbone(self, d: int, ds: int, n_heads: int) -> None:
        bb = self.backbone
        keep = _top(bb.text_tower.token_embedding.weight.norm(dim=0), ds)  # the busiest residual channels
        for side, block in zip(self.side_text, blocks(bb, "text")):
            pruned_copy(block, side, keep, n_heads)
        for side, block in zip(self.side_self, blocks(bb, "decoder")):
            pruned_copy(block, side, keep, n_heads)
        for side, block in zip(self.side_cross, blocks(bb, "cross")):
            pruned_copy(block, side, keep, n_heads)
        select = torch.zeros(ds, d)
        select[torch.arange(ds), keep] = 1.0
        for lin in (self.first_down, *self.downs, self.memory_down):
            lin.weight.copy_(select[:, : lin.weight.shape[1]] if lin.weight.shape[1] == d else lin.weight)
            lin.bias.zero_()
        self.up.weight.copy_(select.t())
        self.up.bias.zero_()
        self.side_ln.weight.copy_(bb.model.text_decoder.ln_final.weight[keep])
        self.side_ln.bias.copy_(bb.model.text_decoder.ln_final.bias[keep])

    # ------------------------------------------------------------ the ladder
    def adapts(self, tower: str, i: int) -> bool:
        return False  # the backbone runs unchanged; block_out only records

    def block_out(self, tower: str, i: int, x: Tensor) -> Tensor:
        if (tower, i) in self.taps:
            self._recorded[(tower, i)] = x
        return x

    def token_hidden(self, tokens: Tensor, memory: ImageMemory) -> Tensor:
        bb = self.backbone
        self._recorded = {}
        with torch.no_grad():  # no backpropagation through the backbone
            bb.decode(bb.text_states(tokens, self.hooks), memory, self.hooks, return_hidden=True)
        taps, self._recorded = self._recorded, {}
        n = tokens.shape[1]
        text = bb.text_tower
        h = self.first_down(text.token_embedding(tokens).to(bb.dtype) + text.positional_embedding[:n].to(bb.dtype))
        mem = self.memory_down(memory.tokens)
        mask = text.attn_mask[:n, :n] if text.attn_mask is not None else None
        dec_mask = bb.model.text_decoder.attn_mask[:n, :n]
        gates = torch.sigmoid(self.gate_alpha / self.config.gate_temperature)
        for k, (tower, i) in enumerate(self.taps):
            h = gates[k] * h + (1 - gates[k]) * self.downs[k](taps[(tower, i)])
            if tower == "text":
                h = run_block(self.side_text[i], h, tower="side", i=i, mask=mask)
            else:
                h = run_block(self.side_self[i], h, tower="side", i=i, mask=dec_mask)
                h = run_block(self.side_cross[i], h, tower="side", i=i, memory=mem)
        return self.up(self.side_ln(h))  # through the decoder's frozen output projection
