"""# UPT: Unified Prompt Tuning

*Zang, Li, Zhou, Huang, Loy. "Unified Vision and Language Prompt Learning", arXiv 2210.07225 (2022).*

Text prompts fail on data with large visual variance within a class, visual prompts on
classes that differ little; tuning both independently does not combine their strengths.
UPT learns **one** set of $n_t + n_v$ unified prompts $U \\in \\mathbb{R}^{(n_t + n_v)
\\times D_t}$ and passes it through a small transformer layer $\\Phi$ (self-attention and a
feed-forward network, each residual with a layer norm), then splits the result:

$$U' = \\mathrm{LN}_1\\big(U + \\mathrm{SA}(U)\\big), \\qquad
\\hat U = U' + \\mathrm{FFN}\\big(\\mathrm{LN}_2(U')\\big), \\qquad
[T; V] = \\hat U, \\quad P_v = W V + b.$$

$T$ ($n_t \\times D_t$) is the text context in place of the words "a photo of a" (class name
at the end, as in CoOp); $P_v$ ($n_v \\times D_v$) are shallow visual prompt tokens in the
image tower's input. Both come from the same parameters $U$ and the same layer $\\Phi$, so
the image loss trains what generates the text prompts: the *coupled* multimodal leaf
(the image feature has a non-zero gradient with respect to them).

## The official code (yuhangzang/UPT @ 3d1640f, ``trainers/unified.py``)
The code was released in 2025 (commit 3d1640f by the first author; the stored snapshot
of yuhangzang/UPT predates it, so it was read in the fork pedramyamini2023/UPT, which
carries that commit). It follows the equations with two details this version keeps:

* The self-attention is ``nn.MultiheadAttention(D_t, 1 head, dropout 0.1)``, sequence-first,
  given $U$ shaped ``[1, n_t + n_v, D_t]``: a sequence of length 1 in a batch of
  $n_t + n_v$. Each prompt therefore attends only to itself, and $\\mathrm{SA}$ reduces to a
  per-token linear map; the tokens share weights but never mix. ``attend_across=true``
  runs the attention across the prompts instead, as the paper's text describes.
* Dropout 0.1 on the attention weights and in the residual branches, active in training;
  the text and visual prompts come from two separate passes through $\\Phi$ (two dropout
  draws), as the official ``get_text_prompt`` / ``get_visual_prompt`` do.
* $U$ is drawn from N(0, 0.02^2); the words of ``ctx_init`` only set the prompt template
  (4 words, 4 text tokens), they do not initialise anything.

Parameters on ViT-B/16 ($n_t = n_v = 4$): $U$ 4,096, attention 1,050,624, two layer norms
2,048, the FFN 525,312, the visual projection 393,984: 1,976,064.

## What this version changes
* The visual prompts are appended after the patch tokens (the official code inserts them
  between the class token and the patches). The tokens already carry their positional
  embeddings and every block attends over the full sequence, so the class token's output
  is the same either way.
* Widths come from the backbone; no fp16 cast.
* The official release is missing the image encoder's ``forward_prompt_shallow`` that its
  trainer calls (the fork renames it to ``forward_prompt``); this version follows that
  function: prompts after the positional embedding, before ``ln_pre``, in the first layer only.

Fidelity: **faithful**, compared with the official code (yuhangzang/UPT @ 3d1640f,
``trainers/unified.py`` and its ``clip/model.py``, read in the fork pedramyamini2023/UPT
whose ``forward_prompt`` stands in for the missing ``forward_prompt_shallow``; run outside
the project with Dassl stubbed, fp32) on one random ViT-B/16 (QuickGELU), 3 classes, 2
images, the paper recipe, the official parameters copied into this module: eval logits
differ by at most 1.4e-6, one training step's loss (dropout 0 in both: the draws cannot be
shared) by 3.6e-7, and the gradients of all 15 tensors by 3.9e-6 (largest gradient 1.61).

## The embedded recipe (``Config.embedded``)
The paper's 200 epochs at lr 0.01. Val evidence (``vlmeft`` 4-shot digits, val accuracy of the kept state, mean over seeds 1-3; zero-shot CLIP 0.633): this recipe 0.742; lr 0.002 (the
paper's) 0.725, 50 epochs 0.675, prompts attending across each other 0.617 (50 epochs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft import registry
from vlmeft.backbone.wrapper import Backbone
from vlmeft.errors import VlmeftError
from vlmeft.method import Method, MethodConfig
from vlmeft.prompting import PROMPT_INIT_STD, TextPromptLearner
from vlmeft.recipes import Source


@dataclass
class Config(MethodConfig):
    """UPT's recipe, ``configs/trainers/Unified/vit_b16_ep200.yaml`` of yuhangzang/UPT (@ 3d1640f),
    run by ``scripts/unified/base2new_train_*.sh`` on Dassl's defaults: 4 text + 4 visual
    unified prompts, the template "a photo of a", SGD lr 0.002 (momentum 0.9, weight decay
    5e-4), batch 32, 200 epochs, one constant warm-up epoch at 1e-5 then Dassl's cosine,
    random resized crop + flip, fp16, the last epoch evaluated (``base2new_test_new.sh``
    loads epoch 200). ``vit_b16_ep50.yaml`` / ``vit_b16_ep100.yaml`` differ only in epochs.

    Embedded recipe: see ``embedded`` below."""

    epochs: int = 200
    batch_size: int = 32
    lr: float = 0.002
    n_ctx_text: int = 4
    n_ctx_vision: int = 4
    ctx_init: str = "a photo of a"  # the words the text prompts stand in for
    dropout: float = 0.1
    attend_across: bool = False  # official: each prompt attends only to itself (see the module notes)

    source: ClassVar[Source] = Source("yuhangzang/UPT", "configs/trainers/Unified/vit_b16_ep200.yaml", "3d1640f",
                                      "fp16", "read in the fork pedramyamini2023/UPT, which carries the author's commit")
    # Val evidence: the module docstring's embedded-recipe section.
    embedded: ClassVar[dict[str, Any]] = {"lr": 0.01}

    def validate(self) -> None:
        super().validate()
        if self.n_ctx_text < 1 or self.n_ctx_vision < 1:
            raise VlmeftError("n_ctx_text and n_ctx_vision must be at least 1", where="--set")
        if not 0.0 <= self.dropout < 1.0:
            raise VlmeftError(f"dropout must lie in [0, 1), got {self.dropout}", where="--set")


class UnifiedPromptLayer(nn.Module):
    """UPT's prompt generator: a post-norm transformer layer over the unified prompts
    (one attention head, FFN width = model width, ReLU), then a linear map of the
    visual part to the image tower's width."""

    def __init__(self, width: int, vision_width: int, dropout: float, attend_across: bool) -> None:
        super().__init__()
        self.attend_across = attend_across
        self.attn = nn.MultiheadAttention(width, 1, dropout=dropout)  # sequence-first, as the official layer
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.linear1, self.linear2 = nn.Linear(width, width), nn.Linear(width, width)
        self.drop, self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)
        self.to_vision = nn.Linear(width, vision_width)

    def forward(self, prompts: Tensor) -> Tensor:
        """``[n, D]`` unified prompts -> ``[n, D]`` transformed ones."""
        # Official layout [1, n, D] = (length 1, batch n): no token mixing. [n, 1, D] mixes them.
        src = prompts[:, None] if self.attend_across else prompts[None]
        src = self.norm1(src + self.drop1(self.attn(src, src, src, need_weights=False)[0]))
        src = src + self.drop2(self.linear2(self.drop(F.relu(self.linear1(self.norm2(src))))))
        return src[:, 0] if self.attend_across else src[0]


