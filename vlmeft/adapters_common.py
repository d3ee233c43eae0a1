"""Mechanics shared by the adapter methods (CLIP-LoRA, MMA, ...): nothing method-specific.

* :class:`ReencodedTextMixin`: for methods whose *text tower itself* changes (LoRA in the
  text encoder, adapters in its blocks). The class prompts must then be re-encoded through
  the adapted tower on every training step; at evaluation time the base class's
  ``class_text_features`` caches them.
* :func:`transformer_blocks`: the residual blocks of each tower that has them.
* :func:`scale_grad`: identity forward, scaled gradient backward.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlmeft.backbone.wrapper import Backbone, class_prompt


class ReencodedTextMixin:
    """Mixin for a :class:`vlmeft.method.Method` that encodes class prompts through an
    adapted text tower. Uses one template, the first of ``text_templates()``, as CLIP-LoRA and
    MMA do (one hand-written prompt per class), so a training step costs one text pass per
    class, not per template.
    At inference the result is constant and :meth:`Method.class_text_features` caches it.

    The host calls :meth:`build_prompt_tokens` from ``build_class_state`` and implements
    ``encode_prompts(tokens) -> [C, E]`` (unnormalised or normalised).
    """

    def build_prompt_tokens(self) -> None:
        template = self.text_templates()[0]
        prompts = [class_prompt(template, c) for c in self.classnames]
        self.register_buffer("prompt_tokens", self.backbone.tokenize(prompts), persistent=False)

    def encode_prompts(self, tokens: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def adapted_text_features(self) -> Tensor:
        """Normalised class text features ``[C, E]`` through the adapted tower."""
        return torch.nn.functional.normalize(self.encode_prompts(self.prompt_tokens), dim=-1)


def transformer_blocks(backbone: Backbone) -> dict[str, nn.ModuleList]:
    """``{"text": resblocks, "vision": resblocks}`` for the towers that are transformers
    (a ResNet image tower has no blocks and is left out)."""
    towers = {"text": backbone.text_tower.transformer.resblocks}
    if backbone.is_vit:
        towers["vision"] = backbone.model.visual.transformer.resblocks
    return towers


def parameter_names(backbone: Backbone) -> dict[int, str]:
    """``id(parameter) -> name`` relative to the backbone, the names ``weight_overrides`` take."""
    return {id(p): name for name, p in backbone.named_parameters()}


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.factor, None


def scale_grad(x: Tensor, factor: float) -> Tensor:
    """``x`` unchanged in the forward pass; its gradient multiplied by ``factor``."""
    return _ScaleGrad.apply(x, factor)

