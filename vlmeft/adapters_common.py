"""Mechanics shared by the adapter methods: nothing method-specific.

* :class:`ReencodedTextMixin`: for methods whose *text tower itself* changes (LoRA in the
  text encoder, adapters in its blocks). The class prompts must then be re-encoded through
  the adapted tower on every training step; at evaluation time the base class's
  ``class_text_features`` caches them.
* :func:`transformer_blocks`: the residual blocks of each tower that has them.
* :func:`scale_grad`: identity forward, scaled gradient backward.
* :func:`raw_text_prototypes`: the un-normalised template-mean text features that
  TaskRes, CLAP and GraphAdapter start from.
* :class:`SupportSetMixin`: a few-shot support set kept by class name (Tip-Adapter, APE,
  Meta-Adapter, GraphAdapter), with :func:`search_cache_blend` / :func:`official_grid`
  (the val search of Tip-Adapter's and APE's releases) and :func:`require_class_count`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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



@torch.no_grad()
def raw_text_prototypes(backbone: Backbone, classnames: Sequence[str], templates: Sequence[str],
                        chunk: int = 512) -> Tensor:
    """Per class, the mean of its prompts' *un-normalised* text features ``[C, E]``.

    TaskRes, CLAP and GraphAdapter start from this "base" classifier (their
    ``_get_base_text_features``: the text encoder's output averaged over templates, never
    normalised), so the size of a learned residual or of a distance to it is measured
    against the raw feature norm, not against unit vectors. Zero-shot CLIP's classifier
    (:meth:`Backbone.zero_shot_weights`) normalises before and after the mean instead.
    """
    templates = list(templates) or ["{}"]
    prompts = [class_prompt(t, c) for c in classnames for t in templates]
    feats = torch.cat([backbone.encode_text(backbone.tokenize(prompts[i : i + chunk]))
                       for i in range(0, len(prompts), chunk)]) if prompts else \
        torch.zeros(0, backbone.embed_dim, device=backbone.device, dtype=backbone.dtype)
    return feats.view(len(classnames), len(templates), -1).mean(dim=1)


def require_class_count(method, rows: int | None, what: str) -> None:  # noqa: ANN001
    """A learned tensor with one row per class (a residual, a prototype, a class bias)
    cannot serve a label set of another size: a one-line error instead of a shape crash.
    ``rows`` is None while the tensor does not exist yet (during ``__init__``)."""
    from vlmeft.errors import VlmeftError

    if rows is not None and rows != len(method.classnames):
        raise VlmeftError(f"{method.name} learned {what} for {rows} classes and cannot classify "
                          f"{len(method.classnames)} classes: it is class-specific")


def official_grid(top: float, steps: int, start: float = 0.1) -> Tensor:
    """``steps`` values from ``start`` in equal increments towards ``top``: the search grid
    of Tip-Adapter's and APE's releases, ``[i * (top - start) / steps + start for i in
    range(steps)]`` (``top`` itself is never reached)."""
    return torch.arange(steps, dtype=torch.float64) * (top - start) / steps + start


@torch.no_grad()
def search_cache_blend(zero_shot: Tensor, cache: Callable[[float], Tensor], labels: Tensor, alphas: Tensor,
                       betas: Tensor) -> tuple[float, float, float, int]:
    """The validation search of Tip-Adapter's and APE's releases.

    For each ``beta`` in order, the logits ``zero_shot + alpha * cache(beta)`` are scored for
    every ``alpha`` and for every option that the leading dimension of ``cache(beta)``
    holds (``[O, B, C]``, e.g. APE's gamma; ``[B, C]`` is one option). Returns ``(accuracy,
    alpha, beta, option)`` of the first best in the releases' loop order: beta, then
    alpha, then the option."""
    best = (-1.0, float(alphas[0]), float(betas[0]), 0)
    for beta in betas.tolist():
        votes = cache(beta)
        votes = votes.reshape(-1, *votes.shape[-2:])  # [O, B, C]
        logits = zero_shot + alphas.view(-1, 1, 1, 1) * votes.unsqueeze(0)  # [A, O, B, C]
        accs = (logits.argmax(-1) == labels).float().mean(-1).flatten()  # alpha-major
        i = int(accs.argmax())
        if float(accs[i]) > best[0]:
            best = (float(accs[i]), float(alphas[i // votes.shape[0]]), beta, i % votes.shape[0])
    return best


class SupportSetMixin:
    """A few-shot support set kept by class *name*, for a :class:`vlmeft.method.Method`.

    Cache and support methods (APE, Meta-Adapter, GraphAdapter) keep the normalised
    frozen features of the training images (``cache_keys [N, E]``) with the label of
    each (``cache_labels [N]``) and the class names those labels index. Switching the
    label set (base to novel) keeps the entries whose class is still present and drops
    the others, so no state has to be rebuilt by hand; a loaded checkpoint assumes the
    class names it is given are the ones its support set was built on.

    The host calls :meth:`init_support` in ``__init__`` before ``build_class_state``,
    and :meth:`set_support` from ``fit_cache``. Tensors whose first dimension follows the
    support size (the keys, the labels, APE-T's per-entry weights) are listed in
    ``support_sized``; :meth:`load_state_tensors` resizes them to the checkpoint's.
    """

    support_sized: tuple[str, ...] = ("cache_keys", "cache_labels")

    def init_support(self, learnable: bool = False) -> None:
        backbone = self.backbone
        empty = torch.zeros(0, backbone.embed_dim, device=backbone.device, dtype=backbone.dtype)
        if learnable:
            self.cache_keys = nn.Parameter(empty)
        else:
            self.register_buffer("cache_keys", empty)
        self.register_buffer("cache_labels", torch.zeros(0, dtype=torch.long, device=backbone.device))
        self._support_classnames: list[str] = list(self.classnames)

    def set_support(self, features: Tensor, labels: Tensor) -> None:
        """Store ``features [N, E]`` (normalised here) and their ``labels [N]`` over the
        current class names."""
        from vlmeft.errors import VlmeftError

        if features.dim() != 2 or labels.dim() != 1 or features.shape[0] != labels.shape[0]:
            raise VlmeftError(f"fit_cache expects [N, E] features and [N] labels, got "
                              f"{tuple(features.shape)}, {tuple(labels.shape)}")
        if features.shape[1] != self.backbone.embed_dim:
            raise VlmeftError(f"support features are {features.shape[1]}-wide; the backbone embeds "
                              f"{self.backbone.embed_dim}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(self.classnames)):
            raise VlmeftError(f"support labels must lie in [0, {len(self.classnames)})")
        keys = torch.nn.functional.normalize(features.detach().to(self.cache_keys), dim=-1).clone()
        if isinstance(self.cache_keys, nn.Parameter):
            self.cache_keys = nn.Parameter(keys)
        else:
            self.cache_keys = keys
        self.cache_labels = labels.detach().to(device=self.cache_labels.device, dtype=torch.long).clone()
        self._support_classnames = list(self.classnames)

    def fit_cache(self, features: Tensor, labels: Tensor) -> None:
        """The support set is the training set's frozen features."""
        self.set_support(features, labels)
        self.build_class_state()  # type: ignore[attr-defined]

    def support_index(self) -> Tensor:
        """The class of each support entry in the *current* label set ``[N]`` (-1: gone)."""
        index = {name: i for i, name in enumerate(self.classnames)}
        remap = torch.tensor([index.get(n, -1) for n in self._support_classnames] or [0],
                             dtype=torch.long, device=self.cache_labels.device)
        return remap[self.cache_labels] if self.cache_labels.numel() else self.cache_labels.clone()

    def support_onehot(self) -> Tensor:
        """One-hot values of the support entries over the current label set ``[N, C]``;
        an entry whose class is gone is a zero row."""
        target = self.support_index()
        values = torch.zeros(target.shape[0], len(self.classnames), device=self.cache_keys.device,
                             dtype=self.cache_keys.dtype)
        keep = target >= 0
        values[keep.nonzero().squeeze(1), target[keep]] = 1.0
        return values

    def load_state_tensors(self, tensors, where: str = "checkpoint") -> None:  # noqa: ANN001
        """Support-sized tensors take the checkpoint's size before the usual checks."""
        from vlmeft.errors import VlmeftError

        for name in self.support_sized:
            new, old = tensors.get(name), getattr(self, name, None)
            if new is None or old is None or new.shape == old.shape:
                continue  # same shape: keep the tensor objects (optimisers hold them)
            if new.dim() != old.dim() or new.shape[1:] != old.shape[1:]:
                raise VlmeftError(f"tensor '{name}' has shape {tuple(new.shape)}, method '{self.name}' expects "
                                  f"[N, {', '.join(map(str, old.shape[1:]))}]", where=where)
            blank = torch.zeros(new.shape, device=old.device, dtype=old.dtype)
            setattr(self, name, nn.Parameter(blank) if isinstance(old, nn.Parameter) else blank)
        keys, labels = tensors.get("cache_keys"), tensors.get("cache_labels")
        if keys is not None and labels is not None and labels.shape != keys.shape[:1]:
            raise VlmeftError(f"cache tensors of shape {tuple(keys.shape)}/{tuple(labels.shape)} disagree", where=where)
        super().load_state_tensors(tensors, where)  # type: ignore[misc]
        self._support_classnames = list(self.classnames)
        self.build_class_state()  # type: ignore[attr-defined]
