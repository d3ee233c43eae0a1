"""Dassl's training augmentation: random resized crop of the original image + random flip.

CoOp and the methods built on Dassl train with ``TRANSFORMS: ["random_resized_crop",
"random_flip", "normalize"]``: torchvision's ``RandomResizedCrop(size, scale=(0.08, 1),
interpolation=bicubic)`` on the *original* image (no resize before it), then a horizontal
flip with probability 0.5, then the CLIP normalisation. This module does the same on a
:class:`~vlmeft.data.types.Split`, for in-memory arrays and for image paths alike: the
crop is taken from the image as stored (never from the already resized tensor), and
resized to the backbone's input size with antialiased bicubic interpolation.

The crop follows torchvision's sampling: up to 10 tries of an area fraction uniform in
``scale`` and a log-uniform aspect ratio in ``ratio`` that fits the image, else a central
crop with the ratio clamped. Every draw comes from the caller's ``torch.Generator``
(never the global RNG), one image after another, so a seed gives the same crops in any
process. ``scale`` is ``(config.crop_scale, 1)``: 0.08 is Dassl's and CLIP-LoRA's, 0.5
Tip-Adapter's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vlmeft.data.loading import Preprocess, normalize, original_image
from vlmeft.data.types import Split

RATIO = (3 / 4, 4 / 3)  # torchvision's default aspect-ratio range


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(1, generator=generator, dtype=torch.float64))


def crop_box(height: int, width: int, generator: torch.Generator, scale: tuple[float, float],
             ratio: tuple[float, float] = RATIO) -> tuple[int, int, int, int]:
    """``(top, left, crop_height, crop_width)`` of a random resized crop (torchvision's rule)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(generator, scale[0], scale[1])
        aspect = math.exp(_uniform(generator, *log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height  # fallback: the central crop, its ratio clamped to the range
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop_flip(image: Tensor, size: int, generator: torch.Generator, scale: tuple[float, float],
                      clamp: bool = True) -> Tensor:
    """One ``[1, 3, H, W]`` image in [0, 1] (or normalised, with ``clamp=False``) -> a random
    resized crop ``[1, 3, size, size]``, flipped with probability 0.5."""
    top, left, h, w = crop_box(image.shape[-2], image.shape[-1], generator, scale)
    crop = image[..., top : top + h, left : left + w]
    out = F.interpolate(crop, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    if clamp:
        out = out.clamp_(0.0, 1.0)
    if float(torch.rand(1, generator=generator)) < 0.5:
        out = out.flip(-1)
    return out


def load_augmented_batch(split: Split, indices: Sequence[int] | np.ndarray, prep: Preprocess,
                         generator: torch.Generator, crop_scale: float = 0.08) -> Tensor:
    """Images ``indices`` of ``split``, each cropped from its original, flipped and
    normalised: ``[B, 3, S, S]`` (CPU), as Dassl's training transform makes them."""
    scale = (float(crop_scale), 1.0)
    crops = []
    for i in np.asarray(indices, dtype=np.int64):
        crops.append(resized_crop_flip(original_image(split, int(i)), prep.image_size, generator, scale))
    return normalize(torch.cat(crops) if crops else torch.empty(0, 3, prep.image_size, prep.image_size), prep)


def second_view(images: Tensor, generator: torch.Generator, crop_scale: float = 0.08) -> Tensor:
    """Another random view of a normalised batch ``[B, 3, S, S]`` (what a method is handed):
    each image resized-cropped (torchvision's rule, area scale ``(crop_scale, 1)``) and
    flipped, at the same size. For consistency terms that compare two views (CoPrompt)."""
    size, scale = images.shape[-1], (float(crop_scale), 1.0)
    views = [resized_crop_flip(img[None], size, generator, scale, clamp=False) for img in images]
    return torch.cat(views) if views else images.clone()
