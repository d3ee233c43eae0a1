"""Shared mechanics of the learnable prompt methods (CoOp, CoCoOp, KgCoOp, VPT, IVLP, MaPLe).

Two pieces, used by every prompt method so that none of them re-implements the other's:

* :class:`TextPromptLearner` builds the class prompts ``[SOS] ctx_1 .. ctx_n <class name> . [EOT]``
  as token embeddings ``[C, L, Dt]`` with learnable context vectors ``ctx`` in positions
  ``1..n`` (class token at the end). The frozen parts, the SOS embedding (prefix) and the
  embeddings of the class name, the full stop, EOT and padding (suffix), are
  non-persistent buffers rebuilt from class names, so trained contexts move between label
  sets (base -> novel) with no checkpoint surgery. On causal EOT-pooled text towers the
  padding after the longest prompt's EOT is dropped (exact, and several times cheaper). An optional per-image shift ``[B, Dt]``
  (CoCoOp's Meta-Net output) gives ``[B, C, L, Dt]`` prompts, encoded batched in passes of
  bounded size (:meth:`TextPromptLearner.conditioned`), in training and evaluation alike; so
  do ``n_prompts = K`` independent contexts (PLOT, ProDA: ``[K, C, L, Dt]``) and per-entry
  contexts passed in for one call (TPT's per-image copies).
* :func:`deep_prompt_hook` turns a list of per-layer prompts into a ``layer_hook`` for the
  backbone: before block ``i`` (``1 <= i < depth``) it *replaces* the tokens that carry the
  previous layer's prompts, positions ``1..n`` right after SOS on the text side, the last
  ``n`` tokens of the sequence on the vision side (the placement of the MaPLe repository's
  IVLP, VPT-deep and MaPLe blocks). Layer-0 prompts enter with the input instead: text
  ones through the prompt learner's embeddings, vision ones as ``prompt_tokens``.

Depths are read against the backbone's layer counts with :func:`resolve_depth`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from vlmeft.backbone.wrapper import Backbone, clean_classname
from vlmeft.errors import VlmeftError

PROMPT_INIT_STD = 0.02  # CoOp, VPT (MaPLe repo), IVLP and MaPLe all draw prompts from N(0, 0.02^2)
# An image-conditioned pass of B*C prompts holds at most this many tokens, which bounds its
# activations (ViT-B/16's text tower: about 0.5 GB in fp32) whatever B and C are.
TEXT_TOKENS_PER_PASS = 32_768


def resolve_depth(depth: int, layers: int, *, field: str, tower: str) -> int:
    """The number of layers that carry prompts: ``depth`` clipped to the tower's ``layers``.

    Paper depths (MaPLe 9, IVLP/VPT 12) are meant for 12-layer towers; clipping lets the
    same defaults run on the 4-layer embedded backbone (there: prompts in every layer).
    A depth below 1 cannot work and raises.
    """
    if depth < 1:
        raise VlmeftError(f"{field} must be at least 1 (prompts enter at the input), got {depth}", where="--set")
    if layers < 1:
        raise VlmeftError(f"{field}: the {tower} tower has no transformer layers to prompt")
    return min(depth, layers)


def new_prompt(shape: Sequence[int], backbone: Backbone, std: float = PROMPT_INIT_STD) -> nn.Parameter:
    """A learnable prompt tensor on the backbone's device, drawn from N(0, std^2)."""
    return nn.Parameter(torch.randn(*shape, device=backbone.device) * std)


def prompt_stack(count: int, n_tokens: int, width: int, backbone: Backbone) -> nn.ParameterList:
    """``count`` independent per-layer prompts of shape ``[n_tokens, width]``."""
    return nn.ParameterList([new_prompt((n_tokens, width), backbone) for _ in range(count)])


def deep_prompt_hook(
    prompts: Sequence[Tensor], where: Literal["after_sos", "end"]
) -> Callable[[int, Tensor], Tensor]:
    """A ``layer_hook`` that, before block ``i`` for ``1 <= i <= len(prompts)``, replaces the
    prompt tokens with ``prompts[i - 1]`` (``[n, D]``, shared by the batch, or ``[N, n, D]``).

    ``where="after_sos"``: text side, positions ``1..n`` (the layer-0 context sits there).
    ``where="end"``: vision side, the last ``n`` tokens (where ``prompt_tokens`` were appended).
    Replacement, not insertion: the sequence length stays fixed after the input layer.
    """
    if where not in ("after_sos", "end"):
        raise ValueError(where)

    def hook(i: int, x: Tensor) -> Tensor:
        if i < 1 or i > len(prompts):
            return x
        p = prompts[i - 1].to(x.dtype)
        if p.dim() == 2:
            p = p.expand(x.shape[0], -1, -1)
        n = p.shape[1]
        if where == "after_sos":
            return torch.cat([x[:, :1], p, x[:, 1 + n :]], dim=1)
        return torch.cat([x[:, : x.shape[1] - n], p], dim=1)

    return hook


