"""# Red circle: a visible marker as a prompt, for zero-shot referring-expression grounding

Shtedritski, Rupprecht and Vedaldi, *What does CLIP know about a red circle? Visual
prompt engineering for VLMs*, ICCV 2023 (arXiv 2304.06712).

The prompt is drawn, not learned: to ask "which of these boxes is *the blue square on
the left*?", draw a red ellipse around one candidate box, encode the marked picture with
the frozen image encoder, and score it against the frozen text feature of the
expression. Repeat for every box and pick the best. CLIP has learnt from web images that
a red circle points at something, so the marked region steers the image feature while
the rest of the picture still supplies context (relations like "left of").

The paper also removes a *prior*: some regions score high for any expression (a large
or central object). It subtracts, from each box's score for the query, the box's mean
score for a set of other, negative expressions. Here the negatives are the other
expressions of the evaluated set (:meth:`RedCircle.set_negatives`; empty = no prior),
held fixed for a whole evaluation so that the scores do not depend on how samples are
batched.

Behavioural signature (prompt.visual.annotation): nothing trains, the text side is the
frozen model's, the vision token count is unchanged, and the pixels change **only where
the marker is drawn** (:meth:`RedCircle.marker_mask` says where; conformance checks it).

On the embedded backbone. A marker only works if pretraining taught the model what
it means: CLIP learnt it from web photos where people circled things. synthclip-tiny's
world stands in for that with scenes in which one object is circled by a hand-drawn red
ellipse and captioned alone (12% of its pretraining images; see the backbone page).
Those markers are drawn by the world's renderer (anti-aliased, off-centre, varying
size, width and shade), not by this module. On the 300 referring expressions of the
``scenes`` task (distractors share the target's colour or shape) the red circle picks
the right box 57.3% of the time against 41.6% for a random box, and 61.0% with
``subtract_prior=false``: on this small world the prior removes some signal, and we
keep the paper's setting as the default. Crop-and-compare with the same frozen model
scores 80.0%, as cropping removes the distractors from view entirely. An earlier
synthclip whose world had no marked scenes scored 27.7%, *below* chance: without the
pretraining cue the red pixels only add the colour red to every candidate.

What this version simplifies:

* One marker (a red ellipse outline) and no ensembles: the paper also reports
  combinations with blurring or greying outside the marker, crops, and several
  backbones.
* The ellipse is drawn after resizing the image to the encoder's input size (the paper
  draws on the full-resolution image), so a 1-pixel line survives at 32 px and the
  changed pixels are exactly the drawn ones. Its line width is the paper's 2 px at
  224 scaled to the input size (at least 1 px); the ellipse circumscribes the box
  (``scale`` √2: the box's corners lie on it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from vlmeft import registry
from vlmeft.backbone.wrapper import Backbone
from vlmeft.data.types import GroundingSample
from vlmeft.errors import VlmeftError
from vlmeft.method import Method, MethodConfig
from vlmeft.recipes import Source


@dataclass
class Config(MethodConfig):
    """Marker settings; nothing is trained (epochs 0), and the two recipes are the same.
    The knowledge base lists no official code for the paper: the marker (a red ellipse
    outline, 2 px at 224, prior subtracted) follows the paper's description."""

    epochs: int = 0
    batch_size: int = 64  # marked images encoded per forward pass (does not change results)
    color: str = "255,0,0"  # the marker's RGB colour
    thickness: float = 0.0  # line width in encoder pixels; 0 = the paper's 2 px at 224, scaled
    scale: float = math.sqrt(2.0)  # ellipse semi-axes = scale * half the box's sides
    template: str = "{}"  # wraps the expression before text encoding
    subtract_prior: bool = True  # subtract each box's mean score for the negative expressions

    source: ClassVar[Source] = Source("", "", "", "", "the paper's description (no official code is listed)")
    embedded: ClassVar[dict[str, Any]] = {}

    def rgb(self) -> tuple[float, float, float]:
        try:
            parts = [int(p) for p in self.color.split(",")]
        except ValueError:
            parts = []
        if len(parts) != 3 or not all(0 <= p <= 255 for p in parts):
            raise VlmeftError(f"color must be three integers 0-255 like '255,0,0', got {self.color!r}", where="--set color")
        return (parts[0] / 255.0, parts[1] / 255.0, parts[2] / 255.0)

    def validate(self) -> None:
        super().validate()
        self.rgb()
        if self.thickness < 0 or self.scale <= 0:
            raise VlmeftError("thickness must be >= 0 and scale > 0", where="--set")
        if "{}" not in self.template:
            raise VlmeftError(f"template must contain '{{}}', got {self.template!r}", where="--set template")


