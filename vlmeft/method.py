"""The base every reference implementation builds on: a config dataclass and a module.

A method owns only its own tensors. The backbone is held by reference and kept out of
the module tree, so ``method.parameters()``, ``method.state_dict()`` and the optimiser
never see frozen weights ("freeze by construction"). Class-dependent tensors (token
prefixes, zero-shot weights) are non-persistent buffers rebuilt by ``build_class_state``,
so a checkpoint trained on base classes loads for novel ones without key surgery.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft.backbone.wrapper import Backbone
from vlmeft.errors import VlmeftError
from vlmeft.recipes import Source

# The choices of MethodConfig.schedule and .select (a Config that changes the default
# re-annotates the field with these, so `--set` keeps checking the value).
Schedule = typing.Literal["dassl", "legacy", "cosine-steps"]
Select = typing.Literal["last", "val"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(cls_name: str, key: str, raw: Any, kind: Any) -> Any:
    """Turn a ``--set`` string into the field's declared type."""
    if not isinstance(raw, str):
        return raw
    origin = typing.get_origin(kind)
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError("expected true or false")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if origin is typing.Literal:
            choices = typing.get_args(kind)
            if raw not in choices:
                raise ValueError(f"expected one of {', '.join(map(str, choices))}")
            return raw
        if kind is str:
            return raw
    except ValueError as err:
        raise VlmeftError(f"{cls_name}.{key}={raw!r}: {err}", where="--set") from None
    raise VlmeftError(f"{cls_name}.{key} cannot be set from the command line", where="--set")


def _json_value_fits(value: Any, kind: Any) -> bool:
    """Whether a value read from JSON has a field's declared type (unknown kinds pass)."""
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if typing.get_origin(kind) is typing.Literal:
        return value in typing.get_args(kind)
    return True


