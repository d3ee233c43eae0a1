"""# LLaMA-Adapter (V1) and LLaMA-Adapter V2: zero-initialised gated adaptation prompts

Zhang et al., "LLaMA-Adapter: Efficient Fine-tuning of Large Language Models with
Zero-initialized Attention" (ICLR 2024). A frozen LLaMA gets ``K`` learnable *adaptation
prompts* $P_l \\in \\mathbb{R}^{K\\times d}$ in each of its top ``L`` layers. The prompts go
through the layer's own (frozen) key and value projections, and the attention over them
has a softmax of its own, scaled by a per-head gate $g_l$ initialised to zero:

$$\\mathrm{attn}_l(x) = \\tanh(g_l)\\,\\mathrm{softmax}\\big(q (W_k P_l)^\\top/\\sqrt{d_h}\\big)\\,W_v P_l
\\;+\\; \\mathrm{softmax}\\big(q K^\\top/\\sqrt{d_h} + M\\big)\\,V ,$$

so training starts exactly at the frozen model and the prompts' influence grows with the
gate (official ``Attention.forward`` in ``alpaca_finetuning_v1/llama/model.py``: ``K = 10``,
``L = 30`` of 32 layers). The multimodal variant adds a projected global image feature to
every adaptation prompt, $P_l + \\mathrm{proj}(f_{img})$: the prompts, hence the decoder's
adapted attention, depend on the image (cross-modal).

**LLaMA-Adapter V2** (Gao et al. 2023, the ``llama-adapter-v2`` record; official
``llama_adapter_v2_multimodal7b/llama/llama_adapter.py``) changes four things, all here:
the image enters as ``K`` *visual query* tokens refined by small transformer blocks over the
CLIP patch tokens (not one global feature); the language model's norms and new zero
biases of its query and output projections also train ("bias tuning"); the prompts sit in
all layers but the first (``query_layer = 31`` of 32); and its two training phases train
disjoint groups (visual modules and prompts on captions, norms and biases on instructions).

On CoCa the language model's top layers are the multimodal decoder's self-attention
layers; the image feature is CoCa's image latent (V1) or its cross-attention tokens (V2).

What this version simplifies: the official linear warm-up is a constant one at half the
peak lr (the recipes' per-epoch schedules have no linear warm-up); V2's phases are merged into one run that trains every group
(``phase = "joint"``; ``caption`` / ``instruction`` train one group each); V2's visual blocks
are open_clip residual blocks of the decoder's width (``visual_depth`` of them, 8 in the
paper at width 768); the scale of V2's bias tuning is not modelled (biases only).

Embedded recipe of LLaMA-Adapter, chosen on val (`python benchmarks/generative_calibration.py`:
16 examples per group, seeds 1 and 2, val VQA accuracy and val CIDEr; the frozen captioner
scores 38.0 and 148.2): lr 1.125e-3: VQA 38.5, CIDEr 150.1; lr 3e-3: VQA 38.5, CIDEr 149.5; lr
1e-2: VQA 36.8, CIDEr 139.7; kept lr 1.125e-3. The zero-initialised gates barely open in 40-60
steps: every setting stays within about a point of the frozen captioner.

Embedded recipe of LLaMA-Adapter V2, chosen on val (`python
benchmarks/generative_calibration.py`: 16 examples per group, seeds 1 and 2, val VQA accuracy
and val CIDEr; the frozen captioner scores 38.0 and 148.2): lr 1.25e-4: VQA 38.5, CIDEr 148.1;
lr 1e-3: VQA 38.8, CIDEr 149.5; lr 3e-3: VQA 38.8, CIDEr 144.8; kept lr 1e-3.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vlmeft import registry
from vlmeft.backbone.captioner import ExtraKV, ImageMemory
from vlmeft.decoder_adapters import TunedNorms, blocks, heads, width
from vlmeft.errors import VlmeftError
from vlmeft.generative import GenerativeConfig, GenerativeMethod
from vlmeft.recipes import Source


@dataclass
class Config(GenerativeConfig):
    """LLaMA-Adapter V1's recipe, OpenGVLab/LLaMA-Adapter ``alpaca_finetuning_v1/finetuning.sh``
    (@ 521a09d): adapter_len 10, adapter_layer 30 (of 32: ``skip_layers`` 2), blr 9e-3 at an
    effective batch of 32 (8 GPUs x 4): lr = blr x 32 / 256 = 1.125e-3, 5 epochs with 2 warm-up
    epochs, weight decay 0.02.

    Embedded recipe: prompts in every decoder layer (skip 0) and 20 epochs (module notes)."""

    prompt_length: int = 10
    skip_layers: int = 2  # the bottom layers left without prompts (LLaMA 7B: 32 - 30)
    visual: bool = True  # add the projected image feature to the prompts (the multimodal variant)
    lr: float = 1.125e-3
    epochs: int = 5
    warmup_epochs: int = 2
    warmup_lr: float = 5.625e-4  # constant at half the peak: the mean of the official linear ramp
    weight_decay: float = 0.02
    batch_size: int = 32
    select: typing.Literal["last", "val"] = "last"

    source: ClassVar[Source] = Source("OpenGVLab/LLaMA-Adapter", "alpaca_finetuning_v1/finetuning.sh", "521a09d",
                                      "fp16")
    embedded: ClassVar[dict[str, Any]] = {"skip_layers": 0, "epochs": 20, "warmup_epochs": 0, "min_steps": 40}

    def validate(self) -> None:
        super().validate()
        if self.prompt_length < 1 or self.skip_layers < 0:
            raise VlmeftError("prompt_length must be >= 1 and skip_layers >= 0", where="--set")


@registry.register
class LLaMAAdapter(GenerativeMethod):
    """Gated adaptation prompts in the top decoder layers (plus the image feature, V1 multimodal)."""

    name = "llama-adapter"
    category = "adapter.crossmodal"
    Config = Config
    adapted_towers = ("decoder",)

    def __init__(self, backbone, classnames=(), templates=(), config: Config | None = None) -> None:
        super().__init__(backbone, classnames, templates, config)
        cfg = self.config
        n = len(blocks(backbone, "decoder"))
        self.first = min(cfg.skip_layers, n - 1)  # a decoder no deeper than skip_layers keeps its top layer
        d = width(backbone, "decoder")
        self.prompts = nn.Parameter(torch.randn(n - self.first, cfg.prompt_length, d))  # nn.Embedding's N(0, 1)
        self.gates = nn.Parameter(torch.zeros(n - self.first, heads(backbone, "decoder")))
        self.build_visual(backbone)
        self.to(backbone.device)
        self._visual_tokens: Tensor | None = None

    def build_visual(self, backbone) -> None:  # noqa: ANN001
        self.visual_proj = nn.Linear(backbone.embed_dim, width(backbone, "decoder")) if self.config.visual else None

    def visual_prompt(self, memory: ImageMemory) -> Tensor | None:
        """``[B, 1 | K, d]`` added to every layer's prompts (None: no image input)."""
        return None if self.visual_proj is None else self.visual_proj(memory.latent).unsqueeze(1)

    def adapts(self, tower: str, i: int) -> bool:
        return tower == "decoder" and i >= self.first

    def token_hidden(self, tokens: Tensor, memory: ImageMemory) -> Tensor:
        self._visual_tokens = self.visual_prompt(memory)  # read by extra_kv during this forward pass
        try:
            return super().token_hidden(tokens, memory)
        finally:
            self._visual_tokens = None

    def extra_kv(self, tower: str, i: int, q_in: Tensor) -> ExtraKV | None:
        if tower != "decoder" or i < self.first:
            return None
        prompts = self.prompts[i - self.first].unsqueeze(0)
        if self._visual_tokens is not None:
            prompts = prompts + self._visual_tokens
        attn = blocks(self.backbone, "decoder")[i].attn
        d = attn.embed_dim
        w, b = attn.in_proj_weight, attn.in_proj_bias
        keys = nn.functional.linear(prompts, w[d : 2 * d], None if b is None else b[d : 2 * d])
        values = nn.functional.linear(prompts, w[2 * d :], None if b is None else b[2 * d :])
        return ExtraKV(keys, values, gate=self.gates[i - self.first])


