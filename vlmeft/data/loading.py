"""From a :class:`~vlmeft.data.types.Split` to normalised image tensors for a backbone.

Splits hold in-memory uint8 arrays ``[N, H, W, 3]`` (the embedded tasks), lists of image
paths (``imagefolder:`` tasks), or what the Python API accepts from a user (a float tensor
``[N, 3, H, W]`` in [0, 1], a ``Dataset``'s images; :mod:`vlmeft.data.inputs`). All go
through the same
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


class UnreadableImage(VlmeftError):
    """An image file that is missing, truncated or not an image; ``path`` names it (the
    benchmark's ``--on-bad-image skip`` drops it and measures again)."""

    def __init__(self, message: str, path: Path | str) -> None:
        super().__init__(message, where=str(path))
        self.path = str(path)


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 array ``[H, W, 3]``; a missing or unreadable file raises
    :class:`UnreadableImage` naming it."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UnreadableImage("image file does not exist", path)
    try:
        with Image.open(path) as img:
            img.load()
            return np.array(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnreadableImage(f"cannot read image ({first})", path) from None


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


def unit_image(item: object, where: str = "image") -> Tensor:
    """One image as float ``[1, 3, H, W]`` in [0, 1]: a file path, a PIL image, a uint8
    ``[H, W, 3]`` array, or a tensor ``[3, H, W]`` (uint8, or float already in [0, 1])."""
    if isinstance(item, (str, Path)):
        return _to_unit_float(read_image(Path(item))[None])
    if hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
        return _to_unit_float(np.array(item.convert("RGB"), dtype=np.uint8)[None])  # a writable copy
    if isinstance(item, np.ndarray):
        item = torch.from_numpy(np.ascontiguousarray(item))
        if item.ndim == 3 and item.shape[-1] == 3:
            item = item.permute(2, 0, 1)
    if isinstance(item, Tensor) and item.ndim == 3 and item.shape[0] == 3:
        return (item.float().div(255.0) if item.dtype == torch.uint8 else item.float())[None]
    shape = list(getattr(item, "shape", [])) or type(item).__name__
    raise VlmeftError(f"expected an image file, a PIL image, a [3, H, W] tensor or a [H, W, 3] array, got {shape}",
                      where=where)


def original_image(split: Split, i: int) -> Tensor:
    """Image ``i`` of ``split`` as stored, before any resizing: float ``[1, 3, H, W]`` in [0, 1]
    (what training augmentation crops from)."""
    if isinstance(split.images, np.ndarray):
        return _to_unit_float(split.images[i][None])
    if isinstance(split.images, Tensor):
        return split.images[i : i + 1].float()
    return unit_image(split.images[i], where=f"{split.key}[{i}]")


def load_batch(split: Split, indices: Sequence[int] | np.ndarray, prep: Preprocess) -> Tensor:
    """Images ``indices`` of ``split`` as a normalised float tensor ``[B, 3, S, S]`` (CPU).

    ``split.images`` is a uint8 array ``[N, H, W, 3]``, a float tensor ``[N, 3, H, W]`` in
    [0, 1], or a sequence of single images (file paths, or anything :func:`unit_image` reads)."""
    idx = np.asarray(indices, dtype=np.int64)
    if isinstance(split.images, np.ndarray):
        batch = resize_center_crop(_to_unit_float(split.images[idx]), prep.image_size)
    elif isinstance(split.images, Tensor):
        batch = resize_center_crop(split.images[torch.from_numpy(idx)].float(), prep.image_size)
    else:
        batch = torch.cat(
            [resize_center_crop(unit_image(split.images[i], where=f"{split.key}[{i}]"), prep.image_size)
             for i in idx]
        ) if len(idx) else torch.empty(0, 3, prep.image_size, prep.image_size)
    return normalize(batch, prep)


def normalize(batch: Tensor, prep: Preprocess) -> Tensor:
    """``[B, 3, S, S]`` in [0, 1] -> normalised with the backbone's mean and std."""
    mean = torch.tensor(prep.mean).view(1, -1, 1, 1)
    std = torch.tensor(prep.std).view(1, -1, 1, 1)
    return (batch - mean) / std

