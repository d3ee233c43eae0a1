"""# CoOp: Context Optimization

*Zhou, Yang, Loy, Liu. "Learning to Prompt for Vision-Language Models", IJCV 2022 (arXiv 2109.01134).*

Zero-shot CLIP classifies with hand-written prompts such as "a photo of a {class}.", and
small wording changes move accuracy by several points. CoOp replaces the words of the
template with $n$ continuous vectors $[v]_1 \\dots [v]_n$ in the text encoder's
token-embedding space and learns them from a few labelled images, keeping CLIP frozen:

$$t_c = [\\text{SOS}]\\,[v]_1 \\dots [v]_n\\,[\\text{CLASS}_c]\\,.\\,[\\text{EOT}], \\qquad
p(y=c\\mid x) = \\frac{\\exp(\\tau \\cos(f(x), g(t_c)))}{\\sum_j \\exp(\\tau \\cos(f(x), g(t_j)))}$$

The context is either *unified* (one $[n, D_t]$ tensor shared by all classes) or
*class-specific* (``csc``: $[C, n, D_t]$). Only the context trains; the gradient flows
back through the frozen text encoder, whose forward and backward pass over all $C$ class
prompts is the whole per-step cost. The image feature is the frozen model's, so
``frozen_image_path`` lets the engine compute it once and reuse it (exact without
augmentation).

What this version simplifies: the class token sits at the end only (the paper also tries
the middle and front positions); class-specific context cannot move to a label set of a
different size. The mechanics (prompt assembly, prefix/suffix buffers rebuilt from class
names) live in :mod:`vlmeft.prompting`, shared with CoCoOp, KgCoOp, IVLP and MaPLe.

## Fidelity
One training step against KaiyangZhou/CoOp @ ff61507 (``trainers/coop.py``; setup in
:mod:`vlmeft.methods`), for 16 random context vectors, 4 class-specific ones, and
``ctx_init="a photo of a"`` with ``n_ctx`` 16 and 2 (4 vectors each: with ``ctx_init`` the
official context length is the init's word count, and so is ours). Max abs difference:
logits 6.2e-6 (1.7e-6 relative), loss 1.2e-6, gradient of ``ctx`` 1.5e-5 (4.7e-6 relative),
``ctx`` after one SGD step at lr 0.002 through Dassl's ``build_optimizer`` 4.2e-7 relative.
Not reproduced: the class token in the middle or at the front; and with ``csc`` *and*
``ctx_init`` the official code silently learns one generic context, ours class-specific
contexts all initialised from the words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from vlmeft import registry
from vlmeft.backbone.wrapper import Backbone
from vlmeft.method import Method, MethodConfig
from vlmeft.recipes import Source
from vlmeft.prompting import TextPromptLearner


@dataclass
class Config(MethodConfig):
    """CoOp's ViT-B/16 recipe, ``configs/trainers/CoOp/vit_b16.yaml`` of KaiyangZhou/CoOp
    (@ ff61507), on Dassl's defaults: SGD (momentum 0.9, weight decay 5e-4), lr 0.002,
    batch 32, 200 epochs, one constant warm-up epoch at 1e-5 then Dassl's cosine, random
    resized crop (0.08-1, bicubic) + flip, 16 random context tokens, fp16
    (``TRAINER.COOP.PREC`` in ``train.py``), the last epoch evaluated. That file is the
    8/16-shot one: ``COOP.md`` trains 1 shot with ``*_ep50.yaml`` and 2/4 shots with
    ``*_ep100.yaml`` (``--set epochs=50`` / ``100``).

    Embedded recipe: the shared base only (val selection, no augmentation, the legacy
    schedule); with cached image features an epoch on the embedded tasks is a handful of
    text-encoder steps, so the paper's 200 epochs cost seconds."""

    epochs: int = 200
    batch_size: int = 32
    lr: float = 0.002
    n_ctx: int = 16  # number of learnable context vectors (with ctx_init: its word count instead)
    ctx_init: str = ""  # e.g. "a photo of a": initialise the context from these words, one vector each
    csc: bool = False  # class-specific context (one context per class)

    source: ClassVar[Source] = Source("KaiyangZhou/CoOp", "configs/trainers/CoOp/vit_b16.yaml", "ff61507", "fp16")
    embedded: ClassVar[dict[str, Any]] = {}


@registry.register(reference_for="prompt.textual.learnable")
class CoOp(Method):
    """Learnable text context, class token at the end; frozen image path."""

    name = "coop"
    category = "prompt.textual.learnable"
    Config = Config
    requires_vision_tokens = False
    frozen_image_path = True
    conformance_variants = {"csc": {"csc": "true"}}

    def __init__(
        self, backbone: Backbone, classnames: Sequence[str], templates: Sequence[str], config: Config | None = None
    ) -> None:
        super().__init__(backbone, classnames, templates, config)
        cfg = self.config
        self.prompt_learner = TextPromptLearner(
            backbone, self.classnames, n_ctx=cfg.n_ctx, ctx_init=cfg.ctx_init, csc=getattr(cfg, "csc", False),
            n_ctx_from_init=True,  # CoOp/CoCoOp: with ctx_init, its word count is the context length
        )
        self.build_class_state()

    def build_class_state(self) -> None:
        self.prompt_learner.set_classnames(self.classnames)

    def text_prompt_parameters(self) -> list[nn.Parameter]:
        """The text-side prompt tensors (the conformance probes read this)."""
        return [self.prompt_learner.ctx]

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        """``[C, E]``: the class prompts with the learned context, through the frozen text encoder."""
        return self.prompt_learner.encode(self.prompt_learner())