@dataclass
class ConfigV2(Config):
    """LLaMA-Adapter V2's recipe, OpenGVLab/LLaMA-Adapter ``llama_adapter_v2_multimodal7b/exps/finetune.sh``
    (@ 521a09d): blr 1e-3 at an effective batch of 32 (lr = 1.25e-4), 4 epochs with 1 warm-up
    epoch, weight decay 0.02; ``llama_adapter.py``: query_len 10, query_layer 31 of 32 (skip 1),
    visual blocks 8.

    Embedded recipe: every decoder layer, one visual block, lr 1e-3, 20 epochs (module notes)."""

    skip_layers: int = 1
    visual_depth: int = 8
    phase: typing.Literal["joint", "caption", "instruction"] = "joint"
    lr: float = 1.25e-4
    epochs: int = 4
    warmup_epochs: int = 1
    warmup_lr: float = 6.25e-5

    source: ClassVar[Source] = Source("OpenGVLab/LLaMA-Adapter", "llama_adapter_v2_multimodal7b/exps/finetune.sh",
                                      "521a09d", "fp16")
    embedded: ClassVar[dict[str, Any]] = {"skip_layers": 0, "visual_depth": 1, "lr": 1e-3, "epochs": 20,
                                          "warmup_epochs": 0, "min_steps": 40}


