"""From a :class:`~vlmeft.data.types.Split` to normalised image tensors for a backbone.

Two kinds of split exist: in-memory uint8 arrays ``[N, H, W, 3]`` (the embedded tasks)
and lists of image paths (``imagefolder:`` tasks). Both go through the same
CLIP-style evaluation transform: bicubic resize of the shorter side to the backbone's
``image_size``, centre crop, scale to [0, 1], normalise with the backbone's mean/std.
For square inputs this is a plain bicubic resize.

The training augmentation (``config.augment``) lives in :mod:`vlmeft.data.augment`: it
crops the original image, not the tensor this module makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vlmeft.data.types import Split
from vlmeft.errors import VlmeftError


@dataclass(frozen=True)
class Preprocess:
    """The evaluation transform; ``key`` identifies it in feature-cache keys."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def for_backbone(cls, backbone) -> Preprocess:  # noqa: ANN001 (Backbone; avoids an import cycle)
        return cls(int(backbone.image_size), tuple(float(m) for m in backbone.mean), tuple(float(s) for s in backbone.std))

    @property
    def key(self) -> str:
        mean = ",".join(f"{m:.6g}" for m in self.mean)
        std = ",".join(f"{s:.6g}" for s in self.std)
        return f"resize-shorter-bicubic-centercrop{self.image_size}|mean={mean}|std={std}"


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 array ``[H, W, 3]``; a missing or unreadable file raises a
    :class:`VlmeftError` naming it."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise VlmeftError("image file does not exist", where=str(path))
    try:
        with Image.open(path) as img:
            img.load()
            return np.array(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VlmeftError(f"cannot read image ({first})", where=str(path)) from None


def resize_center_crop(image: Tensor, size: int) -> Tensor:
    """``[B, 3, H, W]`` float in [0, 1] -> ``[B, 3, size, size]``: bicubic resize of the
    shorter side, then centre crop."""
    h, w = image.shape[-2:]
    if h == w == size:
        return image
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    image = F.interpolate(image, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[..., top : top + size, left : left + size].clamp_(0.0, 1.0)


def _to_unit_float(array: np.ndarray) -> Tensor:
    """uint8 ``[B, H, W, 3]`` -> float ``[B, 3, H, W]`` in [0, 1]."""
    if array.ndim != 4 or array.shape[-1] != 3:
        raise VlmeftError(f"expected images shaped [N, H, W, 3], got {list(array.shape)}", where="split.images")
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float().div_(255.0)


def load_batch(split: Split, indices: Sequence[int] | np.ndarray, prep: Preprocess) -> Tensor:
    """Images ``indices`` of ``split`` as a normalised float tensor ``[B, 3, S, S]`` (CPU)."""
    idx = np.asarray(indices, dtype=np.int64)
    if isinstance(split.images, np.ndarray):
        batch = resize_center_crop(_to_unit_float(split.images[idx]), prep.image_size)
    else:
        batch = torch.cat(
            [resize_center_crop(_to_unit_float(read_image(split.images[i])[None]), prep.image_size) for i in idx]
        ) if len(idx) else torch.empty(0, 3, prep.image_size, prep.image_size)
    return normalize(batch, prep)


def normalize(batch: Tensor, prep: Preprocess) -> Tensor:
    """``[B, 3, S, S]`` in [0, 1] -> normalised with the backbone's mean and std."""
    mean = torch.tensor(prep.mean).view(1, -1, 1, 1)
    std = torch.tensor(prep.std).view(1, -1, 1, 1)
    return (batch - mean) / std

