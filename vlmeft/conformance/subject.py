"""The thing under test: one registered method on one backbone, with seeded probe data.

Every probe and check builds its own fresh method instance from a :class:`Subject`, so a
probe that switches class names or trains cannot leak into another. Building is cheap on
the tiny backbones; what is expensive (the backbone itself) is shared.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from vlmeft import kinds, registry
from vlmeft.backbone.wrapper import Backbone
from vlmeft.method import Method, MethodConfig

# Small on purpose: the whole matrix must run in CI in minutes on 2 cores.
BASE_CLASSES = ["red circle", "blue square", "green triangle", "yellow star"]
OTHER_CLASSES = ["purple ring", "orange cross", "white heart", "black moon"]  # same count, other words
NOVEL_CLASSES = ["pink hexagon", "brown diamond", "grey arrow"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]
EXPRESSIONS = ["the red circle", "the blue square on the left"]
BATCH = 4
N_CACHE = 8  # frozen features handed to fit_cache (cache-based methods)
TOL = 1e-5  # two feature tensors "differ" when some entry differs by more than this


def differs(a: Tensor, b: Tensor, tol: float = TOL) -> bool:
    if a.shape != b.shape:
        return True
    return bool((a.detach().float() - b.detach().float()).abs().max() > tol)


def own_trainable(method: Method) -> list[tuple[str, torch.nn.Parameter]]:
    """``(name, parameter)`` of the method's own trainable tensors (its module tree)."""
    return [(n, p) for n, p in method.named_parameters() if p.requires_grad]


@dataclass
class ProbeData:
    """Seeded inputs at one backbone's resolution."""

    images: Tensor  # normalised [BATCH, 3, S, S]
    images_b: Tensor  # other images, same shape
    labels: Tensor  # [BATCH] in range(len(BASE_CLASSES))
    cache_images: Tensor  # [N_CACHE, 3, S, S]
    cache_labels: Tensor
    raw: np.ndarray  # uint8 [2, S, S, 3] for grounding methods
    raw_b: np.ndarray
    boxes: list[np.ndarray] = field(default_factory=list)  # per raw image, [3, 4] pixels

    @classmethod
    def for_backbone(cls, backbone: Backbone, seed: int = 0) -> ProbeData:
        g = torch.Generator().manual_seed(seed)
        s = backbone.image_size
        rng = np.random.default_rng(seed)
        third = s / 3
        boxes = [
            np.array([[1, 1, third, third], [third, third, 2 * third, 2 * third], [2 * third, 1, s - 1, third]], np.float32),
            np.array([[1, 2 * third, third, s - 1], [third, 1, 2 * third, third], [2 * third, 2 * third, s - 1, s - 1]], np.float32),
        ]
        return cls(
            images=torch.randn(BATCH, 3, s, s, generator=g),
            images_b=torch.randn(BATCH, 3, s, s, generator=g),
            labels=torch.arange(BATCH) % len(BASE_CLASSES),
            cache_images=torch.randn(N_CACHE, 3, s, s, generator=g),
            cache_labels=torch.arange(N_CACHE) % len(BASE_CLASSES),
            raw=rng.integers(0, 256, size=(2, s, s, 3), dtype=np.uint8),
            raw_b=rng.integers(0, 256, size=(2, s, s, 3), dtype=np.uint8),
            boxes=boxes,
        )

    def normalise(self, backbone: Backbone, raw: np.ndarray) -> Tensor:
        """uint8 ``[N, S, S, 3]`` -> the plain normalised encoder input (no marker)."""
        x = torch.from_numpy(raw).permute(0, 3, 1, 2).float().div(255.0)
        mean = torch.tensor(backbone.mean).view(1, 3, 1, 1)
        std = torch.tensor(backbone.std).view(1, 3, 1, 1)
        return (x - mean) / std