def _eot_pooled_causal(backbone: Backbone) -> bool:
    """Whether text features are read at the EOT position (argmax pooling) of a causal
    CLIP text tower, so positions after EOT cannot change them."""
    text = backbone.text_tower
    return (
        text is backbone.model
        and getattr(text, "attn_mask", None) is not None
        and getattr(text, "text_pool_type", None) == "argmax"
    )


def count_text_tokens(backbone: Backbone, text: str) -> int:
    """BPE tokens of ``text`` without SOS/EOT (as the backbone's tokenizer splits it)."""
    tokens = backbone.tokenize([text])[0]
    return int((tokens != 0).sum().item()) - 2


class TextPromptLearner(nn.Module):
    """Learnable text context for the class prompts (CoOp's prompt learner, class at the end).

    ``ctx`` is ``[n_ctx, Dt]`` (unified: one context shared by all classes) or
    ``[C, n_ctx, Dt]`` (``csc``: class-specific). With ``ctx_init`` (e.g. "a photo of a") the
    prompt text is ``"{ctx_init} {class}."`` and the first ``n_ctx`` tokens of ``ctx_init``
    become the learnable context, initialised from their own embeddings; any remaining
    init tokens stay frozen in the suffix (MaPLe's 2 learnable tokens out of "a photo of a").
    Without it, the prompt text is ``"X X .. X {class}."`` and ``ctx`` is drawn from N(0, 0.02^2).

    How long the context is with ``ctx_init`` set follows the official prompt learners:
    ``n_ctx_from_init=True`` is CoOp's and CoCoOp's rule, the init text's *word count* sets
    ``n_ctx`` (the ``n_ctx`` argument is ignored: "a photo of a" gives 4 vectors whatever it
    says); ``False`` is the MaPLe repository's (IVLP, MaPLe), ``n_ctx`` stays as given and takes
    the first ``n_ctx`` tokens of the init (more than the init has is an error here; the official
    code silently falls back to random context above 4).
    Class names are cleaned by :func:`~vlmeft.backbone.wrapper.clean_classname`.
    With ``learnable=False`` the context is a buffer and the caller passes its own to
    ``forward`` (a context generated by another module).
    ``n_prompts = K > 1`` learns ``K`` unified contexts ``[K, n_ctx, Dt]`` (several prompts per
    class: PLOT, ProDA), each initialised as above.
    """

    prefix: Tensor
    suffix: Tensor
    tokens: Tensor
    tokens_per_pass: int = TEXT_TOKENS_PER_PASS  # bound of :meth:`conditioned` (settable per instance)
    # Drop the padding after EOT (exact on causal towers). False reproduces the reference
    # codebases' full-context pass (benchmarks time it); call set_classnames after changing it.
    trim_padding: bool = True

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        *,
        n_ctx: int,
        ctx_init: str = "",
        csc: bool = False,
        n_ctx_from_init: bool = False,
        learnable: bool = True,
        n_prompts: int = 1,
    ) -> None:
        super().__init__()
        object.__setattr__(self, "backbone", backbone)  # by reference, outside the module tree
        ctx_init = " ".join(ctx_init.replace("_", " ").split())
        if ctx_init and n_ctx_from_init:
            n_ctx = len(ctx_init.split(" "))  # CoOp/CoCoOp: one context vector per init word
        if n_ctx < 1:
            raise VlmeftError(f"n_ctx must be at least 1, got {n_ctx}", where="--set")
        if n_ctx + 2 > backbone.context_length:
            raise VlmeftError(
                f"n_ctx={n_ctx} leaves no room for the class name in the {backbone.context_length}-token text context",
                where="--set",
            )
        if n_prompts < 1:
            raise VlmeftError(f"the number of prompts must be at least 1, got {n_prompts}", where="--set")
        if csc and n_prompts > 1:
            raise VlmeftError("class-specific context (csc) and several prompts per class do not combine", where="--set")
        self.n_ctx = n_ctx
        self.csc = csc
        self.n_prompts = n_prompts
        width = backbone.text_width
        if ctx_init:
            available = count_text_tokens(backbone, ctx_init)
            if n_ctx > available:
                raise VlmeftError(
                    f"n_ctx={n_ctx} exceeds the {available} tokens of ctx_init {ctx_init!r}; "
                    "lower n_ctx or set ctx_init to '' for random context",
                    where="--set",
                )
            with torch.no_grad():
                init = backbone.token_embedding(backbone.tokenize([ctx_init]))[0, 1 : 1 + n_ctx].float()
            copies = len(classnames) if csc else n_prompts
            ctx = init.expand(copies, -1, -1).clone() if csc or n_prompts > 1 else init.clone()
            self.prompt_prefix = ctx_init
        else:
            lead = (len(classnames),) if csc else (n_prompts,) if n_prompts > 1 else ()
            shape = (*lead, n_ctx, width)
            ctx = torch.randn(*shape, device=backbone.device) * PROMPT_INIT_STD
            self.prompt_prefix = " ".join(["X"] * n_ctx)
        if learnable:
            self.ctx = nn.Parameter(ctx.to(backbone.device))
        else:  # the context comes from elsewhere (``forward(ctx=...)``, UPT's shared generator)
            self.register_buffer("ctx", ctx.to(backbone.device), persistent=False)
        self.set_classnames(classnames)

    @property
    def n_classes(self) -> int:
        return self.tokens.shape[0]

    def set_classnames(self, classnames: Sequence[str]) -> None:
        """Rebuild the frozen prefix/suffix buffers for a new label set."""
        if self.csc and len(classnames) != self.ctx.shape[0]:
            raise VlmeftError(
                f"class-specific context was built for {self.ctx.shape[0]} classes and cannot serve "
                f"{len(classnames)}; train with csc=false to move between label sets"
            )
        backbone: Backbone = self.backbone
        texts = [f"{self.prompt_prefix} {clean_classname(name)}." for name in classnames]
        encode = getattr(backbone.tokenizer, "encode", None)
        if callable(encode):
            for name, text in zip(classnames, texts, strict=True):
                if len(encode(text)) + 2 > backbone.context_length:
                    raise VlmeftError(
                        f"the prompt for class {name!r} is longer than the {backbone.context_length}-token text context"
                    )
        tokens = backbone.tokenize(texts)
        if self.trim_padding and _eot_pooled_causal(backbone):
            # Under a causal mask the pooled EOT token never sees the padding after it:
            # dropping those positions is exact and cuts the text pass (77 -> ~10 tokens
            # for short prompts on OpenAI-style towers), which CoCoOp pays B times a step.
            tokens = tokens[:, : int(tokens.argmax(dim=-1).max()) + 1]
        with torch.no_grad():
            embedded = backbone.token_embedding(tokens)
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("prefix", embedded[:, :1].clone(), persistent=False)
        self.register_buffer("suffix", embedded[:, 1 + self.n_ctx :].clone(), persistent=False)

    def forward(self, shift: Tensor | None = None, classes: slice = slice(None), ctx: Tensor | None = None) -> Tensor:
        """Prompt embeddings ``[C, L, Dt]`` (``classes`` selects a contiguous subset of the classes).

        * ``shift [B, Dt]`` added to every context vector: ``[B, C, L, Dt]`` (CoCoOp);
        * ``ctx`` shaped as ``self.ctx`` replaces the own context for this call (UPT's
          generated context); for a unified context, ``ctx [B, n_ctx, Dt]`` gives one whole
          context per entry, ``[B, C, L, Dt]`` (TPT's per-image copies);
        * ``n_prompts = K > 1``: ``[K, C, L, Dt]``.
        """
        prefix = self.prefix[classes]
        n_cls = prefix.shape[0]
        if ctx is not None and ctx.shape != self.ctx.shape:
            if shift is not None:
                raise ValueError("pass a shift or whole contexts, not both")
            if self.ctx.dim() != 2 or ctx.dim() != 3:
                raise ValueError(f"ctx must be shaped {tuple(self.ctx.shape)} (the own context) or, for a unified "
                                 f"context, [B, n_ctx, Dt]; got {tuple(ctx.shape)}")
            return self._per_entry(ctx.to(prefix.dtype).unsqueeze(1).expand(-1, n_cls, -1, -1), classes)
        own = (self.ctx if ctx is None else ctx).to(prefix.dtype)
        if self.n_prompts > 1:
            if shift is not None:
                raise ValueError("a per-image shift needs a single context")
            return self._per_entry(own.unsqueeze(1).expand(-1, n_cls, -1, -1), classes)
        if own.dim() == 3:  # class-specific
            own = own[classes]
        if shift is None:
            if own.dim() == 2:
                own = own.expand(n_cls, -1, -1)
            return torch.cat([prefix, own, self.suffix[classes]], dim=1)
        shift = shift.to(own.dtype)
        if own.dim() == 2:  # [B, 1, n, D]: one shifted context per image, shared by the classes
            per = (own.unsqueeze(0) + shift[:, None, :]).unsqueeze(1).expand(-1, n_cls, -1, -1)
        else:  # class-specific: [B, C, n, D]
            per = own.unsqueeze(0) + shift[:, None, None, :]
        return self._per_entry(per, classes)

    def _per_entry(self, ctx: Tensor, classes: slice = slice(None)) -> Tensor:
        """``[B, C, n_ctx, Dt]`` contexts -> ``[B, C, L, Dt]`` prompts."""
        batch = ctx.shape[0]
        prefix = self.prefix[classes].unsqueeze(0).expand(batch, -1, -1, -1)
        suffix = self.suffix[classes].unsqueeze(0).expand(batch, -1, -1, -1)
        return torch.cat([prefix, ctx, suffix], dim=2)

    def encode(
        self,
        prompts: Tensor,
        layer_hook: Callable[[int, Tensor], Tensor] | None = None,
        classes: slice = slice(None),
    ) -> Tensor:
        """Normalised text features of ``forward``'s output: ``[C, E]`` or ``[B, C, E]``.

        A ``[B, C, L, Dt]`` batch runs as one ``[B*C, L, Dt]`` pass through the text encoder;
        :meth:`conditioned` bounds that pass for large ``B*C``.
        """
        backbone: Backbone = self.backbone
        tokens = self.tokens[classes]
        if prompts.dim() == 3:
            return backbone.encode_text(tokens, embeddings=prompts, layer_hook=layer_hook, normalize=True)
        batch, n_cls = prompts.shape[:2]
        flat = prompts.reshape(batch * n_cls, *prompts.shape[2:])
        feats = backbone.encode_text(tokens.repeat(batch, 1), embeddings=flat, layer_hook=layer_hook, normalize=True)
        return feats.view(batch, n_cls, -1)

    def conditioned(
        self,
        shift: Tensor,
        image_features: Tensor | None = None,
        layer_hook: Callable[[int, Tensor], Tensor] | None = None,
    ) -> Tensor:
        """The image-conditioned text side (CoCoOp and kin) in bounded passes.

        Without ``image_features``: the normalised text features ``[B, C, E]`` of the prompts
        shifted by ``shift [B, Dt]``. With ``image_features [B, E]``: the scores
        ``image . text`` ``[B, C]`` (times the logit scale, the logits), computed pass by pass
        so that no more than one pass's ``[b, c, E]`` features ever exist.

        A pass holds at most ``tokens_per_pass`` tokens (``B*C`` sequences of the trimmed prompt
        length): whole images while their classes fit (ImageNet's 1,000 classes at ~10 tokens
        are one image's worth of 10k), else slices of one image's classes. Passes are evenly
        sized (kernels then see the same shapes) and, when autograd records, each is
        checkpointed: its activations are recomputed in the backward pass instead of kept, so
        training memory is bounded too. A batch that fits in one pass runs the plain batched
        pass, unchanged.
        """
        batch, n_cls = shift.shape[0], self.n_classes
        per_pass = max(1, self.tokens_per_pass // self.tokens.shape[1])  # sequences per pass

        def run(b: slice, c: slice, shift_b: Tensor, feats_b: Tensor | None) -> Tensor:
            text = self.encode(self(shift_b, c), layer_hook, c)
            return text if feats_b is None else torch.einsum("be,bce->bc", feats_b, text)

        if batch * n_cls <= per_pass:
            return run(slice(None), slice(None), shift, image_features)
        if n_cls <= per_pass:  # whole images per pass, at most per_pass // n_cls of them
            images = _even_chunks(batch, math.ceil(batch / (per_pass // n_cls)))
            classes = [slice(0, n_cls)]
        else:  # one image per pass, its classes sliced
            images = _even_chunks(batch, batch)
            classes = [slice(a, b) for a, b in _even_bounds(n_cls, math.ceil(n_cls / per_pass))]
        checkpoint = torch.is_grad_enabled()
        rows = []
        for b in images:
            shift_b = shift[b]
            feats_b = None if image_features is None else image_features[b]
            parts = []
            for c in classes:
                if checkpoint:
                    parts.append(torch.utils.checkpoint.checkpoint(run, b, c, shift_b, feats_b, use_reentrant=False))
                else:
                    parts.append(run(b, c, shift_b, feats_b))
            rows.append(torch.cat(parts, dim=1))
        return torch.cat(rows, dim=0)



def _even_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``0..n`` whose sizes differ by at most one."""
    parts = max(1, min(parts, n))
    size, extra = divmod(n, parts)
    bounds, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def _even_chunks(n: int, parts: int) -> list[slice]:
    return [slice(a, b) for a, b in _even_bounds(n, parts)]