@dataclass
class MethodConfig:
    """Training settings shared by all methods. The defaults are Dassl's (the trainer
    library of CoOp and most of its successors: ``dassl/config/defaults.py`` of
    KaiyangZhou/Dassl.pytorch @ c61a1b5, with CoOp's ``configs/trainers/CoOp/vit_b16.yaml``);
    each method's Config overrides them with its paper's recipe (:mod:`vlmeft.recipes`).
    The embedded recipe's shared overrides are :data:`vlmeft.recipes.EMBEDDED_BASE`."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    optimizer: typing.Literal["sgd", "adamw", "adam"] = "sgd"  # adam: Dassl's (L2 weight decay)
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: int = 1  # constant warm-up at warmup_lr, as in CoOp's recipe
    warmup_lr: float = 1e-5
    # The lr schedule (vlmeft.engine.schedule): "dassl" = per-epoch cosine restarted after
    # the constant warm-up (Dassl's WARMUP_RECOUNT); "legacy" = the project's first
    # per-epoch cosine, counted from epoch 0 (the embedded recipe's); "cosine-steps" = a
    # per-step cosine after a linear warm-up of `warmup_steps` (Tip-Adapter-F, CLIP-LoRA, VP).
    schedule: Schedule = "dassl"
    warmup_steps: int = 0  # linear warm-up steps of the "cosine-steps" schedule
    # Training images are randomly resized-cropped (area scale (crop_scale, 1), bicubic,
    # from the original image) and flipped, as Dassl's "random_resized_crop" +
    # "random_flip"; disables the exact image-feature cache.
    augment: bool = True
    crop_scale: float = 0.08  # Dassl's INPUT.RRCROP_SCALE lower bound
    # Which trained state is kept: "last" (Dassl's TEST.FINAL_MODEL "last_step") or "val"
    # (the epoch with the best accuracy on the few-shot val split).
    select: Select = "last"
    precision: typing.Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast; fp16 adds a GradScaler (GPU only)
    # Opt-in lr rescaling by logit scale. Cross-entropy gradients are proportional to the
    # logit scale, so a paper's SGD lr (tuned at CLIP's 100) takes smaller steps on a backbone
    # with a smaller learned scale (synthclip-tiny: ~22). With lr_logit_scale = S > 0 and SGD,
    # the engine multiplies `lr` and `warmup_lr` by S / (backbone scale); AdamW is invariant
    # to the gradient's scale and is never rescaled. Off (0) by default: measured on
    # synthclip-tiny (digits, 4 shots, val over seeds 1-3), S = 100 lowered CoOp's val
    # accuracy (0.650 vs 0.725) and did not help KgCoOp (0.675 vs 0.658), so each method's
    # `lr` is chosen on val at the backbone's own scale instead.
    lr_logit_scale: float = 0.0
    # At least this many optimiser steps: when a few-shot split is so small that the
    # paper's epochs give fewer (40 images at batch 32 = 1 step an epoch), the engine runs
    # more epochs (the cosine schedule stretches over them). 0 = exactly `epochs`.
    min_steps: int = 0
    # The hand-written templates of the frozen text side (the zero-shot classifier, KgCoOp's
    # reference features, the one prompt per class of an adapted text tower): "" = the task's
    # templates (an ensemble; adapted text towers take the first), "first" = the task's first
    # template only (a dataset's single CoOp template), or a template of its own with one "{}"
    # (VPT in the MaPLe repository: "a photo of a {}.").
    text_template: str = ""

    # When > 0, training runs exactly steps_per_shot x shots optimiser steps whatever
    # `epochs` says (CLIP-LoRA's "500 x shots iterations"); shots = the largest class.
    steps_per_shot: int = 0

    # The paper recipe's citation and this method's embedded overrides (vlmeft.recipes).
    source: typing.ClassVar[Source | None] = None
    embedded: typing.ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    def apply_overrides(self, overrides: Mapping[str, Any]) -> MethodConfig:
        """A copy with ``overrides`` applied (strings are coerced to the field types).
        Unknown keys raise :class:`VlmeftError` listing the valid ones."""
        types = self.field_types()
        changes: dict[str, Any] = {}
        for key, raw in overrides.items():
            if key not in types:
                import difflib

                close = difflib.get_close_matches(key, list(types), n=2)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise VlmeftError(
                    f"'{key}' is not a setting{hint}; settings: {', '.join(sorted(types))}",
                    where="--set",
                )
            changes[key] = _coerce(type(self).__name__, key, raw, types[key])
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "config") -> MethodConfig:
        unknown = set(data) - set(cls.field_types())
        if unknown:
            raise VlmeftError(f"unknown setting(s) {', '.join(sorted(unknown))} for {cls.__name__}", where=where)
        types = cls.field_types()
        for key, value in data.items():  # JSON from disk: a tampered value must not reach the method
            if not _json_value_fits(value, types[key]):
                raise VlmeftError(f"setting '{key}' has the wrong type for {cls.__name__} (got {value!r:.60})",
                                  where=where)
        cfg = cls(**dict(data))
        cfg.validate_at(where)
        return cfg

    def validate_at(self, where: str) -> None:
        """:meth:`validate`, with errors attributed to ``where`` instead of ``--set``
        (for settings that came from a file or from Python code, not the command line)."""
        try:
            self.validate()
        except VlmeftError as err:
            raise VlmeftError(str(err).removeprefix("--set: "), where=where) from None

    def validate(self) -> None:
        """Reject settings that cannot work; subclasses extend."""
        for name in ("epochs", "batch_size", "min_steps", "steps_per_shot", "warmup_steps"):
            if getattr(self, name) < 0 or (name == "batch_size" and self.batch_size == 0):
                raise VlmeftError(f"{name} must be positive, got {getattr(self, name)}", where="--set")
        if self.lr < 0:
            raise VlmeftError(f"lr must be non-negative, got {self.lr}", where="--set")
        if self.lr_logit_scale < 0:
            raise VlmeftError(f"lr_logit_scale must be non-negative, got {self.lr_logit_scale}", where="--set")
        if not 0.0 < self.crop_scale <= 1.0:
            raise VlmeftError(f"crop_scale must lie in (0, 1], got {self.crop_scale}", where="--set")
        if self.text_template not in ("", "first") and self.text_template.count("{}") != 1:
            raise VlmeftError(
                f"text_template must be '' (the task's templates), 'first' or a template with one '{{}}', "
                f"got {self.text_template!r}",
                where="--set",
            )


def _autocast_state(device: torch.device) -> torch.dtype | None:
    """The dtype autocast computes in on ``device`` here, or None when it is off: text
    features cached under bf16 are not the fp32 ones."""
    kind = device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None


class Method(nn.Module):
    """Base class of every registered method.

    Subclasses set the class attributes and implement the parts their category changes.
    Feature conventions: image and text features are L2-normalised ``[.., E]`` tensors;
    logits are ``logit_scale * image @ text``.
    """

    name: ClassVar[str]  # registry id == knowledge-base record id
    category: ClassVar[str]  # taxonomy leaf id, or "baseline"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    requires_vision_tokens: ClassVar[bool] = False  # needs a ViT image tower
    training_free: ClassVar[bool] = False  # nothing is optimised by gradient descent
    # The image is read only through the frozen encoder's feature, so the engine may
    # compute it once and call ``logits_from_image_features`` (exact without augmentation).
    frozen_image_path: ClassVar[bool] = False
    # Text features depend on the image (CoCoOp's conditional context): never cached.
    image_conditioned_text: ClassVar[bool] = False
    # The image tower also receives augmented views of each input image, sent with the
    # unchanged image itself (TPT's test-time views): augmentation, not a pixel prompt.
    test_time_views: ClassVar[bool] = False
    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    # Configs that switch the mechanism (``--set`` strings by variant name, e.g.
    # ``{"shallow": {"deep": "false"}}``): the conformance matrix probes each as its own row.
    # Read from the class's own body only: a subclass's Config may lack the fields.
    conformance_variants: ClassVar[dict[str, dict[str, str]]] = {}
    # The recipe the config came from ("paper" / "embedded"; set by registry.build,
    # None for a config built by hand); recorded in checkpoints and result rows.
    recipe: str | None = None

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        templates: Sequence[str],
        config: MethodConfig | None = None,
    ) -> None:
        super().__init__()
        if self.requires_vision_tokens and not backbone.is_vit:
            from vlmeft import registry

            able = registry.names_without_vision_tokens()
            raise VlmeftError(
                f"method '{self.name}' needs vision tokens, but backbone '{backbone.name}' has a ResNet image "
                f"tower; methods that run on it: {', '.join(able)}"
            )
        # Held by reference, outside the module tree (see the module docstring).
        object.__setattr__(self, "backbone", backbone)
        config = config if config is not None else self.Config()
        if not isinstance(config, self.Config):
            raise VlmeftError(
                f"method '{self.name}' takes a {self.Config.__module__}.{self.Config.__qualname__}, "
                f"got {type(config).__name__}"
            )
        # Validated here, once for every method, so a config built in Python (not through
        # ``--set`` or a checkpoint, which validate on the way in) cannot reach a subclass.
        config.validate_at(f"method '{self.name}' config")
        self.config = config
        self.classnames: list[str] = []
        self.templates: list[str] = list(templates)
        self.classnames = list(classnames)

    # ------------------------------------------------------------ class state
    def set_classnames(self, classnames: Sequence[str], templates: Sequence[str] | None = None) -> None:
        """Switch the label set (e.g. base -> novel) without touching trained tensors."""
        self.classnames = list(classnames)
        if templates is not None:
            self.templates = list(templates)
        self.build_class_state()

    def build_class_state(self) -> None:
        """Rebuild class-dependent, non-persistent buffers. Subclasses override and call it
        at the end of their ``__init__`` once their own tensors exist."""

    def set_virtual_classnames(self, classnames: Sequence[str]) -> None:
        """Class names known before training that have no training images (the base-to-novel
        protocol passes the novel half). A method that can learn from names alone overrides
        it (LASP-V's virtual classes); every other method ignores them."""

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def text_templates(self) -> list[str]:
        """The hand-written templates in force (``config.text_template``; see MethodConfig)."""
        choice = self.config.text_template
        if choice == "first":
            return self.templates[:1] or ["{}"]
        if choice:
            return [choice]
        return list(self.templates) or ["{}"]

    def zero_shot_weights(self) -> Tensor:
        """The frozen hand-crafted classifier for the current label set ``[C, E]``, from the
        templates in force (:meth:`text_templates`), always computed in fp32 (the backbone
        caches it; an autocast region must not leave a half-precision copy there for later
        fp32 use)."""
        with torch.autocast(self.device.type, enabled=False):
            return self.backbone.zero_shot_weights(self.classnames, self.text_templates())

    # ---------------------------------------------------------------- towers
    def frozen_image_features(self, images: Tensor) -> Tensor:
        return self.backbone.encode_image(images, normalize=True)

    def adapt_image_features(self, features: Tensor) -> Tensor:
        """Map frozen image features to the method's (identity unless overridden)."""
        return features

    def image_features(self, images: Tensor) -> Tensor:
        """The method's image features ``[B, E]``, normalised."""
        return self.adapt_image_features(self.frozen_image_features(images))

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        """Class text features: ``[C, E]``, or ``[B, C, E]`` for image-conditioned prompts."""
        return self.zero_shot_weights()

    def class_text_features(self, image_features: Tensor | None = None) -> Tensor:
        """``text_features``, computed once and reused while nothing can change them.

        A trained CoOp, KgCoOp, IVLP or LoRA text side is constant at inference, so it
        should cost what zero-shot CLIP costs. The cache is used only in eval mode without
        autograd, and is keyed on the identity and in-place version counter of every
        parameter and buffer, so an optimiser step, a loaded checkpoint, new class names
        or a probe editing a tensor in place all invalidate it; so does a change of
        autocast precision.
        """
        if self.image_conditioned_text:
            return self.text_features(image_features)
        if self.training or torch.is_grad_enabled():
            return self.text_features(None)
        key = tuple((id(t), t._version) for t in (*self.parameters(), *self.buffers()))
        key += (tuple(self.classnames), tuple(self.templates), _autocast_state(self.device))
        cached = self.__dict__.get("_text_cache")
        if cached is None or cached[0] != key:
            cached = (key, self.text_features(None))
            self.__dict__["_text_cache"] = cached
        return cached[1]

    def logits_from_features(self, image_features: Tensor) -> Tensor:
        text = self.class_text_features(image_features)
        scale = self.backbone.logit_scale()
        if text.dim() == 2:
            return scale * image_features @ text.t()
        return scale * torch.einsum("be,bce->bc", image_features, text)

    def logits_from_image_features(self, frozen_features: Tensor) -> Tensor:
        """Logits from frozen (cached) image features; valid when ``frozen_image_path``."""
        return self.logits_from_features(self.adapt_image_features(frozen_features))

    def forward(self, images: Tensor) -> Tensor:
        return self.logits_from_features(self.image_features(images))

    # --------------------------------------------------------------- training
    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits, labels)

    def backward(self, loss: Tensor) -> None:
        """Fill the trainable tensors' ``.grad`` from ``loss`` (the engine calls this between
        ``zero_grad`` and the optimiser step). A method that edits its update direction
        overrides it (ProGrad projects the gradient); the default is plain backprop."""
        loss.backward()

    def fit_cache(self, features: Tensor, labels: Tensor) -> None:
        """Called once before training with frozen features of the few-shot train set
        (cache-based methods build their key-value memory here)."""

    def start_test_stream(self) -> None:
        """Called by every evaluation before the first sample of a pass over a split (the
        engine's ``predict``, the conformance harness): a test-time method that learns
        from the stream it is shown (TDA's caches) forgets the previous pass here, and
        then consumes samples in the order given, however they are batched. A no-op for
        every method whose outputs do not depend on earlier samples."""

    def select_on_val(self, features: Tensor, labels: Tensor) -> dict[str, float]:
        """Choose hyperparameters on frozen val features only; returns what was chosen."""
        return {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """``(parameters, lr multiplier)`` per optimiser group: the engine trains each group at
        ``multiplier x`` the scheduled lr (DPT's text prompts learn at 1/5 of its vision
        side's rate). Default: every trainable parameter at the scheduled lr."""
        return [(self.trainable_parameters(), 1.0)]

    def end_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the engine after the optimiser steps of 0-based ``epoch`` of ``epochs``
        (before any val evaluation of that epoch): for methods whose training changes
        with the epoch (PromptSRC's Gaussian prompt aggregation, DPT's guidance phase)."""

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    # ------------------------------------------------------------ checkpoints
    def state_tensors(self) -> dict[str, Tensor]:
        """The method's own tensors (parameters and persistent buffers), nothing frozen."""
        return {k: v.detach() for k, v in self.state_dict().items()}

    def load_state_tensors(self, tensors: Mapping[str, Tensor], where: str = "checkpoint") -> None:
        own = self.state_dict()
        missing = sorted(set(own) - set(tensors))
        extra = sorted(set(tensors) - set(own))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if extra:
                parts.append(f"unexpected {', '.join(extra)}")
            raise VlmeftError(f"tensors do not fit method '{self.name}': {'; '.join(parts)}", where=where)
        for key, value in tensors.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise VlmeftError(
                    f"tensor '{key}' has shape {tuple(value.shape)}, method '{self.name}' expects {tuple(own[key].shape)}",
                    where=where,
                )
        self.load_state_dict({k: v.to(own[k].device, own[k].dtype) for k, v in tensors.items()})
