"""Plain containers for task data, shared by the world, the protocol and the engine.

Images are kept as uint8 arrays ``[N, H, W, 3]`` (small embedded tasks) or as a list
of file paths (``imagefolder:``); :mod:`vlmeft.data.loading` turns either into
normalised tensors at the backbone's resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Split:
    """One split of a classification task: images plus integer labels."""

    # uint8 [N, H, W, 3] or image paths; from the Python API also a float tensor [N, 3, H, W]
    # in [0, 1] or a sequence of images (vlmeft.data.inputs; read by vlmeft.data.loading)
    images: np.ndarray | list[Path] | Sequence
    labels: np.ndarray  # int64 [N]
    key: str  # stable identity of the data, used in feature-cache keys

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ClassificationTask:
    name: str
    classnames: list[str]
    templates: list[str]  # each holds one "{}" for the class name
    train: Split
    val: Split
    test: Split
    # Extra test sets under a domain shift, keyed by domain name.
    shifted: dict[str, Split] = field(default_factory=dict)
    description: str = ""


@dataclass
class GroundingSample:
    image: np.ndarray  # uint8 [H, W, 3]
    boxes: np.ndarray  # float [K, 4] as x0, y0, x1, y1 in pixels
    expression: str  # names exactly one of the boxes
    target: int  # index of that box


@dataclass
class SceneTask:
    """Multi-object scenes: image-text retrieval and referring-expression grounding."""

    name: str
    images: np.ndarray  # uint8 [N, H, W, 3]
    captions: list[str]  # one caption per image, for retrieval
    grounding: list[GroundingSample]
    description: str = ""
