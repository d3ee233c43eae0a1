"""# VPT: Visual Prompt Tuning (shallow and deep)

*Jia, Tang, Chen, Cardie, Belongie, Hariharan, Lim. "Visual Prompt Tuning", ECCV 2022
(arXiv 2203.12119).*

VPT adapts a frozen vision transformer by adding $p$ learnable tokens to its input
sequence. *Shallow* VPT inserts them once, before the first block; *deep* VPT gives
every block $i$ its own prompts $P_i \\in \\mathbb{R}^{p\\times D_v}$, which replace the
outputs of the previous block's prompts:

$$[x_{cls}, X_{patch}, \\_\\,] = B_i([x_{cls}, X_{patch}, P_{i-1}]).$$

The prompts never reach the pooled output directly (the class token does), they steer
it through attention. For CLIP the text side stays frozen: the classifier is the
zero-shot text embedding, computed once and cached, so the per-step cost is a forward
and backward pass through the image tower only.

What this version follows: the VPT baseline of the MaPLe repository (prompts appended
after the patch tokens and before ``ln_pre``, N(0, 0.02^2) init, 8 tokens, depth 12 on
ViT-B/16, lr 0.0025). The original paper's VPT prepends the prompts after the class
token, uses Xavier init and a classification head; CLIP's zero-shot classifier replaces
the head. Deep prompts use every layer of the tower (``deep``); shallow uses one.

What the embedded recipe changes (``Config.embedded``; the paper recipe keeps the official values): **at least 300 optimiser steps**
(``min_steps``; the recipe's 5 epochs of 40 images at batch 4 are 50 steps). Chosen on
val (digits, 4 shots, mean over seeds 1-3): at 150 steps, lr {0.001, 0.0025, 0.01,
0.025} give 0.658, 0.658, 0.633, 0.608 (world-v2 backbone, zero-shot 0.608), so the recipe's lr stays;
at lr 0.0025, 50 / 150 / 300 steps give 0.558 / 0.658 / 0.725.

## On the embedded default
VPT beats zero-shot on synthclip-tiny's digits at 4 shots for every seed: 61.8%, 61.6%
and 62.2% test for seeds 1-3 against 52.2% (``results/digits-4shot.json``). Deep prompts
steer all 4 blocks of a 32 px ViT from 40 images and the kept epoch is picked on a
40-image val split, which can mislead: on the previous backbone (world-v2) seed 2's val
peak did not carry over to test (52.5% against 55.8% zero-shot).

## Fidelity
Against the VPT-deep baseline of muzairkhattak/multimodal-prompt-learning @ 69bce21
(``trainers/vpt.py``; setup in :mod:`vlmeft.methods`), 8 tokens in all 12 layers, with
``text_template="a photo of a {}."`` (its fixed hand-written prompt): max abs difference of
logits 3.7e-6 (1.6e-6 relative), loss 1.2e-6, gradients of the 12 prompts 4.6e-7 (3.7e-6
relative). With the task's template ensemble instead of that prompt the gradients are 59%
off (114% before class names were cleaned there too). The record stays ``simplified``:
its code is the original VPT (KMnP/vpt: prompts after the class token, a learned head),
which this is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from vlmeft import registry
from vlmeft.backbone.wrapper import Backbone
from vlmeft.errors import VlmeftError
from vlmeft.method import Method, MethodConfig
from vlmeft.recipes import Source
from vlmeft.prompting import deep_prompt_hook, prompt_stack


@dataclass
class Config(MethodConfig):
    """The MaPLe repository's deep-VPT recipe, ``configs/trainers/VPT/vit_b16_c2_ep5_batch4_4.yaml``
    of muzairkhattak/multimodal-prompt-learning (@ 69bce21), on Dassl's defaults: 8 tokens
    in all 12 layers, SGD lr 0.0025, batch 4, 5 epochs, one constant warm-up epoch at 1e-5
    then Dassl's cosine, random resized crop + flip, fp16, the last epoch evaluated
    (``scripts/vpt/base2new_test_vpt.sh`` loads epoch 5).

    Embedded recipe: at least 300 optimiser steps (val evidence in the module notes)."""

    epochs: int = 5
    batch_size: int = 4
    lr: float = 0.0025
    n_tokens: int = 8  # prompt tokens per layer
    deep: bool = True  # prompts in every layer (deep) or only at the input (shallow)

    source: ClassVar[Source] = Source("muzairkhattak/multimodal-prompt-learning",
                                      "configs/trainers/VPT/vit_b16_c2_ep5_batch4_4.yaml", "69bce21", "fp16")
    text_template: str = "a photo of a {}."  # the MaPLe repository's fixed prompt for VPT
    embedded: ClassVar[dict[str, Any]] = {"min_steps": 300}

    def validate(self) -> None:
        super().validate()
        if self.n_tokens < 1:
            raise VlmeftError(f"n_tokens must be at least 1, got {self.n_tokens}", where="--set")


@registry.register(reference_for="prompt.visual.token")
class VPT(Method):
    """Learnable vision tokens; text features are the cached frozen zero-shot weights."""

    name = "vpt"
    category = "prompt.visual.token"
    Config = Config
    requires_vision_tokens = True
    frozen_image_path = False
    conformance_variants = {"shallow": {"deep": "false"}}

    def __init__(
        self, backbone: Backbone, classnames: Sequence[str], templates: Sequence[str], config: Config | None = None
    ) -> None:
        super().__init__(backbone, classnames, templates, config)
        cfg = self.config
        self.depth = backbone.vision_layers if cfg.deep else 1
        # prompts[0] enters with the input; prompts[i] replaces them before block i.
        self.prompts = prompt_stack(self.depth, cfg.n_tokens, backbone.vision_width, backbone)
        self.build_class_state()

    def image_features(self, images: Tensor) -> Tensor:
        hook = deep_prompt_hook(list(self.prompts)[1:], "end") if self.depth > 1 else None
        return self.backbone.encode_image(
            images, prompt_tokens=self.prompts[0].unsqueeze(0), layer_hook=hook, normalize=True
        )

    # text_features: the base class's cached zero-shot weights (frozen text side).