@registry.register
class UPT(Method):
    """One set of unified prompts through a small transformer layer, split into text and
    visual prompts."""

    name = "upt"
    category = "prompt.multimodal.coupled"
    Config = Config
    requires_vision_tokens = True
    frozen_image_path = False
    conformance_variants = {"attend-across": {"attend_across": "true"}}

    def __init__(
        self, backbone: Backbone, classnames: Sequence[str], templates: Sequence[str], config: Config | None = None
    ) -> None:
        super().__init__(backbone, classnames, templates, config)
        cfg = self.config
        self.prompt_learner = TextPromptLearner(backbone, self.classnames, n_ctx=cfg.n_ctx_text,
                                                ctx_init=cfg.ctx_init, learnable=False)
        n = cfg.n_ctx_text + cfg.n_ctx_vision
        self.unified = nn.Parameter(torch.randn(n, backbone.text_width, device=backbone.device) * PROMPT_INIT_STD)
        self.generator = UnifiedPromptLayer(backbone.text_width, backbone.vision_width, cfg.dropout,
                                            cfg.attend_across).to(backbone.device)
        self.build_class_state()

    def build_class_state(self) -> None:
        self.prompt_learner.set_classnames(self.classnames)

    def text_prompt_parameters(self) -> list[nn.Parameter]:
        """What the text prompts are generated from: the unified prompts and the shared layer."""
        shared = [p for n, p in self.generator.named_parameters() if not n.startswith("to_vision.")]
        return [self.unified, *shared]

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        ctx = self.generator(self.unified)[: self.config.n_ctx_text]
        return self.prompt_learner.encode(self.prompt_learner(ctx=ctx))

    def image_features(self, images: Tensor) -> Tensor:
        visual = self.generator.to_vision(self.generator(self.unified)[self.config.n_ctx_text :])
        return self.backbone.encode_image(images, prompt_tokens=visual.unsqueeze(0), normalize=True)