class Subject:
    """One method class, in one config (its defaults, or a declared conformance variant's
    settings on top), on one backbone."""

    def __init__(self, method_id: str, backbone: Backbone, data: ProbeData,
                 overrides: Mapping[str, str] | None = None, *, variant: str = "") -> None:
        self.method_id = method_id
        self.cls: type[Method] = registry.get(method_id)
        self.kind = kinds.of_method(self.cls)  # declares the outputs, their shape and the observers
        self.backbone = backbone
        self.data = data
        self.overrides = dict(overrides or {})
        self.variant = variant
        self.config().validate_at(f"conformance variant {self.label}")  # a bad variant fails every cell

    @property
    def label(self) -> str:
        """The matrix row: the id, or ``id:variant``."""
        return f"{self.method_id}:{self.variant}" if self.variant else self.method_id

    def config(self, backbone: Backbone | None = None) -> MethodConfig:
        """A fresh config: the backbone's default recipe (:mod:`vlmeft.recipes`) plus the
        variant's settings."""
        from vlmeft.recipes import config_for, default_recipe

        return config_for(self.cls, default_recipe(backbone or self.backbone), self.overrides)

    @property
    def grounding(self) -> bool:
        """The method outputs no class logits (it reads no class names): probed through ``ground``."""
        return not self.kind.classifier

    def build(self, seed: int = 0, classnames: Sequence[str] = BASE_CLASSES, *, fit: bool = True,
              backbone: Backbone | None = None) -> Method:
        """A fresh instance with the backbone's default recipe (:mod:`vlmeft.recipes`);
        cache-based methods get their cache from frozen features of the seeded cache images."""
        backbone = backbone or self.backbone
        torch.manual_seed(seed)
        names = [] if self.grounding else list(classnames)
        method = self.cls(backbone, names, TEMPLATES, self.config(backbone))
        method.eval()
        if fit and not self.grounding:
            with torch.no_grad():
                feats = backbone.encode_image(self.data.cache_images.to(backbone.device), normalize=True)
            method.fit_cache(feats, self.data.cache_labels.to(backbone.device))
        return method

    @staticmethod
    @torch.no_grad()
    def perturb(method: Method, seed: int = 1) -> None:
        """Stand-in for a trained state: move every trainable tensor of the method off its
        initial value (zero-initialised ones such as LoRA's B included), so that "does this
        tower change?" is not answered by an identity initialisation. Only the method's own
        tensors: a backbone tensor it wrongly declares is the ``frozen_backbone`` check's."""
        g = torch.Generator().manual_seed(seed)
        for _, p in own_trainable(method):
            noise = torch.randn(p.shape, generator=g).to(p.device, p.dtype)
            p.add_(noise * (0.1 * p.detach().abs().mean() + 0.05))

    def outputs(self, method: Method, *, batch: int | None = None, raw: np.ndarray | None = None,
                expressions: Sequence[str] = EXPRESSIONS) -> Tensor:
        """What the method predicts, as one tensor, as its task kind says (logits ``[B, C]``
        for classifiers, concatenated box scores for grounding methods); ``batch`` splits the inputs."""
        return self.kind.probe_outputs(self, method, batch=batch, raw=raw, expressions=expressions)

    def train_steps(self, method: Method, steps: int = 3, lr: float = 0.05) -> int:
        """A few plain SGD steps on the probe batch (a minimal local loop: the checks need
        only that gradients flow and parameters move). Returns the number of steps run;
        none when the loss does not depend on any trainable tensor (the checks then say
        which declared tensors never moved)."""
        params = method.trainable_parameters()
        kind_loss = getattr(self.kind, "probe_loss", None)  # a kind whose training loss is not on logits
        if not params or (self.grounding and kind_loss is None):
            self.outputs(method)  # still exercise the forward path
            return 0
        opt = torch.optim.SGD(params, lr=lr)
        method.train()
        images = self.data.images.to(self.backbone.device)
        labels = self.data.labels.to(self.backbone.device)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = kind_loss(self, method) if kind_loss is not None else method.loss(method(images), labels)
            if not loss.requires_grad:
                method.eval()
                return 0
            method.backward(loss)
            opt.step()
        method.eval()
        return steps


@contextlib.contextmanager
def capture_pixels(backbone: Backbone) -> Iterator[list[Tensor]]:
    """Record every tensor that enters the image tower's first convolution (both ViT and
    ModifiedResNet start with ``visual.conv1``): what the encoder really sees."""
    seen: list[Tensor] = []
    handle = backbone.model.visual.conv1.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    try:
        yield seen
    finally:
        handle.remove()


@contextlib.contextmanager
def record_encoders(backbone: Backbone) -> Iterator[dict[str, list]]:
    """Record what every ``encode_text`` / ``encode_image`` call returns (for grounding
    methods, whose features are not exposed by ``image_features``). Text entries are
    ``(output, frozen output of the same tokens)``; image entries are outputs only, since
    "frozen" there means the frozen features of the *original* images."""
    log: dict[str, list] = {"text": [], "image": []}
    orig_text, orig_image = backbone.encode_text, backbone.encode_image

    def encode_text(tokens: Tensor, **kw: object) -> Tensor:
        out = orig_text(tokens, **kw)
        with torch.no_grad():
            frozen = orig_text(tokens, normalize=bool(kw.get("normalize", False)))
        log["text"].append((out.detach(), frozen))
        return out

    def encode_image(images: Tensor, **kw: object):  # noqa: ANN202
        out = orig_image(images, **kw)
        feats = out[0] if isinstance(out, tuple) else out
        log["image"].append(feats.detach())
        return out

    object.__setattr__(backbone, "encode_text", encode_text)
    object.__setattr__(backbone, "encode_image", encode_image)
    try:
        yield log
    finally:
        del backbone.__dict__["encode_text"]
        del backbone.__dict__["encode_image"]
