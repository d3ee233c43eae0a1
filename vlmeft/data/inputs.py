"""A user's own data as a :class:`~vlmeft.data.types.Split`: what the Python API accepts.

- a :class:`Split` (returned as it is);
- images and labels: a float tensor ``[N, 3, H, W]`` in [0, 1] (torchvision's
  ``ToTensor`` range), a uint8 tensor ``[N, 3, H, W]`` or array ``[N, H, W, 3]``, or a
  list of image files; labels a sequence or tensor of ``N`` class indices;
- a ``torch.utils.data.Dataset`` of ``(image, label)`` pairs (a torchvision
  ``ImageFolder``, say), whose images are PIL images, ``[3, H, W]`` tensors or
  ``[H, W, 3]`` arrays of any size. Labels come from its ``targets`` when it has them,
  else from reading every item once.

Images are resized and normalised for the backbone the way every task's are
(:mod:`vlmeft.data.loading`). In-memory data is keyed by a hash of its bytes; a dataset
gets a key of its own per call, so its features are never reused from another one.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vlmeft.data.types import Split
from vlmeft.errors import VlmeftError


class DatasetImages(Sequence):
    """The images of a ``Dataset`` of ``(image, label)`` pairs, read on demand."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        item = self.dataset[int(i)]
        return item[0] if isinstance(item, (tuple, list)) else item


def _labels(labels: Any, n: int, where: str) -> np.ndarray:
    if labels is None:
        raise VlmeftError("labels are needed with images (one class index per image)", where=where)
    array = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise VlmeftError(f"expected {n} integer class indices, got {array.dtype} of shape {list(array.shape)}",
                          where=where)
    if n and array.min() < 0:
        raise VlmeftError(f"class indices must be >= 0, got {int(array.min())}", where=where)
    return array.astype(np.int64)


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()[:24]


def _images(images: Any, where: str) -> tuple[Any, str]:
    """``(split.images, data key)`` for in-memory images or a list of files."""
    if isinstance(images, Tensor):
        images = images.detach().cpu()
        if images.ndim == 4 and images.shape[1] == 3 and images.is_floating_point():
            data = images.float().contiguous()
            return data, f"tensor:{_digest(str(tuple(data.shape)).encode(), data.numpy().tobytes())}"
        images = images.numpy()
        if images.ndim == 4 and images.shape[1] == 3 and images.shape[-1] != 3:
            images = images.transpose(0, 2, 3, 1)
    if isinstance(images, np.ndarray):
        if images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] == 3:
            data = np.ascontiguousarray(images)
            return data, f"array:{_digest(str(data.shape).encode(), data.tobytes())}"
        if images.ndim == 4 and images.shape[1] == 3 and np.issubdtype(images.dtype, np.floating):
            return _images(torch.from_numpy(np.ascontiguousarray(images)), where)
        raise VlmeftError(f"expected images [N, 3, H, W] (float in [0, 1] or uint8) or uint8 [N, H, W, 3], got "
                          f"{images.dtype} {list(images.shape)}", where=where)
    if isinstance(images, (list, tuple)) and all(isinstance(p, (str, Path)) for p in images):
        from vlmeft.data.imagefolder import fingerprint

        paths = [Path(p) for p in images]
        return paths, f"files:{fingerprint(paths)}"
    raise VlmeftError(f"cannot read images from a {type(images).__name__}: pass a tensor, an array, a list of "
                      "files or a Dataset of (image, label) pairs", where=where)


def as_split(images: Any, labels: Any = None, *, where: str = "images") -> Split:
    """A :class:`Split` of ``images`` (see the module notes); ``labels`` may be None only
    for a Split or a Dataset, or when the labels are not needed (prediction)."""
    if isinstance(images, Split):
        return images
    if isinstance(images, torch.utils.data.Dataset) and not isinstance(images, Tensor):
        n = len(images)  # type: ignore[arg-type]
        if labels is None:
            targets = getattr(images, "targets", None)
            labels = targets if targets is not None else [int(images[i][1]) for i in range(n)]
        return Split(images=DatasetImages(images), labels=_labels(labels, n, f"{where} labels"),
                     key=f"dataset:{type(images).__name__}:{uuid.uuid4().hex}")
    data, key = _images(images, where)
    n = len(data)
    if labels is None:
        labels = np.zeros(n, dtype=np.int64)  # prediction: labels unused
    return Split(images=data, labels=_labels(labels, n, f"{where} labels"), key=key)