def _unit_images(images: Any) -> list[Tensor]:
    """uint8 ``[N, H, W, 3]`` (array or tensor, or a list of ``[H, W, 3]``) or float
    ``[N, 3, H, W]`` in [0, 1] -> list of float ``[3, H, W]`` in [0, 1]."""
    if isinstance(images, (list, tuple)):  # one [H, W, 3] or [3, H, W] image per entry
        return [u for img in images for u in _unit_images(torch.as_tensor(np.asarray(img))[None])]
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not torch.is_tensor(images) or images.dim() != 4:
        raise VlmeftError("images must be uint8 [N, H, W, 3] or float [N, 3, H, W] in [0, 1]", where="ground(images)")
    if images.dtype == torch.uint8:
        if images.shape[-1] != 3:
            raise VlmeftError(f"uint8 images must be [N, H, W, 3], got {list(images.shape)}", where="ground(images)")
        return list(images.permute(0, 3, 1, 2).float().div(255.0))
    if images.shape[1] != 3:
        raise VlmeftError(f"float images must be [N, 3, H, W] in [0, 1], got {list(images.shape)}", where="ground(images)")
    return list(images.float())


class BoxAnnotation(Method):
    """Zero-shot grounding by editing the picture once per candidate box: the shared
    mechanics of annotation prompts (red circle, FGVP's blur).

    A subclass says where its marker lies (:meth:`region`, bool ``[K, S, S]`` at the
    encoder's input size) and how it paints it (:meth:`paint`); the base resizes the
    image to the encoder, maps the boxes along, encodes every marked picture and scores
    it against the frozen text feature of the expression, optionally minus each box's
    mean score for the other expressions (the red-circle paper's prior). Its config needs
    ``batch_size``, ``template`` and ``subtract_prior``."""

    category = "prompt.visual.annotation"
    requires_vision_tokens = False  # pixels only: ResNet towers work too
    training_free = True
    frozen_image_path = False
    tasks = ("grounding",)

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str] = (),
        templates: Sequence[str] = ("{}",),
        config: MethodConfig | None = None,
    ) -> None:
        super().__init__(backbone, classnames, templates, config)
        self.negatives: list[str] = []

    # ------------------------------------------------------------ no classifier
    def _refuse(self) -> VlmeftError:
        return VlmeftError(
            f"method '{self.name}' solves grounding (tasks: {', '.join(self.tasks)}), not classification; "
            "call ground(images, boxes, expressions) or evaluate it on the 'scenes' task"
        )

    def forward(self, images: Tensor) -> Tensor:
        raise self._refuse()

    def logits_from_image_features(self, frozen_features: Tensor) -> Tensor:
        raise self._refuse()

    # ------------------------------------------------------------------ marker
    def region(self, boxes: Tensor, size: int) -> Tensor:
        """Bool ``[K, size, size]``: the pixels the marker of each box may change."""
        raise NotImplementedError

    def paint(self, image: Tensor, region: Tensor) -> Tensor:
        """One ``[3, S, S]`` image in [0, 1] and its ``[K, S, S]`` regions -> ``[K, 3, S, S]``."""
        raise NotImplementedError

    def _to_encoder(self, image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """Resize (shorter side) and centre-crop a ``[3, H, W]`` image to the encoder's size,
        and map its boxes into the new pixel grid."""
        from vlmeft.data.loading import resize_center_crop

        size = self.backbone.image_size
        h, w = image.shape[-2:]
        out = resize_center_crop(image[None], size)[0]
        if h == w == size:
            return out, boxes
        scale = size / min(h, w)
        new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
        sx, sy = new_w / w, new_h / h
        top, left = (new_h - size) // 2, (new_w - size) // 2
        mapped = boxes * torch.tensor([sx, sy, sx, sy]) - torch.tensor([left, top, left, top], dtype=boxes.dtype)
        return out, mapped

    def marker_mask(self, boxes: Any, image_hw: tuple[int, int]) -> Tensor:
        """Where the marker for each box may change pixels: bool ``[K, S, S]`` at the
        encoder's input size ``S``, for ``boxes [K, 4]`` given on an ``image_hw`` image.
        (Conformance hook: annotation methods declare their marker region.)"""
        h, w = image_hw
        dummy = torch.zeros(3, h, w)
        _, mapped = self._to_encoder(dummy, torch.as_tensor(np.asarray(boxes), dtype=torch.float32))
        return self.region(mapped, self.backbone.image_size)

    def mark(self, image: Tensor, boxes: Any) -> Tensor:
        """One un-normalised ``[3, H, W]`` image in [0, 1] -> ``[K, 3, S, S]`` normalised
        encoder inputs, the k-th with the marker of box k."""
        boxes_t = torch.as_tensor(np.asarray(boxes), dtype=torch.float32).reshape(-1, 4)
        resized, mapped = self._to_encoder(image, boxes_t)
        marked = self.paint(resized, self.region(mapped, resized.shape[-1]))
        mean = torch.tensor(self.backbone.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.backbone.std).view(1, 3, 1, 1)
        return ((marked - mean) / std).to(self.device, self.backbone.dtype)

    # ---------------------------------------------------------------- grounding
    def set_negatives(self, expressions: Sequence[str]) -> None:
        """Fix the negative expressions used to estimate each box's prior score (the
        query itself is always left out)."""
        self.negatives = sorted(set(expressions))

    def prepare_grounding(self, samples: Sequence[GroundingSample]) -> None:
        """Hook of the grounding task kind (:mod:`vlmeft.kinds.grounding`), called once
        with the whole evaluated set before scoring: the prior's negatives are its expressions."""
        self.set_negatives([s.expression for s in samples])

    @torch.no_grad()
    def _text(self, expressions: Sequence[str]) -> Tensor:
        prompts = [self.config.template.format(e) for e in expressions]
        return self.backbone.encode_text(self.backbone.tokenize(prompts), normalize=True)

    @torch.no_grad()
    def ground(self, images: Any, boxes: Sequence[Any], expressions: Sequence[str]) -> list[Tensor]:
        """Scores ``[K_i]`` of each candidate box of each image for its expression.

        ``images``: uint8 ``[N, H, W, 3]`` (or a list of ``[H, W, 3]``), or float
        ``[N, 3, H, W]`` in [0, 1], not normalised; ``boxes[i]``: ``[K_i, 4]`` as
        x0, y0, x1, y1 in that image's pixels; ``expressions[i]``: one string.
        """
        unit = _unit_images(images)
        if not (len(unit) == len(boxes) == len(expressions)):
            raise VlmeftError(
                f"ground() needs one box list and one expression per image: got {len(unit)} images, "
                f"{len(boxes)} box lists, {len(expressions)} expressions"
            )
        marked = [self.mark(img, b) for img, b in zip(unit, boxes)]
        counts = [m.shape[0] for m in marked]
        flat = torch.cat(marked) if marked else torch.empty(0)
        step = max(1, self.config.batch_size)
        feats = torch.cat([self.backbone.encode_image(flat[i : i + step], normalize=True) for i in range(0, len(flat), step)])
        queries = self._text(expressions)  # [N, E]
        use_prior = self.config.subtract_prior and len(self.negatives) > 0
        neg_feats = self._text(self.negatives) if use_prior else None
        scores, start = [], 0
        for i, k in enumerate(counts):
            f = feats[start : start + k]
            start += k
            s = f @ queries[i]
            if neg_feats is not None:
                keep = [j for j, e in enumerate(self.negatives) if e != expressions[i]]
                if keep:
                    s = s - (f @ neg_feats[keep].t()).mean(dim=1)
            scores.append(s)
        return scores


@registry.register(reference_for="prompt.visual.annotation")
class RedCircle(BoxAnnotation):
    """Zero-shot grounding: mark each candidate box with a red ellipse, score marked images."""

    name = "red-circle"
    category = "prompt.visual.annotation"
    Config = Config

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str] = (),
        templates: Sequence[str] = ("{}",),
        config: Config | None = None,
    ) -> None:
        super().__init__(backbone, classnames, templates, config)
        self._rgb = self.config.rgb()

    @property
    def thickness(self) -> float:
        return self.config.thickness or max(1.0, 2.0 * self.backbone.image_size / 224.0)

    def region(self, boxes: Tensor, size: int) -> Tensor:
        """Bool ``[K, size, size]``: pixels whose centre lies within half the line width of
        the ellipse around each box (encoder pixel coordinates)."""
        coords = torch.arange(size, dtype=torch.float32) + 0.5
        y, x = coords.view(1, -1, 1), coords.view(1, 1, -1)
        b = boxes.float()
        cx, cy = ((b[:, 0] + b[:, 2]) / 2).view(-1, 1, 1), ((b[:, 1] + b[:, 3]) / 2).view(-1, 1, 1)
        ax = ((b[:, 2] - b[:, 0]).abs() / 2 * self.config.scale).clamp_min(0.5).view(-1, 1, 1)
        ay = ((b[:, 3] - b[:, 1]).abs() / 2 * self.config.scale).clamp_min(0.5).view(-1, 1, 1)
        u, v = (x - cx) / ax, (y - cy) / ay
        d = torch.sqrt(u * u + v * v)
        # First-order distance to the curve d == 1: |d - 1| / |grad d|.
        grad = torch.sqrt((u / ax) ** 2 + (v / ay) ** 2) / d.clamp_min(1e-6)
        dist = (d - 1).abs() / grad.clamp_min(1e-6)
        return dist <= self.thickness / 2

    def paint(self, image: Tensor, region: Tensor) -> Tensor:
        color = torch.tensor(self._rgb).view(1, 3, 1, 1)
        return torch.where(region.unsqueeze(1), color, image.unsqueeze(0))


def grounding_accuracy(method: BoxAnnotation, samples: Sequence[GroundingSample], *, chunk: int = 64) -> float:
    """Fraction of samples whose best-scoring box is the target (the grounding task kind's
    evaluator; the negatives for the prior are all expressions of ``samples``)."""
    from vlmeft.kinds.grounding import accuracy

    return accuracy(method, samples, chunk=chunk)


def random_choice_accuracy(samples: Sequence[GroundingSample]) -> float:
    """Expected accuracy of picking a box uniformly at random (the chance baseline)."""
    return float(np.mean([1.0 / len(s.boxes) for s in samples]))


__all__ = ["BoxAnnotation", "Config", "RedCircle", "grounding_accuracy", "random_choice_accuracy"]
