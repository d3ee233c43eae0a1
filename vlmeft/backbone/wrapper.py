"""One wrapper around a frozen open_clip model, with the hooks every method needs.

No forked CLIP: the wrapper re-runs open_clip 3.x's own submodules step by step, so a
method can swap token embeddings (CoOp), add or replace tokens before any block (VPT,
IVLP, MaPLe, MMA), edit pixels (VP, red circle) or substitute weights (LoRA) without
touching the model. With no hooks it reproduces ``model.encode_text`` and
``model.encode_image`` (tested to 1e-5).

Layout: hooks always see batch-first tensors ``[N, L, D]``; for transformers built
sequence-first (open_clip before 2.26) the wrapper transposes around each block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft.errors import VlmeftError

LayerHook = Callable[[int, Tensor], Tensor]

# _OVERRIDE_NOTE: `text_tower` aliases `model` (or `model.text`), so every text parameter
# has two names. With functional_call's default tie_weights=True the substituted tensor is
# not swapped back afterwards (the frozen Parameter stays replaced by a graph-carrying
# tensor). tie_weights=False restores it; the alias still sees the override because both
# names lead to the same module object.
PixelHook = Callable[[Tensor], Tensor]


def clean_classname(name: str) -> str:
    """A class name as every text path writes it: ``golden_retriever`` -> ``golden retriever``.

    The one place this rule lives. Every official codebase (CoOp, CoCoOp, KgCoOp, the MaPLe
    repository's IVLP/VPT/MaPLe, CLIP-Adapter, Tip-Adapter, CLIP-LoRA, MMA) replaces ``_`` by a
    space before tokenising, in its prompt learner *and* in its hand-written classifier; so do
    :func:`class_prompt` and the prompt learner here. Method and result rows keep the name as given.
    """
    return name.replace("_", " ")


def class_prompt(template: str, name: str) -> str:
    """The hand-written prompt for one class: ``template`` (one ``{}``) with the cleaned name."""
    return template.format(clean_classname(name))


def _additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """A boolean mask (True = may not attend, PyTorch's convention) as an additive float mask."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


def _with_extra_mask(own: Tensor | None, extra: Tensor | None, transformer: nn.Module, dtype: torch.dtype) -> Tensor | None:
    """The tower's own attention mask (None, or CLIP's causal ``[L, L]``) plus a method's
    ``extra`` mask: ``[L, L]`` for every sequence, or ``[N, L, L]`` one per sequence
    (expanded here to the ``[N * heads, L, L]`` layout of ``nn.MultiheadAttention``).
    Additive floats (``-inf`` blocks) or booleans (True blocks)."""
    if extra is None:
        return own
    extra = _additive(extra, dtype)
    if extra.dim() == 3:
        heads = transformer.resblocks[0].attn.num_heads
        extra = extra.repeat_interleave(heads, dim=0)
    elif extra.dim() != 2:
        raise ValueError(f"attn_mask must be [L, L] or [N, L, L], got {tuple(extra.shape)}")
    return extra if own is None else own.to(dtype) + extra


def _run_blocks(transformer: nn.Module, x: Tensor, attn_mask: Tensor | None, hook: LayerHook | None) -> Tensor:
    """Run ``transformer.resblocks`` on batch-first ``x``, calling ``hook(i, x)`` before
    block ``i`` and once more after the last block (``i == len(resblocks)``).
    ``attn_mask`` (None, ``[L, L]`` or ``[N * heads, L, L]``) goes to every block."""
    batch_first = getattr(transformer, "batch_first", False)
    blocks = transformer.resblocks
    for i, block in enumerate(blocks):
        if hook is not None:
            x = hook(i, x)
        if attn_mask is not None and attn_mask.shape[-1] != x.shape[1]:
            raise ValueError(f"attention mask for {attn_mask.shape[-1]} tokens, but block {i} sees {x.shape[1]}")
        if batch_first:
            x = block(x, attn_mask=attn_mask)
        else:
            x = block(x.transpose(0, 1), attn_mask=attn_mask).transpose(0, 1)
    if hook is not None:
        x = hook(len(blocks), x)
    return x


def _project(x: Tensor, projection: nn.Module | Tensor | None) -> Tensor:
    if projection is None:
        return x
    if isinstance(projection, nn.Linear):
        return projection(x)
    return x @ projection


def _attention_pool_all(pool: nn.Module, feats: Tensor) -> Tensor:
    """open_clip's ``AttentionPool2d`` with every position as a query: ``[B, 1 + HW, E]``,
    row 0 being exactly what the module returns (the same call, all rows kept). The other
    rows are the ResNet's local features in the joint space (PLOT's RN50 patch features)."""
    x = feats.reshape(feats.shape[0], feats.shape[1], -1).permute(2, 0, 1)  # NCHW -> (HW)NC
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
    x = x + pool.positional_embedding[:, None, :].to(x.dtype)
    x, _ = F.multi_head_attention_forward(
        query=x, key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias, use_separate_proj_weight=True, training=pool.training, need_weights=False,
    )
    return x.permute(1, 0, 2)


class Backbone(nn.Module):
    """A frozen open_clip ``CLIP`` or ``CustomTextCLIP`` with method hooks.

    Every size is read off the model, never assumed: text and vision widths, depths,
    context length, embedding size, image and patch size.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Callable[..., Tensor],
        *,
        name: str,
        pretrained: str | None,
        weights_id: str,
    ) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.pretrained = pretrained
        self.weights_id = weights_id  # identifies the weights in feature-cache keys
        # Set by the factory (vlmeft.backbone.weights): the open_clip config when the weights
        # brought their own, and what the user should read about how the weights resolved.
        self.model_cfg: dict | None = None
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.last_vision_seq_len: int | None = None
        self._zero_shot_cache: dict[tuple[tuple[str, ...], tuple[str, ...]], Tensor] = {}

        # open_clip's CustomTextCLIP keeps the text tower under `.text`; CLIP flattens it.
        self.text_tower: nn.Module = getattr(model, "text", model)
        text = self.text_tower
        self.text_width: int = text.ln_final.weight.shape[0]
        self.text_layers: int = len(text.transformer.resblocks)
        self.context_length: int = int(getattr(text, "context_length", text.positional_embedding.shape[0]))
        visual = model.visual
        self.embed_dim: int = int(visual.output_dim)
        self.is_vit: bool = hasattr(visual, "conv1") and hasattr(visual, "transformer") and hasattr(visual, "class_embedding")
        size = visual.image_size
        self.image_size: int = int(size[0] if isinstance(size, (tuple, list)) else size)
        if self.is_vit:
            self.vision_width: int = visual.conv1.out_channels
            self.vision_layers: int = len(visual.transformer.resblocks)
            patch = visual.patch_size
            self.patch_size: int = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
            self.num_patches: int = visual.positional_embedding.shape[0] - 1
        else:
            self.vision_width = 0
            self.vision_layers = 0
            self.patch_size = 0
            self.num_patches = 0
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        self.mean: tuple[float, ...] = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.std: tuple[float, ...] = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))

    # The wrapped model stays in eval mode: dropout or patch dropout would make the
    # "frozen" features stochastic and break exact feature caching.
    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        self.model.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.model.logit_scale.device

    @property
    def dtype(self) -> torch.dtype:
        return self.text_tower.transformer.get_cast_dtype()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pretrained": self.pretrained,
            "weights_id": self.weights_id,
            "embed_dim": self.embed_dim,
            "text_width": self.text_width,
            "text_layers": self.text_layers,
            "context_length": self.context_length,
            "is_vit": self.is_vit,
            "vision_width": self.vision_width,
            "vision_layers": self.vision_layers,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
        }

    def require_vit(self, who: str) -> None:
        if not self.is_vit:
            raise VlmeftError(
                f"{who} needs vision tokens, but backbone '{self.name}' has a ResNet image tower "
                "with no token sequence; use a ViT backbone"
            )

    # ------------------------------------------------------------------ text
    def tokenize(self, texts: Sequence[str]) -> Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def token_embedding(self, tokens: Tensor) -> Tensor:
        """Token embeddings ``[N, L, Dt]`` without positions (what CoOp edits)."""
        return self.text_tower.token_embedding(tokens).to(self.dtype)

    def encode_text(
        self,
        tokens: Tensor,
        *,
        embeddings: Tensor | None = None,
        layer_hook: LayerHook | None = None,
        weight_overrides: Mapping[str, Tensor] | None = None,
        normalize: bool = False,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """Text features ``[N, E]``.

        ``embeddings`` replaces the token-embedding output (same shape); positions are
        added here. ``tokens`` still locate the end-of-text token for pooling.
        ``attn_mask`` (``[L, L]`` or per sequence ``[N, L, L]``; additive floats with ``-inf``,
        or booleans with True = may not attend) is added to the tower's own (causal) mask.
        """
        if weight_overrides:
            return torch.func.functional_call(
                self, dict(weight_overrides), ("text", tokens),
                {"embeddings": embeddings, "layer_hook": layer_hook, "normalize": normalize, "attn_mask": attn_mask},
                strict=False, tie_weights=False,  # see _OVERRIDE_NOTE
            )
        return self._encode_text(tokens, embeddings, layer_hook, normalize, attn_mask)

    def _encode_text(self, tokens: Tensor, embeddings: Tensor | None, hook: LayerHook | None, normalize: bool,
                     extra_mask: Tensor | None = None) -> Tensor:
        text = self.text_tower
        cast = self.dtype
        if text is self.model:  # CLIP: flattened text tower, causal mask buffer
            x = self.token_embedding(tokens) if embeddings is None else embeddings.to(cast)
            # Sequences may be shorter than the context (prompt learners trim the padding
            # after EOT, which a causal mask makes exact): positions and mask follow x.
            seq_len = x.shape[1]
            x = x + text.positional_embedding[:seq_len].to(cast)
            attn_mask = text.attn_mask
            if attn_mask is not None and attn_mask.shape[0] != seq_len:
                attn_mask = attn_mask[:seq_len, :seq_len]
            attn_mask = _with_extra_mask(attn_mask, extra_mask, text.transformer, x.dtype)
            x = _run_blocks(text.transformer, x, attn_mask, hook)
            x = text.ln_final(x)
            pool_type, eos = text.text_pool_type, getattr(text, "text_eos_id", None)
            from open_clip.transformer import text_global_pool

            x = text_global_pool(x, tokens, pool_type, eos_token_id=eos)
        else:  # TextTransformer (CustomTextCLIP): reuse its own mask logic
            if getattr(text, "cls_emb", None) is not None and embeddings is not None:
                raise VlmeftError(f"text prompts are not supported on '{self.name}': its text tower appends a class token")
            x_default, attn_mask = text._embeds(tokens)
            if embeddings is None:
                x = x_default
            else:
                seq_len = embeddings.shape[1]
                x = embeddings.to(cast) + text.positional_embedding[:seq_len].to(cast)
            attn_mask = _with_extra_mask(attn_mask, extra_mask, text.transformer, x.dtype)
            x = _run_blocks(text.transformer, x, attn_mask, hook)
            from open_clip.transformer import text_global_pool

            if getattr(text, "cls_emb", None) is not None:
                x = text.ln_final(text_global_pool(x, pool_type="last"))
            else:
                x = text.ln_final(x)
                x = text_global_pool(x, tokens, pool_type=text.pool_type, eos_token_id=getattr(text, "eos_id", None))
        x = _project(x, text.text_projection)
        return F.normalize(x, dim=-1) if normalize else x

    # ----------------------------------------------------------------- image
    def encode_image(
        self,
        images: Tensor,
        *,
        pixel_hook: PixelHook | None = None,
        prompt_tokens: Tensor | None = None,
        layer_hook: LayerHook | None = None,
        weight_overrides: Mapping[str, Tensor] | None = None,
        normalize: bool = False,
        return_tokens: bool = False,
        attn_mask: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Image features ``[B, E]`` (and projected patch tokens ``[B, P, E]``; on a ResNet
        tower, the attention pool's output at each of the ``P`` final-grid positions).

        ``prompt_tokens [B|1, P, Dv]`` go after the patch tokens and before ``ln_pre``
        (MaPLe's order); they are dropped before pooling, so 'avg' pooling is unaffected.
        ``attn_mask`` (``[L, L]`` or per image ``[B, L, L]`` over the whole sequence, prompts
        included; additive floats or booleans with True = may not attend) goes to every block.
        """
        if weight_overrides:
            kwargs = {"pixel_hook": pixel_hook, "prompt_tokens": prompt_tokens, "layer_hook": layer_hook,
                      "normalize": normalize, "return_tokens": return_tokens, "attn_mask": attn_mask}
            return torch.func.functional_call(self, dict(weight_overrides), ("image", images), kwargs, strict=False,
                                              tie_weights=False)  # see _OVERRIDE_NOTE
        return self._encode_image(images, pixel_hook, prompt_tokens, layer_hook, normalize, return_tokens, attn_mask)

    def _encode_image(
        self,
        images: Tensor,
        pixel_hook: PixelHook | None,
        prompt_tokens: Tensor | None,
        hook: LayerHook | None,
        normalize: bool,
        return_tokens: bool,
        extra_mask: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        visual = self.model.visual
        if pixel_hook is not None:
            images = pixel_hook(images)
        if not self.is_vit:
            if prompt_tokens is not None or hook is not None or extra_mask is not None:
                self.require_vit("this method")
            self.last_vision_seq_len = None
            if return_tokens:  # local features: the attention pool's output at every position
                stages = (visual.stem, visual.layer1, visual.layer2, visual.layer3, visual.layer4)
                x = images.to(self.dtype)
                for stage in stages:
                    x = stage(x)
                pooled_all = _attention_pool_all(visual.attnpool, x)
                pooled, tokens = pooled_all[:, 0], pooled_all[:, 1:]
                return (F.normalize(pooled, dim=-1) if normalize else pooled), tokens
            pooled = visual(images.to(self.dtype))
            return F.normalize(pooled, dim=-1) if normalize else pooled

        x = visual.conv1(images.to(visual.conv1.weight.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [B, grid**2, width]
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.patch_dropout(x)
        n_prompts = 0
        if prompt_tokens is not None:
            n_prompts = prompt_tokens.shape[1]
            x = torch.cat([x, prompt_tokens.to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
        x = visual.ln_pre(x)
        x = _run_blocks(visual.transformer, x, _with_extra_mask(None, extra_mask, visual.transformer, x.dtype), hook)
        self.last_vision_seq_len = x.shape[1]
        if n_prompts:
            x = x[:, : x.shape[1] - n_prompts]
        elif x.shape[1] != 1 + self.num_patches:
            # A layer hook appended tokens of its own (VPT-deep style): drop them too.
            x = x[:, : 1 + self.num_patches]
        pooled, tokens = visual._pool(x)
        pooled = _project(pooled, visual.proj)
        if normalize:
            pooled = F.normalize(pooled, dim=-1)
        if return_tokens:
            return pooled, _project(tokens, visual.proj)
        return pooled

    def forward(self, kind: str, *args: Any, **kwargs: Any) -> Any:
        """Dispatch used by ``torch.func.functional_call`` for weight overrides."""
        if kind == "text":
            return self._encode_text(args[0], kwargs["embeddings"], kwargs["layer_hook"], kwargs["normalize"],
                                     kwargs["attn_mask"])
        if kind == "image":
            return self._encode_image(
                args[0], kwargs["pixel_hook"], kwargs["prompt_tokens"], kwargs["layer_hook"],
                kwargs["normalize"], kwargs["return_tokens"], kwargs["attn_mask"],
            )
        raise ValueError(kind)

    # ------------------------------------------------------- token features
    def text_token_features(self, hidden: Tensor) -> Tensor:
        """Hidden states ``[.., Dt]`` after the text tower's last block (as a final
        ``layer_hook`` sees them) -> ``[.., E]`` through the tower's own final norm and
        projection: the feature any token would give if it were the pooled one."""
        text = self.text_tower
        return _project(text.ln_final(hidden), text.text_projection)

    def vision_token_features(self, hidden: Tensor) -> Tensor:
        """Hidden states ``[.., Dv]`` after the image tower's last block -> ``[.., E]``
        through ``ln_post`` and the projection (the path of the pooled class token)."""
        self.require_vit("vision token features")
        visual = self.model.visual
        if getattr(visual, "attn_pool", None) is not None:
            raise VlmeftError(f"backbone '{self.name}' pools with attention; its tokens have no per-token feature")
        return _project(visual.ln_post(hidden), visual.proj)

    # ----------------------------------------------------------------- heads
    def logit_scale(self) -> Tensor:
        return self.model.logit_scale.exp()

    @torch.no_grad()
    def zero_shot_weights(self, classnames: Sequence[str], templates: Sequence[str], chunk: int = 512) -> Tensor:
        """Frozen zero-shot classifier ``[C, E]``: per class, the normalised mean of the
        normalised template embeddings (CLIP's prompt ensembling). Cached per label set."""
        key = (tuple(classnames), tuple(templates))
        cached = self._zero_shot_cache.get(key)
        if cached is not None:
            return cached
        prompts = [[class_prompt(t, c) for t in templates] for c in classnames]
        weights = F.normalize(self.class_prompt_means(prompts, chunk), dim=-1)
        if len(self._zero_shot_cache) > 32:
            self._zero_shot_cache.clear()
        self._zero_shot_cache[key] = weights
        return weights

    @torch.no_grad()
    def class_prompt_means(self, prompts: Sequence[Sequence[str]], chunk: int = 512) -> Tensor:
        """Per class, the mean of the normalised frozen embeddings of its own prompts
        ``[C, E]``, *not* re-normalised (its norm is what descriptor methods that average
        similarities need). Classes may have different numbers of prompts (descriptor
        lists); every class needs at least one."""
        counts = [len(p) for p in prompts]
        if any(n == 0 for n in counts):
            raise VlmeftError(f"class {counts.index(0)} has no prompt to encode")
        flat = [text for p in prompts for text in p]
        feats = torch.cat(
            [self.encode_text(self.tokenize(flat[i : i + chunk]), normalize=True) for i in range(0, len(flat), chunk)]
        )
        if len(set(counts)) == 1:  # one reshape for a template ensemble
            return feats.view(len(prompts), counts[0], -1).mean(dim=1)
        return torch.stack([part.mean(dim=0) for part in feats.split(counts)])