@registry.register
class LLaMAAdapterV2(LLaMAAdapter):
    """V1's gated prompts fed by visual query tokens, plus bias and norm tuning of the decoder."""

    name = "llama-adapter-v2"
    Config = ConfigV2

    def build_visual(self, backbone) -> None:  # noqa: ANN001
        from open_clip.transformer import ResidualAttentionBlock

        cfg = self.config
        d = width(backbone, "decoder")
        self.visual_query = nn.Parameter(torch.randn(cfg.prompt_length, d))
        self.clip_proj = nn.Sequential(nn.Linear(backbone.embed_dim, d), nn.LayerNorm(d))
        self.visual_blocks = nn.ModuleList(ResidualAttentionBlock(d, heads(backbone, "decoder"))
                                           for _ in range(cfg.visual_depth))
        self.visual_proj = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))
        n = len(blocks(backbone, "decoder"))
        self.q_bias = nn.Parameter(torch.zeros(n, d))  # bias tuning: new zero biases of W_q and W_o
        self.o_bias = nn.Parameter(torch.zeros(n, d))
        self.norms = TunedNorms(backbone, ("decoder",), final=True)
        groups = {"caption": ("visual_query", "clip_proj", "visual_blocks", "visual_proj", "prompts", "gates"),
                  "instruction": ("q_bias", "o_bias", "norms")}.get(cfg.phase)
        if groups is not None:  # one phase: only its group trains
            for name, p in self.named_parameters():
                p.requires_grad_(name.split(".")[0] in groups)

    def visual_prompt(self, memory: ImageMemory) -> Tensor:
        feats = self.clip_proj(memory.tokens)  # the CLIP patch tokens, projected
        x = torch.cat([self.visual_query.unsqueeze(0).expand(len(feats), -1, -1), feats], dim=1)
        for block in self.visual_blocks:
            x = block(x)
        return self.visual_proj(x[:, : self.config.prompt_length])

    def adapts(self, tower: str, i: int) -> bool:
        return tower == "decoder"

    def qkv(self, tower: str, i: int, q_in: Tensor, kv_in: Tensor, q: Tensor, k: Tensor, v: Tensor
            ) -> tuple[Tensor, Tensor, Tensor]:
        return (q + self.q_bias[i], k, v) if tower == "decoder" else (q, k, v)

    def attn_out(self, tower: str, i: int, x: Tensor, out: Tensor) -> Tensor:
        # W_o's new bias, applied after the frozen output projection (and its frozen bias).
        return out + self.o_bias[i] if tower == "decoder" else out

    def norm(self, tower: str, i: int, which: str, ln: nn.Module, x: Tensor) -> Tensor:
        return self.norms.run(tower, i, which, ln, x)
