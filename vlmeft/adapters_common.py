"""Mechanics shared by the adapter methods (CLIP-LoRA, MMA, ...): nothing method-specific.

* :class:`ReencodedTextMixin`: for methods whose *text tower itself* changes (LoRA in the
  text encoder, adapters in its blocks). The class prompts must then be re-encoded through
  the adapted tower on every training step, but at evaluation time the text features are
  constant, so they are computed once and cached; the cache is dropped whenever it could
  be stale (``train()``, new class names, loaded tensors).
* :func:`transformer_blocks`: the residual blocks of each tower that has them.
* :func:`scale_grad`: identity forward, scaled gradient backward.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from vlmeft.backbone.wrapper import Backbone


class ReencodedTextMixin:
    """Mixin for a :class:`vlmeft.method.Method` that encodes class prompts through an
    adapted text tower. Uses the first template, as CLIP-LoRA and MMA do (one hand-written
    prompt per class), so a training step costs one text pass per class, not per template.

    The host calls :meth:`build_prompt_tokens` from ``build_class_state`` and implements
    ``encode_prompts(tokens) -> [C, E]`` (unnormalised or normalised).
    """

    _text_cache: Tensor | None = None

    def build_prompt_tokens(self) -> None:
        template = self.templates[0] if self.templates else "{}"
        prompts = [template.format(c) for c in self.classnames]
        self.register_buffer("prompt_tokens", self.backbone.tokenize(prompts), persistent=False)
        self._text_cache = None

    def encode_prompts(self, tokens: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def adapted_text_features(self) -> Tensor:
        """Normalised class text features ``[C, E]`` through the adapted tower; cached only
        when nothing can change them (eval mode, no autograd graph wanted)."""
        cacheable = not self.training and not torch.is_grad_enabled()
        if cacheable and self._text_cache is not None:
            return self._text_cache
        feats = torch.nn.functional.normalize(self.encode_prompts(self.prompt_tokens), dim=-1)
        if cacheable:
            self._text_cache = feats
        return feats

    def invalidate_text_cache(self) -> None:
        self._text_cache = None

    def train(self, mode: bool = True):  # type: ignore[override]
        self._text_cache = None
        return super().train(mode)  # type: ignore[misc]

    def load_state_tensors(self, tensors: Mapping[str, Tensor], where: str = "checkpoint") -> None:
        self._text_cache = None
        super().load_state_tensors(tensors, where)  # type: ignore[misc]


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

